"""The trial side: what runs inside a Ray Tune trial (the managed harness, a user's function).

``autofix.report`` is the one call a custom trainable needs: it validates the metric stream
at the boundary (a typo'd metric name fails here, with the names that *were* reported) and
hands the report and checkpoint to Ray Tune. With ``ray.distributed`` a trial runs the managed
harness as a Ray Train ``TorchTrainer`` (DDP): :mod:`autofix.tune.ddp`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
import ray.tune

from autofix.judge.history import PLANNED, STEP, as_float

__all__ = [
    "RESERVED",
    "get_checkpoint",
    "make_custom_trainable",
    "managed_trainable",
    "report",
    "spike_guard",
    "step_reporter",
]

RESERVED = "__autofix__"  # config key autofix adds: attempt id, warm-start checkpoint, import path


def report(metrics: Mapping[str, Any], checkpoint: str | os.PathLike | ray.tune.Checkpoint | None = None, *,
           step: int | None = None, planned_steps: int | None = None) -> None:
    """Report one round of metrics (and optionally a checkpoint directory) to autofix via Tune.

    ``step`` (optimizer steps done so far) and ``planned_steps`` (in all) place the report in
    training: soft symptoms wait for a share of the planned steps, and fixes are compared with
    the run left alone at the same step. Without them a report counts as one step.
    """
    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError(f"autofix.report expects a non-empty mapping of metric name to number, got {metrics!r}")
    # The position may come as keyword arguments or as keys of ``metrics``: checked either way.
    metrics = {**metrics, **_position(step if step is not None else metrics.get(STEP),
                                      planned_steps if planned_steps is not None else metrics.get(PLANNED))}
    clean: dict[str, Any] = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"autofix.report: metric names must be strings, got {key!r}")
        number = as_float(value)
        if number is None and not isinstance(value, str):
            raise TypeError(f"autofix.report: metric '{key}' must be a number, got {type(value).__name__} {value!r}")
        clean[key] = number if number is not None else value
    clean.update(_CAPTURED)  # what the worker's warnings said about the loop (see _loop_warnings)
    if checkpoint is not None and not isinstance(checkpoint, ray.tune.Checkpoint):
        path = Path(checkpoint)
        if not path.is_dir():
            raise ValueError(f"autofix.report: checkpoint must be a directory, got {str(path)!r}")
        checkpoint = ray.tune.Checkpoint.from_directory(str(path))
    ray.tune.report(clean, checkpoint=checkpoint)


def spike_guard(config: Mapping[str, Any] | None, model: Any, optimizer: Any, *, loss_fn: Any = None,
                scheduler: Any = None) -> Any:
    """The spike guard of a custom trainable (:class:`autofix.harness.spikes.SpikeGuard`), or None
    when the spec's ``spike_guard`` is off or the trainable runs outside autofix.

    The run's in-trial policies arrive in ``config`` (the trial's); the loop asks the guard about
    each step's loss, then its gradient norm, *before* the optimizer steps, and a batch it answers
    is not trained on::

        guard = autofix.spike_guard(config, model, optimizer, loss_fn=loss_fn)
        for x, y in batches:
            loss = loss_fn(model(x), y)
            if guard is not None and guard.spiked(loss.item()):
                continue                      # rewound in place, or skipped: go on with the next batch
            optimizer.zero_grad(); loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))
            if guard is not None and guard.grad_spiked(norm):
                continue                      # a gradient far out of line: the step is not taken
            optimizer.step()
            if guard is not None:
                guard.stepped(loss.item(), norm, batch=(x, y))
        autofix.report({"val_loss": ..., **(guard.metrics() if guard else {})}, step=...)

    There is no skip list to keep: the batches a rewind gives back are simply not drawn again.
    ``loss_fn`` lets the guard tell a bad batch (skipped, nothing undone) from weights a step too
    large threw off (restored); without it every spike restores. A rewind's ``lr_factor`` acts on
    the optimizer; its ``clip_factor`` on :attr:`SpikeGuard.max_grad_norm`, for the loop to pass to
    ``clip_grad_norm_``."""
    meta = (config or {}).get(RESERVED) or {}
    rules = meta.get("in_trial") or {}
    settings = rules.get("guard")
    if not settings or not settings.get("enabled"):
        return None
    from autofix.harness.spikes import SpikeGuard, reference_loss

    guard = SpikeGuard({"spike_guard": settings, "grad_clip": None}, model, optimizer, scheduler, rules)
    if loss_fn is not None:
        guard.reference = functools.partial(reference_loss, model, loss_fn)
    return guard


def step_reporter(every_steps: int = 50, min_interval_s: float = 2.0) -> Any:
    """Reports between epochs for a custom trainable (:class:`autofix.harness.stepreports.StepReporter`):
    call ``.stepped(step, planned_steps, loss)`` after each optimizer step; once ``every_steps``
    steps and ``min_interval_s`` seconds have passed it sends the mean and largest training loss
    of those steps to the driver (kept out of the judged history; report.html charts them in
    steps). The managed harness's defaults: one ``ray.tune.report`` (~2 ms) every 2 s at most."""
    from autofix.harness.stepreports import StepReporter

    return StepReporter({"every_steps": every_steps, "min_interval_s": min_interval_s},
                        lambda metrics: ray.tune.report(metrics))


