"""Actions on the optimiser: switch it, clip gradients, weight decay."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autofix.actions.base import Action, Change, NotApplicable, get_path, resolve_path
from autofix.spec.catalogue import OptimizerName

__all__ = ["ACCEPTS", "ClipGradients", "SwitchOptimizer", "WeightDecay"]

# The keyword arguments each torch.optim class takes besides params and lr (torch 2.x
# signatures; tests/test_actions.py checks them against the installed torch): a switch keeps
# every one of the user's kwargs the new optimiser accepts.
ACCEPTS: dict[str, frozenset[str]] = {
    "adagrad": frozenset({"lr_decay", "weight_decay", "initial_accumulator_value", "eps", "foreach", "maximize",
                          "differentiable", "fused"}),
    "adam": frozenset({"betas", "eps", "weight_decay", "amsgrad", "foreach", "maximize", "capturable",
                       "differentiable", "fused", "decoupled_weight_decay"}),
    "adamw": frozenset({"betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
                        "differentiable", "fused"}),
    "rmsprop": frozenset({"alpha", "eps", "weight_decay", "momentum", "centered", "capturable", "foreach",
                          "maximize", "differentiable"}),
    "sgd": frozenset({"momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach",
                      "differentiable", "fused"}),
}


class SwitchOptimizer(Action):
    """Replace the optimiser (e.g. SGD -> Adam), keeping what the user chose.

    A switch keeps the learning rate and every keyword argument the new optimiser accepts
    (Adam's ``eps`` goes to AdamW or RMSprop, ``betas`` to AdamW, ``weight_decay`` everywhere);
    the others are dropped (``momentum`` for Adam). ``lr`` sets a learning rate instead (a policy
    that switches to Adam at AUTOTRAINER's 1e-3 says so), ``momentum`` SGD's momentum. A
    "switch" to the optimiser already in use is not applicable: it would only reset the
    learning rate and drop the user's kwargs.
    """

    name = "switch_optimizer"
    summary = "Switch to another optimiser, keeping the learning rate and the kwargs it accepts."
    action: Literal["switch_optimizer"] = "switch_optimizer"
    to: OptimizerName
    lr: float | None = Field(default=None, gt=0)
    momentum: float | None = Field(default=None, ge=0, lt=1)

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        real = resolve_path("optimizer", config, aliases)
        old = get_path(config, real)
        current = old.get("name") if isinstance(old, dict) else old
        if isinstance(current, str) and current.lower() == self.to:
            raise NotApplicable(f"the optimizer already is {self.to}: switching to it changes nothing")
        if not isinstance(old, dict):
            changes = self.set_value(config, aliases, "optimizer", self.to)  # a custom trainable's name key
            if self.lr is not None and "optimizer.lr" in aliases:
                changes += self.set_value(config, aliases, "optimizer.lr", self.lr)
            return changes
        kwargs = {k: v for k, v in (old.get("kwargs") or {}).items() if k in ACCEPTS[self.to]}
        if self.to == "sgd" and self.momentum is not None:
            kwargs["momentum"] = self.momentum
        new = {**old, "name": self.to, "lr": self.lr if self.lr is not None else old.get("lr"), "kwargs": kwargs}
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
