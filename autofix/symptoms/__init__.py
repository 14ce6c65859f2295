"""Symptom detectors, by YAML name. Pure Python over reported numbers: no torch, no ray."""

from __future__ import annotations

from typing import Any

from autofix.errors import AutofixError
from autofix.symptoms.base import Detector, Finding, Params
from autofix.symptoms.loss import DivergingLoss, NonFiniteLoss, OscillatingLoss, Plateau

__all__ = ["SYMPTOMS", "Detector", "Finding", "Params", "build_detectors"]

SYMPTOMS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (NonFiniteLoss, DivergingLoss, OscillatingLoss, Plateau)
}


def build_detectors(default_metric: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[Detector]:
    """One detector per registered symptom, with the spec's parameter overrides applied."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(SYMPTOMS))
    if unknown:
        raise AutofixError(f"unknown symptom(s) {unknown}; available: {', '.join(sorted(SYMPTOMS))}")
    return [cls(default_metric, **overrides.get(name, {})) for name, cls in SYMPTOMS.items()]
