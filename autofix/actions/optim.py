"""Actions on the optimiser: switch it, clip gradients, weight decay."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autofix.actions.base import Action, Change, NotApplicable, get_path, resolve_path

__all__ = ["ClipGradients", "SwitchOptimizer", "WeightDecay"]

# AUTOTRAINER's base learning rates per optimiser family (0.01 for SGD, 0.001 otherwise).
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2}


class SwitchOptimizer(Action):
    """Replace the optimiser (e.g. SGD -> Adam), with a learning rate sensible for the new one.

    ``lr`` defaults to AUTOTRAINER's base rate for the target family (SGD 0.01, Adam 1e-3);
    keyword arguments that the new optimiser would not accept (``momentum`` for Adam) are
    dropped, ``weight_decay`` is kept. A "switch" to the optimiser already in use is not
    applicable: it would only reset the learning rate and drop the user's kwargs.
    """

    name = "switch_optimizer"
    summary = "Switch to another optimiser with a sensible learning rate."
    action: Literal["switch_optimizer"] = "switch_optimizer"
    to: Literal["adagrad", "adam", "adamw", "rmsprop", "sgd"]
    lr: float | None = Field(default=None, gt=0)
    momentum: float | None = Field(default=None, ge=0, lt=1)

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        real = resolve_path("optimizer", config, aliases)
        old = get_path(config, real)
        current = old.get("name") if isinstance(old, dict) else old
        if isinstance(current, str) and current.lower() == self.to:
            raise NotApplicable(f"the optimizer already is {self.to}: switching to it changes nothing")
        if not isinstance(old, dict):
            return self.set_value(config, aliases, "optimizer", self.to)  # a custom trainable's name key
        kwargs = {k: v for k, v in (old.get("kwargs") or {}).items() if k == "weight_decay"}
        if self.to == "sgd" and self.momentum is not None:
            kwargs["momentum"] = self.momentum
        new = {**old, "name": self.to, "lr": self.lr or DEFAULT_LR[self.to], "kwargs": kwargs}
        return self.set_value(config, aliases, "optimizer", new)


class ClipGradients(Action):
    """Clip gradients by global norm (OPT-175B tightened 2.5 -> 1.0 on loss explosions) or value."""

    name = "clip_gradients"
    summary = "Clip gradients by norm or by value."
    action: Literal["clip_gradients"] = "clip_gradients"
    kind: Literal["norm", "value"] = "norm"
    max: float = Field(default=1.0, gt=0)

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        return self.set_value(config, aliases, "grad_clip", {"kind": self.kind, "max": self.max})


class WeightDecay(Action):
    """Set L2 weight decay (AUTOTRAINER's first overfitting repair; OPT-175B used 0.1)."""

    name = "weight_decay"
    summary = "Set the optimiser's weight decay."
    action: Literal["weight_decay"] = "weight_decay"
    value: float = Field(default=1e-4, ge=0, le=1)

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        path = "optimizer.kwargs" if "optimizer.weight_decay" not in aliases else None
        if path is None:
            return self.set_value(config, aliases, "optimizer.weight_decay", self.value)
        kwargs = dict(get_path(config, resolve_path(path, config, aliases)) or {})
        kwargs["weight_decay"] = self.value
        return self.set_value(config, aliases, path, kwargs)
