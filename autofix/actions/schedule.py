"""Add or change a learning-rate scheduler."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from autofix.actions.base import Action, Change, get_path
from autofix.spec.catalogue import SchedulerName

__all__ = ["AddScheduler", "Warmup"]


_KIND_FIELDS = {
    "reduce_on_plateau": ("factor", "patience", "min_lr_share"),
    "step": ("step_size", "gamma"),
    "exponential": ("gamma",),
    "cosine": ("t_max",),
    "linear_warmup": ("warmup_epochs",),
    "warmup_cosine": ("warmup_epochs", "t_max"),
}
_FIELDS = ("factor", "patience", "step_size", "gamma", "t_max", "warmup_epochs", "min_lr_share")


_MIN_LR_SHARE = 1e-3  # a plateau schedule's floor, as a share of the config's learning rate


class AddScheduler(Action):
    """Set ``scheduler`` to ``{name: kind, kwargs: {...}}``.

    Defaults for ``reduce_on_plateau`` follow AUTOTRAINER's repair (factor 0.2, patience 5),
    with a floor ``min_lr`` of ``min_lr_share`` (default 1e-3, our choice: four cuts by 0.2;
    plateau schedules only)
    times the learning rate in the config: without one, ReduceLROnPlateau drives the rate of a
    converged run to ~5e-9, where float32 updates round away. The remaining keyword arguments
    go to the torch scheduler unchanged.
    """

    name = "add_scheduler"
    summary = "Add (or replace) a learning-rate scheduler."
    action: Literal["add_scheduler"] = "add_scheduler"
    kind: SchedulerName
    path: str = "scheduler"
    factor: float | None = Field(default=None, gt=0, lt=1)
    patience: int | None = Field(default=None, ge=0)
    step_size: int | None = Field(default=None, ge=1)
    gamma: float | None = Field(default=None, gt=0, lt=1)
    t_max: int | None = Field(default=None, ge=1)
    warmup_epochs: int | None = Field(default=None, ge=1, le=1000)
    min_lr_share: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> AddScheduler:
        allowed = _KIND_FIELDS[self.kind]
        stray = sorted(k for k in _FIELDS if getattr(self, k) is not None and k not in allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)} do(es) not apply to kind '{self.kind}'; "
                             f"it takes: {', '.join(allowed)}")
        return self

    def kwargs(self, lr: float | None = None) -> dict:
        """Torch keyword arguments for this kind, AUTOTRAINER's defaults filled in (``lr``: the
        config's learning rate, which sets a plateau schedule's floor)."""
        if self.kind == "reduce_on_plateau":
            share = self.min_lr_share or _MIN_LR_SHARE
            numeric = isinstance(lr, (int, float)) and not isinstance(lr, bool)
            floor = {"min_lr": lr * share} if numeric and lr is not None and lr > 0 else {}
            return {"factor": self.factor or 0.2, "patience": 5 if self.patience is None else self.patience, **floor}
        if self.kind == "step":
            return {"step_size": self.step_size or 5, "gamma": self.gamma or 0.5}
        if self.kind == "exponential":
            return {"gamma": self.gamma or 0.9}
        if self.kind == "linear_warmup":
            return {"warmup_epochs": self.warmup_epochs or 3}
        if self.kind == "warmup_cosine":
            return {"warmup_epochs": self.warmup_epochs or 3, "T_max": self.t_max or 20}
        return {"T_max": self.t_max or 20}

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        lr = get_path(config, aliases.get("optimizer.lr", "optimizer.lr"), None)
        return self.set_value(config, aliases, self.path, {"name": self.kind, "kwargs": self.kwargs(lr)})


class Warmup(Action):
    """Ramp the learning rate up linearly over the first epochs (then constant, or cosine decay).

    The usual answer to a divergence in the first steps of an otherwise sound configuration.
    """

    name = "warmup"
    summary = "Add a linear learning-rate warm-up."
    action: Literal["warmup"] = "warmup"
    epochs: int = Field(default=3, ge=1, le=1000)
    then: Literal["constant", "cosine"] = "constant"
    t_max: int = Field(default=20, ge=1)

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        if self.then == "cosine":
            new = {"name": "warmup_cosine", "kwargs": {"warmup_epochs": self.epochs, "T_max": self.t_max}}
        else:
            new = {"name": "linear_warmup", "kwargs": {"warmup_epochs": self.epochs}}
        return self.set_value(config, aliases, "scheduler", new)
