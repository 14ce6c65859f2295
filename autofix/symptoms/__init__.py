"""Symptom detectors, by YAML name. Pure Python over reported numbers: no torch, no ray."""

from __future__ import annotations

from typing import Any

from autofix.errors import AutofixError
from autofix.symptoms.activations import DyingReLU, SaturatedActivations
from autofix.symptoms.base import HARD, SOFT, Detector, Finding, Params
from autofix.symptoms.code import DetachedLoss, LossBroadcast, MissingZeroGrad, NanMetric
from autofix.symptoms.data import ConstantInputs, LabelImbalance, UnnormalizedInput
from autofix.symptoms.generalization import ChanceLevel, ClassCollapse, Overfitting
from autofix.symptoms.gradients import ExplodingGradients, VanishingGradients
from autofix.symptoms.isolation import BaselineLearns, UnexplainedFailure
from autofix.symptoms.loss import DivergingLoss, NonFiniteLoss, OscillatingLoss, Plateau
from autofix.symptoms.outputs import NonFiniteAtInit, OutputLossMismatch
from autofix.symptoms.progress import SlowProgress
from autofix.symptoms.spike import LossSpike
from autofix.symptoms.updates import UnchangedWeights

# isort-style order (ruff RUF022): constants, then classes, then functions; alphabetical in each.
__all__ = [
    "HARD",
    "SOFT",
    "SYMPTOMS",
    "BaselineLearns",
    "ChanceLevel",
    "ClassCollapse",
    "ConstantInputs",
    "DetachedLoss",
    "Detector",
    "DivergingLoss",
    "DyingReLU",
    "ExplodingGradients",
    "Finding",
    "LabelImbalance",
    "LossBroadcast",
    "LossSpike",
    "MissingZeroGrad",
    "NanMetric",
    "NonFiniteAtInit",
    "NonFiniteLoss",
    "OscillatingLoss",
    "OutputLossMismatch",
    "Overfitting",
    "Params",
    "Plateau",
    "SaturatedActivations",
    "SlowProgress",
    "UnchangedWeights",
    "UnexplainedFailure",
    "UnnormalizedInput",
    "VanishingGradients",
    "build_detectors",
]

SYMPTOMS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        # the model as built, before it trains
        NonFiniteAtInit, OutputLossMismatch,
        # the loss curve alone
        NonFiniteLoss, DivergingLoss, OscillatingLoss, Plateau,
        # one optimizer step's loss, judged inside the trial (autofix.rules.intrial)
        LossSpike,
        # probe streams: gradients and updates, activations, data, what is learned
        VanishingGradients, ExplodingGradients, UnchangedWeights,
        DyingReLU, SaturatedActivations,
        LabelImbalance, UnnormalizedInput, ConstantInputs,
        Overfitting, ClassCollapse, ChanceLevel,
        # the attempt's end: no other symptom, and the loss fell too little
        SlowProgress,
        # the training code itself: bugs no config cures (stop_run)
        MissingZeroGrad, LossBroadcast, DetachedLoss, NanMetric,
        # what no symptom explains, and the isolation ladder's answer (autofix.rules.ladder)
        UnexplainedFailure, BaselineLearns,
    )
}


def build_detectors(default_metric: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[Detector]:
    """One detector per registered symptom, with the spec's parameter overrides applied."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(SYMPTOMS))
    if unknown:
        raise AutofixError(f"unknown symptom(s) {unknown}; available: {', '.join(sorted(SYMPTOMS))}")
    return [cls(default_metric, **overrides.get(name, {})) for name, cls in SYMPTOMS.items()]
