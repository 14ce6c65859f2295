"""Actions on the model: re-initialise layers, swap activations, set the output activation,
batch norm, dropout.

All of these change the weights' meaning or shape, so they always start cold.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from autofix.actions.base import Action, Change, NotApplicable
from autofix.spec.catalogue import ActivationName, InitScheme, OutputActivation
from autofix.spec.training import LOSSES

__all__ = ["MATCHING_INIT", "AddBatchNorm", "AddDropout", "Reinitialize", "SetOutputActivation", "SwapActivation"]


class _Cold(Action):
    start: Literal["cold"] = "cold"


class Reinitialize(_Cold):
    """Re-initialise matching layers outside the output head: He/Kaiming for ReLU nets
    (AUTOTRAINER's "ReLU + He init"), Xavier for tanh/sigmoid, LeCun-normal for SELU,
    orthogonal, or PyTorch's default ``reset_parameters``. ``head: true`` includes the head."""

    name = "reinitialize"
    summary = "Re-initialise layers by name pattern or type."
    action: Literal["reinitialize"] = "reinitialize"
    scheme: InitScheme = "kaiming"
    pattern: str | None = None
    types: list[str] = Field(default_factory=lambda: ["Conv1d", "Conv2d", "Linear"], min_length=1)
    head: bool = False

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        value = {"scheme": self.scheme, "pattern": self.pattern, "types": list(self.types), "head": self.head}
        return self.set_value(config, aliases, "init", value)


# The initialisation each activation's authors derived it for: SELU's self-normalisation assumes
# LeCun-normal weights (Klambauer et al. 2017), tanh/sigmoid Glorot's (Glorot & Bengio 2010),
# ReLU-like units He's (He et al. 2015).
MATCHING_INIT = {"elu": "kaiming", "leaky_relu": "kaiming", "relu": "kaiming", "selu": "lecun_normal",
                 "sigmoid": "xavier", "tanh": "xavier"}


class SwapActivation(_Cold):
    """Replace the hidden activation modules, never the output head's (AUTOTRAINER: SELU,
    LeakyReLU). ``scope: nonfinite`` replaces only the kind of the first activation whose output
    is non-finite on the untrained model. ``init: matching`` also re-initialises the hidden
    weight layers for the new activation (SELU: LeCun-normal, tanh/sigmoid: Glorot, ReLU-like:
    He); a scheme name picks one; ``keep`` (the default) leaves the weights as drawn."""

    name = "swap_activation"
    summary = "Replace hidden activation functions (e.g. ReLU -> LeakyReLU), optionally with their init."
    action: Literal["swap_activation"] = "swap_activation"
    to: ActivationName = "leaky_relu"
    scope: Literal["hidden", "nonfinite"] = "hidden"
    init: Literal["keep", "matching", InitScheme] = "keep"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        changes = self.set_value(config, aliases, "architecture.activation", self.to)
        if self.scope != "hidden":
            changes += self.set_value(config, aliases, "architecture.activation_scope", self.scope)
        if self.init != "keep":
            scheme = MATCHING_INIT[self.to] if self.init == "matching" else self.init
            value = {"scheme": scheme, "pattern": None, "types": ["Conv1d", "Conv2d", "Linear"], "head": False}
            changes += self.set_value(config, aliases, "init", value)
        return changes


class SetOutputActivation(_Cold):
    """Make the output head end with what the loss takes: ``to: matching`` reads the loss
    (cross_entropy / bce_with_logits: identity, i.e. logits; nll: log_softmax; Keras'
    categorical_crossentropy: softmax; a custom loss: its ``loss.expects``). The only action
    that changes the head."""

    name = "set_output_activation"
    summary = "Set the output layer's activation to the one the loss expects."
    action: Literal["set_output_activation"] = "set_output_activation"
    to: Literal["matching", OutputActivation] = "matching"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        target = self.to
        if target == "matching":
            loss: dict = config["loss"] if isinstance(config.get("loss"), dict) else {}
            expects = LOSSES.get(loss.get("name", "cross_entropy"), loss.get("expects"))
            if expects is None:
                raise NotApplicable(f"loss {loss.get('name')!r} says nothing of its inputs (set loss.expects)")
            target = FOR_EXPECTS[expects]  # type: ignore[assignment]  # FOR_EXPECTS maps to these names
        return self.set_value(config, aliases, "architecture.output_activation", target)


# The output activation that gives each loss what it takes (autofix.spec.training.LOSSES).
FOR_EXPECTS = {"logits": "identity", "log_probs": "log_softmax", "probabilities": "softmax"}


class AddBatchNorm(_Cold):
    """Insert batch normalisation after each Linear/Conv layer (AUTOTRAINER's BatchNorm repair)."""

    name = "add_batch_norm"
    summary = "Insert batch normalisation layers."
    action: Literal["add_batch_norm"] = "add_batch_norm"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        return self.set_value(config, aliases, "architecture.batch_norm", True)


class AddDropout(_Cold):
    """Dropout before each hidden Linear layer (AUTOTRAINER's overfitting repair)."""

    name = "add_dropout"
    summary = "Add dropout."
    action: Literal["add_dropout"] = "add_dropout"
    p: float = Field(default=0.3, gt=0, lt=1)

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        return self.set_value(config, aliases, "architecture.dropout", self.p)
