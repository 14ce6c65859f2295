"""The trial side: what runs inside a Ray Tune trial (the managed harness, a user's function).

``autofix.report`` is the one call a custom trainable needs: it validates the metric stream
at the boundary (a typo'd metric name fails here, with the names that *were* reported) and
hands the report and checkpoint to Ray Tune.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import ray.tune

from autofix.metrics import as_float

__all__ = ["RESERVED", "get_checkpoint", "make_custom_trainable", "managed_trainable", "report"]

RESERVED = "__autofix__"  # config key autofix adds: attempt id, warm-start checkpoint, import path


def report(metrics: Mapping[str, Any], checkpoint: "str | os.PathLike | ray.tune.Checkpoint | None" = None) -> None:
    """Report one round of metrics (and optionally a checkpoint directory) to autofix via Tune."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError(f"autofix.report expects a non-empty mapping of metric name to number, got {metrics!r}")
    clean: dict[str, Any] = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"autofix.report: metric names must be strings, got {key!r}")
        number = as_float(value)
        if number is None and not isinstance(value, str):
            raise TypeError(f"autofix.report: metric '{key}' must be a number, got {type(value).__name__} {value!r}")
        clean[key] = number if number is not None else value
    if checkpoint is not None and not isinstance(checkpoint, ray.tune.Checkpoint):
        path = Path(checkpoint)
        if not path.is_dir():
            raise ValueError(f"autofix.report: checkpoint must be a directory, got {str(path)!r}")
        checkpoint = ray.tune.Checkpoint.from_directory(str(path))
    ray.tune.report(clean, checkpoint=checkpoint)


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
    tune_ckpt = ray.tune.get_checkpoint()
    restore = tune_ckpt.to_directory() if tune_ckpt is not None else None
    if restore is None and meta.get("warm_from"):
        training["warm_start"] = meta["warm_from"]

    def _report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        ckpt = ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.tune.report(metrics, checkpoint=ckpt)

    run_training(training, _report, restore_dir=restore)


def make_custom_trainable(ref: str) -> Callable[[dict[str, Any]], Any]:
    """Wrap a user's ``module:function`` so it is imported inside the worker, after the path is set."""

    def custom_trainable(config: dict[str, Any]) -> Any:
        from autofix.refs import resolve

        _enter(config)
        return resolve(ref)(config)

    custom_trainable.__name__ = ref.split(":")[-1].replace(".", "_")
    return custom_trainable