def _position(step: Any, planned: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in ((STEP, step), (PLANNED, planned)):
        if value is None:
            continue
        number = as_float(value)
        if number is None or not number >= 0 or number != number or number == float("inf"):
            raise ValueError(f"autofix.report: {name} must be a finite number >= 0, got {value!r}")
        out[name] = number
    if PLANNED in out and STEP in out and out[STEP] > out[PLANNED]:
        raise ValueError(f"autofix.report: step {out[STEP]:g} is beyond planned_steps {out[PLANNED]:g}")
    return out


def get_checkpoint(config: Mapping[str, Any] | None = None) -> str | None:
    """The directory to resume from: Tune's (a retried trial), else the warm-start checkpoint."""
    ckpt = ray.tune.get_checkpoint()
    if ckpt is not None:
        return ckpt.to_directory()
    meta = (config or {}).get(RESERVED) or {}
    return meta.get("warm_from")


def _enter(config: Mapping[str, Any]) -> dict[str, Any]:
    """Make the spec's import path visible in this worker; return autofix's metadata."""
    meta = dict(config.get(RESERVED) or {})
    for path in reversed(meta.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    # Two cores shared by several trials: one thread each avoids 10-20x oversubscription.
    import torch

    torch.set_num_threads(int(meta.get("threads", 1)))
    return meta


def managed_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable running :func:`autofix.harness.run_training`."""
    from autofix.harness import run_training

    meta = _enter(config)
    training = {k: v for k, v in config.items() if k != RESERVED}
    if meta.get("isolate"):  # a rung of the isolation ladder, not a training run
        _run_rung(training, meta["isolate"])
        return
    tune_ckpt = ray.tune.get_checkpoint()
    restore = tune_ckpt.to_directory() if tune_ckpt is not None else None
    if restore is None and meta.get("warm_from"):
        training["warm_start"] = meta["warm_from"]

    def _report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        ckpt = ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.tune.report(metrics, checkpoint=ckpt)

    run_training(training, _report, restore_dir=restore, in_trial=meta.get("in_trial"),
                 step_report=lambda metrics: ray.tune.report(metrics))


def _run_rung(training: dict[str, Any], rung: dict[str, Any]) -> None:
    """One rung of the isolation ladder (:mod:`autofix.harness.isolation`), reported to Tune."""
    from autofix.harness.isolation import run_rung

    run_rung(training, rung, lambda metrics, _ckpt: ray.tune.report(metrics))


# PyTorch's warning when a loss broadcasts its target (torch.nn.functional: mse_loss, l1_loss,
# smooth_l1_loss, huber_loss, ...): "Using a target size (torch.Size([64, 1])) that is different
# to the input size (torch.Size([64, 10])). This will likely lead to incorrect results due to
# broadcasting."
_BROADCAST = r"Using a target size .* that is different to the input size"
_SIZES = re.compile(r"target size \(torch\.Size\(\[([\d, ]*)\]\)\) that is different to the input size "
                    r"\(torch\.Size\(\[([\d, ]*)\]\)\)")
_CAPTURED: dict[str, float] = {}  # added to every report of the running custom trainable


def _numel(dims: str) -> float:
    return float(math.prod(int(d) for d in dims.split(",") if d.strip()))


@contextlib.contextmanager
def _loop_warnings() -> Iterator[None]:
    """Count PyTorch's loss-broadcast warnings while a custom trainable runs (every one, not only
    the first per line, so a reused worker sees them in each attempt): ``autofix.report`` adds
    ``loss_broadcast_warnings`` and the sizes it named (:class:`autofix.symptoms.LossBroadcast`).
    The first one is shown as usual, the repeats are not."""
    _CAPTURED.clear()
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=_BROADCAST, category=UserWarning)
        shown = warnings.showwarning

        def capture(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
            sizes = _SIZES.search(str(message))
            if sizes is not None:
                repeat = "loss_broadcast_warnings" in _CAPTURED
                _CAPTURED["loss_broadcast_warnings"] = _CAPTURED.get("loss_broadcast_warnings", 0.0) + 1.0
                _CAPTURED["loss_broadcast_target_numel"] = _numel(sizes.group(1))
                _CAPTURED["loss_broadcast_input_numel"] = _numel(sizes.group(2))
                if repeat:
                    return
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = capture
        try:
            yield
        finally:
            _CAPTURED.clear()


def make_custom_trainable(ref: str) -> Callable[[dict[str, Any]], Any]:
    """Wrap a user's ``module:function`` so it is imported inside the worker, after the path is
    set, and its loss-broadcast warnings are counted into its reports."""

    def custom_trainable(config: dict[str, Any]) -> Any:
        from autofix.spec.refs import resolve

        _enter(config)
        with _loop_warnings():
            return resolve(ref)(config)

    custom_trainable.__name__ = ref.split(":")[-1].replace(".", "_")
    return custom_trainable
