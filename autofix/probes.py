"""Cheap training instrumentation: gradients, updates, activations, inputs, sampled every N steps.

A :class:`Probe` attaches to any ``nn.Module`` (and optionally its optimizer). Only a few steps
per epoch are *sampled*: activation forward hooks exist for that one step, weights are copied
only then, and a sampled step stores a handful of raw norms on the parameters' device. The
reduction to per-layer floats (one device-to-host transfer) happens in
:meth:`Probe.epoch_metrics`. An unsampled step pays one counter increment::

    probe = Probe(model, optimizer, every_steps=20)
    for x, y in batches:
        with probe.step(x):                      # or before_step / after_backward / after_step
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    metrics.update(probe.epoch_metrics())        # plain floats; resets the epoch's accumulators

Limitation: only activation *modules* are seen; a functional ``F.relu`` inside ``forward`` has no
module to hook, so it yields no ``dead_frac`` key. Validation and epoch-0 statistics are in
:mod:`autofix.harness.evaluate` (``prediction_metrics``, ``initial_loss_metrics``).
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["DEFAULT_EVERY_STEPS", "SATURATION_THRESHOLD", "Probe", "class_ids", "label_metrics"]

DEFAULT_EVERY_STEPS = 20
"""Sample one step in 20, for <= 1% overhead (AUTOTRAINER reports ~1% for its checker)."""
SATURATION_THRESHOLD = 5.0
"""A sigmoid/tanh unit is saturated when its |pre-activation| > 5 (DeepDiagnosis, ICSE 2022)."""
_DEAD_KINDS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU)
_SATURATING_KINDS = (nn.Tanh, nn.Sigmoid)
_NAN = float("nan")


def _activation_kind(module: nn.Module) -> str | None:
    if isinstance(module, _DEAD_KINDS) or "ReLU" in type(module).__name__:
        return "dead"
    return "saturated" if isinstance(module, _SATURATING_KINDS) else None


def _norms(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """float32 L2 norm of each tensor in one fused foreach kernel: on small models a sampled
    step costs its number of torch calls, not its arithmetic."""
    try:
        return list(torch._foreach_norm(tensors, 2.0, dtype=torch.float32))
    except (AttributeError, RuntimeError, TypeError):  # old torch, mixed devices
        return [torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]


def _to_list(scalars: list[list[torch.Tensor]], vectors: list[torch.Tensor]) -> list[float]:
    """Groups of 0-d tensors, then 1-D tensors, as one list: a single device-to-host transfer."""
    try:
        parts = [torch.stack(group) for group in scalars if group] + vectors
        return torch.cat(parts).tolist() if parts else []
    except RuntimeError:  # tensors on several devices
        device = next(t.device for t in [*sum(scalars, []), *vectors])
        parts = [torch.stack([t.to(device) for t in group]) for group in scalars if group]
        return torch.cat(parts + [v.to(device) for v in vectors]).tolist()


def _unit_activity(out: torch.Tensor, nonnegative: bool) -> torch.Tensor:
    """Per unit (dim 1: conv channel or linear feature) a value that is <= 0 iff the unit is dead.

    The peak for contiguous tensors; for others (mkldnn convolutions often return channels-last)
    the sum of the positive part, because CPU amax over such strides is ~15x slower.
    """
    if out.dim() < 2:
        return out.amax().reshape(1)
    dims = [0, *range(2, out.dim())]
    if out.is_contiguous():
        return out.amax(dim=dims)
    return (out if nonnegative else out.clamp_min(0)).sum(dim=dims)


def _ratio(first: float, last: float) -> float:
    """first/last without ZeroDivisionError: 0/0 is nan, x/0 is inf (AUTOTRAINER's ratio)."""
    if last == 0:
        return _NAN if first == 0 else float("inf")
    return first / last


def _nan_stat(values: Sequence[float], fn: Any) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(fn(finite)) if finite else _NAN


def _column_means(rows: Sequence[Sequence[float]]) -> list[float]:
    return [sum(col) / len(col) for col in zip(*rows)]


class Probe:
    """Samples gradient, update, activation and input statistics of ``model`` every N steps.

    Args:
        model: any module; per-layer keys use the qualified names of ``named_modules()``.
        optimizer: optional; lets :meth:`step` read gradients just before ``optimizer.step()``
            (after any clipping), which also works for loops that zero them after the step.
        every_steps: sample one step in N. An epoch of n steps gets max(1, n // N) evenly
            spaced samples, its last step always among them, so every result row carries the
            keys and describes the epoch's end state. Default 20.
        enabled: False turns every method into a no-op and ``epoch_metrics`` into ``{}``.
        saturation: |pre-activation| above which a sigmoid/tanh unit is saturated
            (DeepDiagnosis: 5).
        steps_per_epoch: the epoch length when known (the managed harness knows it); else the
            previous epoch's length is used, and steps 0, N, 2N, ... in the first epoch.

    Keeps one reusable copy of the trainable weights. Nothing here raises into training: a
    statistic that fails is skipped for that step.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 every_steps: int = DEFAULT_EVERY_STEPS, enabled: bool = True,
                 saturation: float = SATURATION_THRESHOLD, steps_per_epoch: int | None = None,
                 ) -> None:
        self.model, self.optimizer, self.enabled = model, optimizer, enabled
        self.every_steps, self.saturation = max(1, int(every_steps)), float(saturation)
        self.steps_per_epoch = steps_per_epoch
        modules = list(model.named_modules()) if enabled else []
        self._params = [p for p in model.parameters() if p.requires_grad] if enabled else []
        index = {id(p): j for j, p in enumerate(self._params)}
        # parameterised leaf modules, in registration order, with their parameters' indices
        self._layers = [(name or type(m).__name__, [index[id(p)] for p in m.parameters(False)
                                                    if id(p) in index])
                        for name, m in modules if next(m.children(), None) is None]
        self._layers = [(name, idx) for name, idx in self._layers if idx]
        self._acts = [(name or type(m).__name__, m, kind) for name, m in modules
                      if (kind := _activation_kind(m)) is not None]
        self._hooks = [self._hook(i, kind) for i, (_, _, kind) in enumerate(self._acts)]
        self.errors: list[str] = []  # the first statistics that failed (and were skipped)
        self._labels: dict[str, float] = {}
        self._handles: list[Any] = []
        self._snapshot: list[torch.Tensor] | None = None
        self._buffers: list[torch.Tensor] = []  # reused weight copies: no allocation per sample
        self._grads_done = True
        self._step_in_epoch = 0
        self._reset()

    def _reset(self) -> None:
        # A sampled step only queues 0-d device tensors; epoch_metrics stacks them and syncs
        # once. A record is (kind, float start, float count, int start, int count, meta).
        self._floats: list[torch.Tensor] = []  # float32 scalars
        self._counts: list[torch.Tensor] = []  # int64 scalars (a mixed-dtype stack is ~4x slower)
        self._records: list[tuple[str, int, int, int, int, Any]] = []
        self._dead: list[tuple[int, torch.Tensor]] = []  # activation slot, per-unit activity
        steps = self.steps_per_epoch or self._step_in_epoch
        if steps:  # max(1, n // N) samples, each the last step of its stride, so that an
            # epoch of 23 steps pays one sample, not two, and the last describes the weights
            # the epoch's validation sees
            self._stride = steps // max(1, steps // self.every_steps)
            self._phase = self._stride - 1
        else:  # first epoch of an unknown length: steps 0, N, 2N, ...
            self._stride, self._phase = self.every_steps, 0
        self._step_in_epoch = 0

    @property
    def sampling(self) -> bool:
        """True between :meth:`before_step` of a sampled step and the end of that step."""
        return self._snapshot is not None or bool(self._handles)

    def before_step(self, x: Any = None, force: bool = False) -> bool:
        """Call before the forward pass; on a sampled step (or ``force``) hook activations.

        ``x`` is the input batch (for ``input_*``). Returns whether this step is sampled; a
        forced sample does not advance the step counter. Closes a step left open (skipped).
        """
        if not self.enabled:
            return False
        if self._snapshot is not None or self._handles:
            self.end_step()
        due = force or self._step_in_epoch % self._stride == self._phase
        self._step_in_epoch += 0 if force else 1
        if not due:
            return False
        with torch.no_grad():
            self._guard(self._input_stats, x)
            self._guard(self._copy_weights)
        self._guard(self._attach)
        self._grads_done = False
        return True

    def after_backward(self) -> None:
        """Call after ``backward()`` and before clipping / ``optimizer.step()``: reads gradients."""
        if self._grads_done:  # also true on every unsampled step
            return
        self._remove_hooks()  # the forward is over: later forwards (e.g. eval) stay unhooked
        self._grads_done = True
        self._guard(self._grad_stats)

    def after_step(self) -> None:
        """Call after ``optimizer.step()``: records ||dw||/||w|| against the pre-step weights."""
        if self._snapshot is not None:
            self.after_backward()  # if the loop never called it: gradients survive the step
            self._guard(self._update_stats)
            self.end_step()

    def end_step(self) -> None:
        """Close the current step without recording an update (e.g. a skipped step)."""
        self._remove_hooks()
        self._snapshot = None
        self._grads_done = True

    @contextlib.contextmanager
    def step(self, x: Any = None) -> Iterator[bool]:
        """Context manager around one whole training step; yields whether it is sampled.

        Gradients are read just before ``optimizer.step()`` when an optimizer was given, else at
        exit; the update is measured at exit, so a body with no ``optimizer.step()`` records 0.0.
        """
        sampled = self.before_step(x)
        hook = None
        if sampled and hasattr(self.optimizer, "register_step_pre_hook"):
            hook = self.optimizer.register_step_pre_hook(lambda *_: self.after_backward())
        try:
            yield sampled
        finally:
            if hook is not None:
                hook.remove()
            if sampled:
                self.after_backward()
                self.after_step()

    def set_labels(self, labels: Any) -> None:
        """Record ``label_frac_max`` / ``label_classes`` of the training class ids (once)."""
        if self.enabled:
            self._labels = label_metrics(labels)

    def epoch_metrics(self) -> dict[str, float]:
        """Plain floats for this epoch's sampled steps (means), then reset for the next epoch."""
        if not self.enabled:
            return {}
        self.end_step()
        out: dict[str, float] = {}
        self._guard(self._report, out)
        out.update(self._labels)
        self._reset()
        return out

    # --- sampling: queue raw device tensors, no host sync -----------------------------------
    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a probe must never take training down
            if len(self.errors) < 10:  # kept for debugging, never raised
                self.errors.append(f"{getattr(fn, '__name__', fn)}: {exc!r}")

    def _keep(self, kind: str, floats: Sequence[torch.Tensor],
              counts: Sequence[torch.Tensor] = (), meta: Any = None) -> None:
        self._records.append((kind, len(self._floats), len(floats), len(self._counts),
                              len(counts), meta))
        self._floats.extend(floats)
        self._counts.extend(counts)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, slot: int, kind: str) -> Any:
        nonnegative = isinstance(self._acts[slot][1], (nn.ReLU, nn.ReLU6))

        def hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            with torch.no_grad():
                if kind == "dead" and isinstance(out, torch.Tensor):
                    self._dead.append((slot, _unit_activity(out, nonnegative)))
                elif kind == "saturated" and inputs and isinstance(inputs[0], torch.Tensor):
                    count = torch.count_nonzero(inputs[0].abs() > self.saturation)
                    self._keep("saturated", (), [count], (slot, inputs[0].numel()))
        return lambda *args: self._guard(hook, *args)

    def _attach(self) -> None:
        for (_, module, _), hook in zip(self._acts, self._hooks):
            self._handles.append(module.register_forward_hook(hook))

    def _copy_weights(self) -> None:
        buffers = self._buffers
        if len(buffers) != len(self._params) or any(
                b.shape != p.shape or b.dtype != p.dtype or b.device != p.device
                for b, p in zip(buffers, self._params)):
            self._buffers = [p.clone() for p in self._params]
        elif buffers:
            torch._foreach_copy_(buffers, self._params)
        self._snapshot = self._buffers

    def _input_stats(self, x: Any) -> None:
        if isinstance(x, torch.Tensor) and x.numel():
            flat = x.reshape(-1).float()
            mean = flat.mean()
            # ||x - mean|| in one fused kernel: two-pass accurate, and ~4x cheaper than x.std()
            self._keep("input", [mean, torch.dist(flat, mean), *torch.aminmax(flat)],
                       meta=flat.numel())

    def _grad_stats(self) -> None:
        idx = [j for j, p in enumerate(self._params) if p.grad is not None]
        grads = [self._params[j].grad for j in idx]
        if grads:
            # count_nonzero per tensor is ~2x faster than a fused order-0 norm on CPU
            self._keep("grad", _norms(grads), [torch.count_nonzero(g) for g in grads],
                       (idx, sum(g.numel() for g in grads)))

    def _update_stats(self) -> None:
        if self._snapshot:
            with torch.no_grad():
                before = _norms(self._snapshot)
                torch._foreach_sub_(self._snapshot, self._params)  # the copy becomes -delta
                self._keep("update", _norms(self._snapshot) + before)

    # --- reporting: one host transfer, then plain Python --------------------------------------
    def _report(self, out: dict[str, float]) -> None:
        values = _to_list([self._floats, self._counts], [v for _, v in self._dead])
        floats, counts = len(self._floats), len(self._counts)
        groups: dict[str, list[tuple[list[float], Any]]] = {}
        for kind, f_start, f_len, c_start, c_len, meta in self._records:
            row = values[f_start:f_start + f_len] + values[floats + c_start:][:c_len]
            groups.setdefault(kind, []).append((row, meta))
        for kind, part in (("grad", self._grad_metrics), ("update", self._update_metrics),
                           ("input", _input_metrics)):
            if groups.get(kind) and (self._layers or kind == "input"):
                self._guard(lambda part=part, kind=kind: out.update(part(groups[kind])))
        dead_values = values[floats + counts:]
        self._guard(lambda: out.update(self._act_metrics(groups.get("saturated", []),
                                                         dead_values)))

    def _layer_norms(self, norms: Sequence[float]) -> list[float]:
        """Per-parameter norms -> per-layer norms, the global norm appended last."""
        squares = [n * n for n in norms]
        layers = [math.sqrt(sum(squares[j] for j in idx)) for _, idx in self._layers]
        return layers + [math.sqrt(sum(squares))]

    def _grad_metrics(self, samples: list[tuple[list[float], Any]]) -> dict[str, float]:
        per_sample, zero_fracs = [], []
        for row, (idx, size) in samples:
            norms = [0.0] * len(self._params)  # a parameter without a gradient counts as zero
            for j, value in zip(idx, row):
                norms[j] = value
            per_sample.append(self._layer_norms(norms)[:-1])
            zero_fracs.append(1.0 - sum(row[len(idx):]) / size)
        layers = _column_means(per_sample)
        out = {f"grad_norm/{name}": v for (name, _), v in zip(self._layers, layers)}
        out.update(grad_norm_first=layers[0], grad_norm_last=layers[-1],
                   grad_ratio=_ratio(layers[0], layers[-1]),
                   grad_zero_frac=sum(zero_fracs) / len(zero_fracs))
        return out

    def _update_metrics(self, samples: list[tuple[list[float], Any]]) -> dict[str, float]:
        count, per_sample = len(self._params), []
        for row, _ in samples:
            delta, weight = self._layer_norms(row[:count]), self._layer_norms(row[count:])
            # No change is exactly 0.0 (a missing optimizer.step()); a zero-norm weight that
            # moved has no defined ratio: nan, not an inf that would swamp update_ratio_max.
            per_sample.append([0.0 if d == 0 else d / w if w > 0 else _NAN
                               for d, w in zip(delta, weight)])
        *layers, total = _column_means(per_sample)
        out = {f"update_ratio/{name}": v for (name, _), v in zip(self._layers, layers)}
        out.update(update_ratio_max=_nan_stat(layers, max),
                   update_ratio_median=_nan_stat(layers, statistics.median),
                   update_ratio_global=total)
        return out

    def _act_metrics(self, saturated: list[tuple[list[float], Any]],
                     dead: list[float]) -> dict[str, float]:
        fracs: dict[int, list[float]] = {}
        for (count,), (slot, total) in saturated:
            fracs.setdefault(slot, []).append(count / total if total else _NAN)
        start = 0
        for slot, tensor in self._dead:
            chunk, start = dead[start:start + tensor.numel()], start + tensor.numel()
            fracs.setdefault(slot, []).append(sum(v <= 0 for v in chunk) / len(chunk))
        out: dict[str, float] = {}
        for want, prefix in (("dead", "dead_frac"), ("saturated", "saturated_frac")):
            means = {name: sum(fracs[i]) / len(fracs[i])
                     for i, (name, _, kind) in enumerate(self._acts) if kind == want and i in fracs}
            out.update({f"{prefix}/{name}": v for name, v in means.items()})
            if means:
                out[f"{prefix}_max"] = _nan_stat(list(means.values()), max)
        return out


def _input_metrics(samples: list[tuple[list[float], Any]]) -> dict[str, float]:
    means, stds, peaks = [], [], []
    for (mean, spread, low, high), n in samples:
        means.append(mean)
        stds.append(spread / math.sqrt(max(1, n - 1)))
        peaks.append(max(abs(low), abs(high)))
    return {"input_mean": sum(means) / len(means), "input_std": sum(stds) / len(stds),
            "input_abs_max": sum(peaks) / len(peaks)}


def class_ids(values: Any) -> np.ndarray | None:
    """``values`` as a flat integer array, or None when they are not class ids."""
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        return None  # float targets are regression (or probabilities): no class statistics
    return arr.reshape(-1)


def label_metrics(labels: Any) -> dict[str, float]:
    """``label_frac_max`` (largest class share) and ``label_classes``; ``{}`` unless class ids."""
    ids = class_ids(labels)
    if ids is None:
        return {}
    counts = np.unique(ids, return_counts=True)[1]
    return {"label_frac_max": float(counts.max() / ids.size), "label_classes": float(counts.size)}
