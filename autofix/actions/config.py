"""Actions on single config values: scale a number within bounds, set a value."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from autofix.actions.base import Action, Change, NotApplicable, get_path, resolve_path, set_path

__all__ = ["Scale", "Set", "StopRun"]


class Scale(Action):
    """Multiply a numeric config value by ``factor``, clamped to ``[min, max]``.

    The usual answer to a learning rate that is too high (``factor: 0.1``) or too low
    (``factor: 10``); AUTOTRAINER tries LR x 0.1^j for j = 1, 2, ... .
    """

    name = "scale"
    summary = "Multiply a number in the config by a factor, within bounds."
    action: Literal["scale"] = "scale"
    path: str = Field(min_length=1)
    factor: float = Field(gt=0)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Scale:
        if not math.isfinite(self.factor) or self.factor == 1:
            raise ValueError(f"factor must be a finite number other than 1, got {self.factor}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        real = resolve_path(self.path, config, aliases)
        old = get_path(config, real)
        if isinstance(old, bool) or not isinstance(old, (int, float)):
            raise NotApplicable(f"'{real}' is {old!r}, not a number")
        # Round first (readable diffs: 0.1 not 0.10000000000000002), then clamp, so the
        # result never leaves [min, max].
        new: float = round(old * self.factor) if isinstance(old, int) else float(f"{old * self.factor:.6g}")
        if self.min is not None and new < self.min:
            new = self.min
        if self.max is not None and new > self.max:
            new = self.max
        new = type(old)(new) if isinstance(old, int) and float(new).is_integer() else new
        if new == old:
            raise NotApplicable(f"'{real}' is already at its bound ({old})")
        set_path(config, real, new)
        return [Change(self.path, old, new)]


class Set(Action):
    """Set a config value (a number, string, mapping or null)."""

    name = "set"
    summary = "Set a config value."
    action: Literal["set"] = "set"
    path: str = Field(min_length=1)
    value: Any

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        real = resolve_path(self.path, config, aliases)
        old = get_path(config, real)
        if old == self.value:
            return []
        set_path(config, real, self.value)
        return [Change(self.path, old, self.value)]


class StopRun(Action):
    """Stop the whole run without relaunching: for symptoms no configuration change can fix
    (a training-loop bug). The report carries the symptom's advice on what to check."""

    name = "stop_run"
    summary = "Stop the run: not fixable by configuration."
    terminal: ClassVar[bool] = True
    action: Literal["stop_run"] = "stop_run"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        raise NotApplicable("stop_run patches nothing; the engine ends the run")
