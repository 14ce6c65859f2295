"""Symptoms read off the activation probe: dead ReLU units, saturated tanh/sigmoid units.

The managed harness samples a batch each epoch (epoch 0 = before any step) and reports
``dead_frac/<act>`` and their maximum ``dead_frac_max`` (fraction of ReLU units that output 0 on
the whole batch), ``saturated_frac/<act>`` and ``saturated_frac_max`` (fraction of tanh/sigmoid
units whose input has |x| > 5), and ``grad_zero_frac`` (fraction of exactly-zero gradient
entries). A model without such layers reports none of them: the detector then finds nothing.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from autofix.judge.history import History
from autofix.symptoms.base import Finding, FixedParams, ProbeDetector

__all__ = ["DyingReLU", "SaturatedActivations"]


class DyingReLU(ProbeDetector):
    """Most ReLU units are dead (output 0 for every input), so most gradients are exactly zero.

    Fires when ``dead_frac_max`` >= ``min_dead_frac`` or ``grad_zero_frac`` >=
    ``min_zero_grad_frac`` (None disables an arm; at least one must stay), while the last
    ``val_accuracy`` is below ``max_accuracy`` (ignored without accuracy; None disables the gate).
    Epoch 0 is judged too: units dead at initialization (a large negative bias) are real.

    Defaults and sources: ``min_dead_frac=0.7`` is DeepDiagnosis's dead-node rule (>= 70%; Wardat
    et al., ICSE 2022); ``min_zero_grad_frac=0.7`` is AUTOTRAINER's dying-ReLU rule (>= 70% of
    gradient entries zero; Zhang et al., ICSE 2021); ``max_accuracy=0.6`` is AUTOTRAINER's gate
    (gradient problems reported only when accuracy is poor). The gate keeps a net that learned
    well with very sparse layers from being "repaired".

    **Soft**: narrow ReLU stacks start with many dead units and often learn anyway.
    """

    name = "dying_relu"
    inputs = ("dead_frac_max", "dead_frac/")
    evidence_keys = ("dead_frac_max", "grad_zero_frac", "val_accuracy")
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "Most ReLU units are dead and pass no gradient."

    class Params(FixedParams):
        min_dead_frac: float | None = Field(default=0.7, gt=0, le=1)
        min_zero_grad_frac: float | None = Field(default=0.7, gt=0, le=1)
        max_accuracy: float | None = Field(default=0.6, gt=0, le=1)

        @model_validator(mode="after")
        def _some_arm(self) -> DyingReLU.Params:
            if self.min_dead_frac is None and self.min_zero_grad_frac is None:
                raise ValueError("min_dead_frac and min_zero_grad_frac cannot both be null")
            return self

    def check(self, history: History) -> Finding | None:
        p = self.params
        dead = self.optional(history, "dead_frac_max")
        zero = self.optional(history, "grad_zero_frac")
        dead_hit = dead is not None and p.min_dead_frac is not None and math.isfinite(dead) and dead >= p.min_dead_frac
        zero_hit = (zero is not None and p.min_zero_grad_frac is not None and math.isfinite(zero)
                    and zero >= p.min_zero_grad_frac)
        if not (dead_hit or zero_hit):
            return None
        poor, accuracy = self.poor_accuracy(history, p.max_accuracy)
        if not poor:
            return None
        acc = "" if accuracy is None else f", val_accuracy {accuracy:.3g}"
        if dead_hit:
            layer = self.worst(history, "dead_frac/")
            where = f"in {layer}" if layer else "in one layer"
            reason = f"{dead:.0%} of the ReLU units {where} are dead, >= {p.min_dead_frac:.0%}{acc}"
            metric = "dead_frac_max"
        else:
            reason = f"{zero:.0%} of gradient entries are exactly zero, >= {p.min_zero_grad_frac:.0%}{acc}"
            metric = "grad_zero_frac"
        return self.found(history, metric, reason, dead_frac_max=dead, grad_zero_frac=zero, val_accuracy=accuracy)


class SaturatedActivations(ProbeDetector):
    """Most tanh/sigmoid units are saturated (|input| > 5), where their gradient is nearly zero.

    Fires when ``saturated_frac_max`` > ``min_saturated_frac`` while the last ``val_accuracy`` is
    below ``max_accuracy`` (ignored without accuracy; None disables the gate). Epoch 0 is judged
    too: saturation at initialization (weights drawn too large) is real.

    Defaults and sources: ``min_saturated_frac=0.5`` and the |x| > 5 cut (applied by the probe)
    are DeepDiagnosis's saturated-activation rule (> 50% of units; Wardat et al., ICSE 2022).
    ``max_accuracy=0.6`` extends AUTOTRAINER's accuracy gate (Zhang et al., ICSE 2021) to this
    gradient-starving symptom: a trained tanh net may legitimately saturate many units.

    **Soft**: saturation eases as weights adapt; deep tanh nets learn through it.
    """

    name = "saturated_activations"
    inputs = ("saturated_frac_max", "saturated_frac/")
    evidence_keys = ("saturated_frac_max", "val_accuracy")
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "Most tanh/sigmoid units are saturated."

    class Params(FixedParams):
        min_saturated_frac: float = Field(default=0.5, ge=0, lt=1)
        max_accuracy: float | None = Field(default=0.6, gt=0, le=1)

    def check(self, history: History) -> Finding | None:
        frac = self.optional(history, "saturated_frac_max")
        p = self.params
        if frac is None or not math.isfinite(frac) or frac <= p.min_saturated_frac:
            return None
        poor, accuracy = self.poor_accuracy(history, p.max_accuracy)
        if not poor:
            return None
        layer = self.worst(history, "saturated_frac/")
        where = f"in {layer}" if layer else "in one layer"
        acc = "" if accuracy is None else f", val_accuracy {accuracy:.3g}"
        return self.found(
            history, "saturated_frac_max",
            f"{frac:.0%} of the tanh/sigmoid units {where} are saturated (|x| > 5), > {p.min_saturated_frac:.0%}{acc}",
            saturated_frac_max=frac, val_accuracy=accuracy,
        )
