"""The :class:`Probe`: samples a few training steps, reports per-epoch floats (see the package)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from autofix.probes.budget import DEFAULT_MAX_EPOCHS_BETWEEN, DEFAULT_MAX_OVERHEAD, Budget
from autofix.probes.loopcheck import LoopCheck
from autofix.probes.report import Layout, Queue, report
from autofix.probes.stats import (
    DEFAULT_EVERY_STEPS,
    SATURATION_THRESHOLD,
    activation_kind,
    input_stats,
    label_metrics,
    norms,
    step_scale,
    unit_activity,
)

_NOT_CARRIED_IF_ZERO = "update_ratio"
"""A stale report leaves out the keys with this prefix whose value is exactly 0.0 (see Probe)."""
_INDEX_DTYPES = (torch.int32, torch.int64)  # what nn.Embedding takes as indices


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
        max_overhead: the share of the measured training time the probe may spend on itself
            (default 0.01). Where ``every_steps`` would cost more, epochs take fewer samples,
            and where even one sample per epoch is too dear, only one epoch in k is sampled
            (:mod:`autofix.probes.budget`). None: no budget, ``every_steps`` alone decides.
        max_epochs_between: sampled epochs are at most this many epochs apart (default 5).
        clock: seconds as a float for the budget's timing; ``time.perf_counter`` by default.

    With ``optimizer``, every step is also checked for training-loop bugs at no device cost
    (:class:`~autofix.probes.loopcheck.LoopCheck`: a missing ``zero_grad``, steps no gradient
    reached): ``stale_grad_steps``/``stale_grad_checks`` and ``gradless_steps``/``optimizer_steps``,
    counted over every step of the epoch, so never carried.

    Keeps one reusable copy of the trainable weights. Nothing here raises into training: a
    statistic that fails is skipped for that step.

    **Stale epochs.** An epoch without a sample reports the last sampled epoch's values again
    (the last known state, like a monitoring system's last scrape) with ``probe_age``, the
    number of epochs since that sample: 0.0 in a sampled epoch, absent before the first one.
    One exception: an ``update_ratio*`` value of exactly 0.0 is not carried. Zero is the
    signal of a missing ``optimizer.step()``, and ``no_update`` fires on zeros in consecutive
    reports: one measured zero (a warm-up from lr 0, an accumulation step without a step)
    repeated would read as a second, confirming measurement. A carried nonzero ratio cannot
    fake that signal, so it travels; a stale report whose zero was dropped lacks the key, as a
    report without a measured update always has. The other values describe a state that moves
    slowly (per-layer gradient norms and their ratio, zero-gradient, dead and saturated
    fractions, input statistics); ``label_*`` are measured once and are always current.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 every_steps: int = DEFAULT_EVERY_STEPS, enabled: bool = True,
                 saturation: float = SATURATION_THRESHOLD, steps_per_epoch: int | None = None,
                 max_overhead: float | None = DEFAULT_MAX_OVERHEAD,
                 max_epochs_between: int = DEFAULT_MAX_EPOCHS_BETWEEN,
                 clock: Callable[[], float] | None = None) -> None:
        self.model, self.optimizer, self.enabled = model, optimizer, enabled
        self.every_steps, self.saturation = max(1, int(every_steps)), float(saturation)
        self.steps_per_epoch = steps_per_epoch
        self.budget = Budget(max_overhead, max_epochs_between, clock)
        self._clock = self.budget.clock
        modules = list(model.named_modules()) if enabled else []
        self._params = [p for p in model.parameters() if p.requires_grad] if enabled else []
        index = {id(p): j for j, p in enumerate(self._params)}
        # parameterised leaf modules, in registration order, with their parameters' indices
        layers = [(name or type(m).__name__, [index[id(p)] for p in m.parameters(False)
                                              if id(p) in index])
                  for name, m in modules if next(m.children(), None) is None]
        self._layout = Layout(len(self._params), [(name, idx) for name, idx in layers if idx],
                              [(name or type(m).__name__, m, kind) for name, m in modules
                               if (kind := activation_kind(m)) is not None])
        self._hooks = [self._hook(i, kind) for i, (_, _, kind) in enumerate(self._layout.acts)]
        self._loop = LoopCheck(self._params, optimizer) if enabled else None
        self.errors: list[str] = []  # the first statistics that failed (and were skipped)
        self._labels: dict[str, float] = {}
        self._handles: list[Any] = []
        self._open = False  # a sampled step is under way
        self._x: Any = None  # its input batch, read with its gradients (one cold phase less)
        self._snapshot: list[torch.Tensor] | None = None  # its pre-step weights ...
        self._weight_norms: list[torch.Tensor] = []  # ... and their norms
        self._buffers: list[torch.Tensor] = []  # reused weight copies: no allocation per sample
        self._grads_done = True
        self._step_in_epoch = 0
        self._last: dict[str, float] | None = None  # the last sampled report, as carried
        self._age = 0  # epochs since it
        self._queue = Queue()  # the epoch's sampled tensors
        self._reset()

    @property
    def max_overhead(self) -> float | None:
        """The budget's share of training time (None: no budget)."""
        return self.budget.max_overhead

    @property
    def overhead(self) -> float | None:
        """The probe's own timed work over the training time it measured, so far."""
        return self.budget.overhead

    def _reset(self) -> None:
        steps = self.steps_per_epoch or self._step_in_epoch
        if steps:  # max(1, n // N) samples, each the last step of its stride, so that an
            # epoch of 23 steps pays one sample, not two, and the last describes the weights
            # the epoch's validation sees; the budget may ask for fewer, or none
            samples = self.budget.plan(steps, max(1, steps // self.every_steps), self._age)
            self._stride = steps // max(1, samples)
            self._phase = self._stride - 1 if samples else -1  # -1: no step is due
        else:  # first epoch of an unknown length: steps 0, N, 2N, ...
            self._stride, self._phase = self.every_steps, 0
        self._step_in_epoch = 0

    def before_step(self, x: Any = None, force: bool = False) -> bool:
        """Call before the forward pass; on a sampled step (or ``force``) hook activations.

        ``x`` is the input batch (for ``input_*``). Returns whether this step is sampled; a
        forced sample does not advance the step counter. Closes a step left open (skipped).
        """
        if not self.enabled:
            return False
        if self._open:
            self.end_step()
        if not force:
            step = self._step_in_epoch
            self._step_in_epoch = step + 1
            if step == 0:
                self.budget.start = self._clock()
            if step % self._stride != self._phase:
                return False
        start = self._clock()
        self._open, self._x, self._grads_done = True, x, False
        with torch.no_grad():
            self._guard(self._copy_weights)
        self._guard(self._attach)
        self.budget.samples += 1
        self.budget.spent += self._clock() - start
        return True

    def after_backward(self) -> None:
        """Call after ``backward()`` and before clipping / ``optimizer.step()``: reads gradients."""
        if self._grads_done:  # also true on every unsampled step
            return
        start = self._clock()
        self._remove_hooks()  # the forward is over: later forwards (e.g. eval) stay unhooked
        self._grads_done = True
        with torch.no_grad():
            self._read_input()
            self._guard(self._grad_stats)
            self._guard(self._scale_stats)
        self.budget.spent += self._clock() - start

    def after_step(self) -> None:
        """Call after ``optimizer.step()``: records ||dw||/||w|| against the pre-step weights."""
        if self._open:
            self.after_backward()  # if the loop never called it: gradients survive the step
            start = self._clock()
            self._guard(self._update_stats)
            self.end_step()
            self.budget.spent += self._clock() - start

    def end_step(self) -> None:
        """Close the current step without recording an update (e.g. a skipped step)."""
        self._read_input()  # a step skipped before its backward: the input still counts
        self._remove_hooks()
        self._open, self._snapshot, self._weight_norms, self._grads_done = False, None, [], True

    @contextlib.contextmanager
    def step(self, x: Any = None) -> Iterator[bool]:
        """Context manager around one whole training step; yields whether it is sampled.

        Gradients are read just before ``optimizer.step()`` when an optimizer was given, else at
        exit; the update is measured at exit, so a body with no ``optimizer.step()`` records 0.0.
        """
        sampled = self.before_step(x)
        hook = None
        if sampled and self.optimizer is not None and hasattr(self.optimizer, "register_step_pre_hook"):
            start = self._clock()
            hook = self.optimizer.register_step_pre_hook(lambda *_: self.after_backward())
            self.budget.spent += self._clock() - start
        try:
            yield sampled
        finally:
            if hook is not None:
                start = self._clock()
                hook.remove()
                self.budget.spent += self._clock() - start
            if sampled:
                self.after_backward()
                self.after_step()

    def set_labels(self, labels: Any) -> None:
        """Record ``label_frac_max`` / ``label_classes`` of the training class ids (once)."""
        if self.enabled:
            self._labels = label_metrics(labels)

    def epoch_metrics(self) -> dict[str, float]:
        """Plain floats for this epoch, then reset for the next epoch.

        With samples: their means and ``probe_age`` 0.0. Without (the budget skipped the epoch,
        or its steps never reached a sampled one): the last sampled epoch's values, less any
        ``update_ratio*`` equal to 0.0, and ``probe_age``, the epochs since that sample (see the
        class docstring); before any sample, only ``label_*``.
        """
        if not self.enabled:
            return {}
        start = self._clock()
        self.end_step()
        out: dict[str, float] = {}
        if self.budget.samples:
            self._guard(report, self._layout, self._queue, out, self._guard)
            self._queue = Queue()
            self._age, self._last = 0, {k: v for k, v in out.items()  # what later epochs carry
                                        if not (v == 0.0 and k.startswith(_NOT_CARRIED_IF_ZERO))}
        elif self._last is not None:
            self._age += 1
            out = self._last.copy()
        if self._last is not None:
            out["probe_age"] = float(self._age)
        out.update(self._labels)
        if self._loop is not None:
            out.update(self._loop.epoch_metrics())
        self.budget.close_epoch(start, self._step_in_epoch, self._clock() - start)
        self._reset()
        return out

    # --- sampling: queue raw device tensors, no host sync -----------------------------------
    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a probe must never take training down
            if len(self.errors) < 10:  # kept for debugging, never raised
                self.errors.append(f"{getattr(fn, '__name__', fn)}: {exc!r}")

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, slot: int, kind: str) -> Any:
        nonnegative = isinstance(self._layout.acts[slot][1], (nn.ReLU, nn.ReLU6))

        def hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            # detached rather than under no_grad(): the same effect, and cheaper
            if kind == "dead" and isinstance(out, torch.Tensor):
                self._queue.dead.append((slot, unit_activity(out.detach(), nonnegative)))
            elif kind == "saturated" and inputs and isinstance(inputs[0], torch.Tensor):
                pre = inputs[0].detach()
                count = torch.count_nonzero(pre.abs() > self.saturation)
                self._queue.keep("saturated", (), [count], (slot, pre.numel()))

        def timed(*args: Any) -> None:
            start = self._clock()
            self._guard(hook, *args)
            self.budget.spent += self._clock() - start
        return timed

    def _attach(self) -> None:
        for (_, module, _), hook in zip(self._layout.acts, self._hooks, strict=True):
            self._handles.append(module.register_forward_hook(hook))

    def _copy_weights(self) -> None:
        buffers = self._buffers
        if len(buffers) != len(self._params) or any(
                b.shape != p.shape or b.dtype != p.dtype or b.device != p.device
                for b, p in zip(buffers, self._params, strict=True)):
            self._buffers = [p.clone() for p in self._params]
        elif buffers:
            torch._foreach_copy_(buffers, self._params)  # type: ignore[arg-type]  # Parameters are Tensors
        self._snapshot = self._buffers

    def _read_input(self) -> None:
        x, self._x = self._x, None
        # Integer ids (a language model's tokens, categories) index an embedding: they have no
        # scale to normalise, and standardising them would break the lookup.
        if isinstance(x, torch.Tensor) and x.numel() and x.dtype not in _INDEX_DTYPES:
            self._guard(self._input_stats, x)

    def _input_stats(self, x: torch.Tensor) -> None:
        self._queue.keep("input", input_stats(x), meta=x.numel())

    def _scale_stats(self) -> None:
        if self.optimizer is not None:
            scale = step_scale(self.optimizer, self._params)
            if scale:
                self._queue.keep("scale", scale)

    def _grad_stats(self) -> None:
        idx = [j for j, p in enumerate(self._params) if p.grad is not None]
        grads = [g for p in self._params if (g := p.grad) is not None]  # in idx's order
        # the pre-step weight norms ride in the gradient norms' fused kernel
        weights = self._snapshot or []
        values = norms(grads + weights) if grads or weights else []
        self._weight_norms = values[len(grads):]
        if grads:
            # count_nonzero per tensor is ~2x faster than a fused order-0 norm on CPU
            self._queue.keep("grad", values[:len(grads)],
                             [torch.count_nonzero(g) for g in grads],
                             (idx, sum(g.numel() for g in grads)))

    def _update_stats(self) -> None:
        if self._snapshot:
            with torch.no_grad():
                before = self._weight_norms or norms(self._snapshot)
                torch._foreach_sub_(self._snapshot, self._params)  # type: ignore[arg-type]  # Parameters are Tensors; the copy becomes -delta
                self._queue.keep("update", norms(self._snapshot) + before)
