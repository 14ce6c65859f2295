"""Actions on the data: class reweighting, input normalisation, augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from autofix.actions.base import Action, Change

__all__ = ["Augment", "NormalizeInputs", "ReweightClasses"]


class ReweightClasses(Action):
    """Counter a majority class: balanced class weights in the loss, or a balanced sampler.

    ``loss`` uses scikit-learn's ``compute_class_weight("balanced")`` on the training labels
    (computed by the harness, which sees the data); ``sampler`` draws classes equally often.
    """

    name = "reweight_classes"
    summary = "Weight the loss (or the sampler) so that every class counts equally."
    action: Literal["reweight_classes"] = "reweight_classes"
    method: Literal["loss", "sampler"] = "loss"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        if self.method == "loss":
            return self.set_value(config, aliases, "loss.class_weights", "balanced")
        return self.set_value(config, aliases, "data.sampler", "balanced")


class NormalizeInputs(Action):
    """Standardise inputs with the training data's mean and std (per channel for images)."""

    name = "normalize_inputs"
    summary = "Standardise the inputs with statistics of the training data."
    action: Literal["normalize_inputs"] = "normalize_inputs"

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        return self.set_value(config, aliases, "data.normalize", True)


class Augment(Action):
    """Add torchvision augmentation to image training batches (AUTOTRAINER/SageMaker: overfit)."""

    name = "augment"
    summary = "Augment training images (flip, rotation, crop)."
    action: Literal["augment"] = "augment"
    flip: bool = True
    rotation: float = Field(default=10, ge=0, le=180)
    crop_padding: int = Field(default=2, ge=0, le=64)

    @model_validator(mode="after")
    def _something(self) -> Augment:
        if not (self.flip or self.rotation or self.crop_padding):
            raise ValueError("augment needs at least one of flip, rotation > 0, crop_padding > 0")
        return self

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        value = {"flip": self.flip, "rotation": self.rotation, "crop_padding": self.crop_padding}
        return self.set_value(config, aliases, "data.augment", value)
