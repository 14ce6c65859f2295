"""Actions on the model: re-initialise layers, swap activations, batch norm, dropout.

All of these change the weights' meaning or shape, so they always start cold.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from autofix.actions.base import Action, Change

__all__ = ["AddBatchNorm", "AddDropout", "Reinitialize", "SwapActivation"]


class _Cold(Action):
    start: Literal["cold"] = "cold"


class Reinitialize(_Cold):
    """Re-initialise matching layers: He/Kaiming for ReLU nets (AUTOTRAINER's "ReLU + He init"),
    Xavier for tanh/sigmoid, orthogonal, or PyTorch's default ``reset_parameters``."""

    name = "reinitialize"
    summary = "Re-initialise layers by name pattern or type."
    action: Literal["reinitialize"] = "reinitialize"
    scheme: Literal["default", "kaiming", "orthogonal", "xavier"] = "kaiming"
    pattern: str | None = None
    types: list[str] = Field(default_factory=lambda: ["Conv1d", "Conv2d", "Linear"], min_length=1)

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
        value = {"scheme": self.scheme, "pattern": self.pattern, "types": list(self.types)}
        return self.set_value(config, aliases, "init", value)


class SwapActivation(_Cold):
    """Replace the activations of an ``nn.Sequential`` model (AUTOTRAINER: SELU, LeakyReLU)."""

    name = "swap_activation"
    summary = "Replace activation functions (e.g. ReLU -> LeakyReLU)."
    action: Literal["swap_activation"] = "swap_activation"
    to: Literal["elu", "leaky_relu", "relu", "selu", "sigmoid", "tanh"] = "leaky_relu"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        return self.set_value(config, aliases, "architecture.activation", self.to)


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
