"""Learning-rate schedulers of the managed harness, stepped once per training epoch.

``{"name", "kwargs"}`` maps to ``torch.optim.lr_scheduler``
(https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate):

* reduce_on_plateau, step, cosine, exponential: the torch class, kwargs passed through;
* linear_warmup ``{warmup_epochs: w}``: ``LinearLR(start_factor=1/(w+1), end_factor=1,
  total_iters=w)``, then constant: epoch e (1-based) trains at ``lr * e/(w+1)`` until the full
  rate at epoch w+1 (Goyal et al. 2017, arXiv:1706.02677, gradual warm-up);
* warmup_cosine ``{warmup_epochs: w, T_max[, eta_min]}``: ``SequentialLR([LinearLR(...,
  total_iters=w), CosineAnnealingLR(T_max)], milestones=[w])``: the same ramp, then cosine decay
  from the full rate (Loshchilov & Hutter 2017, arXiv:1608.03983).

A keyword the scheduler does not take raises ValueError naming the accepted ones, instead of a
TypeError from deep inside torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["SCHEDULERS", "build_scheduler"]

_LR = torch.optim.lr_scheduler
_TORCH: dict[str, type] = {
    "reduce_on_plateau": _LR.ReduceLROnPlateau,
    "step": _LR.StepLR,
    "cosine": _LR.CosineAnnealingLR,
    "exponential": _LR.ExponentialLR,
}
_WARMUP_KEYS = {"linear_warmup": ("warmup_epochs",),
                "warmup_cosine": ("warmup_epochs", "T_max", "eta_min")}
SCHEDULERS = tuple(sorted([*_TORCH, *_WARMUP_KEYS]))
_NOT_KWARGS = {"self", "optimizer", "verbose", "last_epoch"}  # the harness owns these


def _accepted(name: str) -> tuple[str, ...]:
    if name in _WARMUP_KEYS:
        return _WARMUP_KEYS[name]
    params = inspect.signature(_TORCH[name]).parameters
    return tuple(k for k in params if k not in _NOT_KWARGS)


def _check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    accepted = _accepted(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"scheduler {name!r} does not take {', '.join(unknown)}; "
                         f"it takes: {', '.join(accepted)}")


def _warmup_epochs(kwargs: dict[str, Any]) -> int:
    value = kwargs.get("warmup_epochs", 3)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"scheduler warmup_epochs must be an integer >= 1, got {value!r}")
    return value


def _ramp(optimizer: torch.optim.Optimizer, warmup: int) -> Any:
    return _LR.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0,
                        total_iters=warmup)


def _warmup_cosine(optimizer: torch.optim.Optimizer, kwargs: dict[str, Any], epochs: int) -> Any:
    warmup = _warmup_epochs(kwargs)
    t_max = kwargs.get("T_max", max(1, epochs - warmup))
    cosine = _LR.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=kwargs.get("eta_min", 0.0))
    return _LR.SequentialLR(optimizer, [_ramp(optimizer, warmup), cosine], milestones=[warmup])


def build_scheduler(spec: dict[str, Any] | None, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """Scheduler from ``{"name", "kwargs"}`` or None; defaults keep a bare name usable.

    step: ``step_size=10, gamma=0.1``; cosine: ``T_max=epochs``; exponential: ``gamma=0.9``;
    linear_warmup/warmup_cosine: ``warmup_epochs=3``, ``T_max=epochs - warmup_epochs``.

    Raises:
        ValueError: an unknown scheduler name or keyword argument.
    """
    if spec is None:
        return None
    name = spec["name"].lower()
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler {spec['name']!r} is not one of {', '.join(SCHEDULERS)}")
    kwargs = dict(spec.get("kwargs") or {})
    _check_kwargs(name, kwargs)
    builders: dict[str, Callable[[], Any]] = {
        "reduce_on_plateau": lambda: _LR.ReduceLROnPlateau(optimizer, **kwargs),
        "step": lambda: _LR.StepLR(optimizer, **{"step_size": 10, "gamma": 0.1, **kwargs}),
        "cosine": lambda: _LR.CosineAnnealingLR(optimizer, **{"T_max": epochs, **kwargs}),
        "exponential": lambda: _LR.ExponentialLR(optimizer, **{"gamma": 0.9, **kwargs}),
        "linear_warmup": lambda: _ramp(optimizer, _warmup_epochs(kwargs)),
        "warmup_cosine": lambda: _warmup_cosine(optimizer, kwargs, epochs),
    }
    return builders[name]()
