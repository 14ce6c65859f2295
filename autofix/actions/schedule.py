"""Add or change a learning-rate scheduler."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from autofix.actions.base import Action, Change, get_path, resolve_path, set_path

__all__ = ["AddScheduler"]


_KIND_FIELDS = {
    "reduce_on_plateau": ("factor", "patience"),
    "step": ("step_size", "gamma"),
    "exponential": ("gamma",),
    "cosine": ("t_max",),
}


class AddScheduler(Action):
    """Set ``scheduler`` to ``{name: kind, kwargs: {...}}``.

    Defaults for ``reduce_on_plateau`` follow AUTOTRAINER's repair (factor 0.2, patience 5);
    the remaining keyword arguments go to the torch scheduler unchanged.
    """

    name = "add_scheduler"
    summary = "Add (or replace) a learning-rate scheduler."
    action: Literal["add_scheduler"] = "add_scheduler"
    kind: Literal["cosine", "exponential", "reduce_on_plateau", "step"]
    path: str = "scheduler"
    factor: float | None = Field(default=None, gt=0, lt=1)
    patience: int | None = Field(default=None, ge=0)
    step_size: int | None = Field(default=None, ge=1)
    gamma: float | None = Field(default=None, gt=0, lt=1)
    t_max: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> "AddScheduler":
        allowed = _KIND_FIELDS[self.kind]
        stray = sorted(k for k in ("factor", "patience", "step_size", "gamma", "t_max")
                       if getattr(self, k) is not None and k not in allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)} do(es) not apply to kind '{self.kind}'; it takes: {', '.join(allowed)}")
        return self

    def kwargs(self) -> dict:
        """Torch keyword arguments for this kind, AUTOTRAINER's defaults filled in."""
        if self.kind == "reduce_on_plateau":
            return {"factor": self.factor or 0.2, "patience": 5 if self.patience is None else self.patience}
        if self.kind == "step":
            return {"step_size": self.step_size or 5, "gamma": self.gamma or 0.5}
        if self.kind == "exponential":
            return {"gamma": self.gamma or 0.9}
        return {"T_max": self.t_max or 20}

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        real = resolve_path(self.path, config, aliases)
        old = get_path(config, real)
        new = {"name": self.kind, "kwargs": self.kwargs()}
        if old == new:
            return []
        set_path(config, real, new)
        return [Change(self.path, old, new)]
