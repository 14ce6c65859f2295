"""Symptoms read off the gradient streams of the probe: vanishing and exploding gradients.

The managed harness reports, per epoch (epoch 0 = before any training step), ``grad_norm``,
``grad_norm_first`` / ``grad_norm_last`` (first / last layer), ``grad_ratio`` (first / last),
``grad_zero_frac`` and ``update_ratio_global`` (||dtheta|| / ||theta|| of one step, exactly 0.0
when no parameter changed). A custom trainable may report none of them: a detector whose inputs
are missing from the last report finds nothing and never raises.

``no_update`` lives in :mod:`autofix.symptoms.updates`; the base of every probe detector,
:class:`~autofix.symptoms.base.ProbeDetector`, in :mod:`autofix.symptoms.base`.
"""

from __future__ import annotations

import math

from pydantic import Field

from autofix.judge.history import History
from autofix.symptoms.base import HARD, Finding, FixedParams, ProbeDetector

__all__ = ["ExplodingGradients", "VanishingGradients"]


def _ratio(history: History) -> float | None:
    """``grad_ratio`` as reported, else ``grad_norm_first / grad_norm_last`` when both are."""
    ratio = ProbeDetector.optional(history, "grad_ratio")
    if ratio is not None:
        return ratio
    norms = ProbeDetector.last_values(history, "grad_norm_first", "grad_norm_last")
    if norms is None or not norms["grad_norm_last"]:
        return None
    return norms["grad_norm_first"] / norms["grad_norm_last"]


def _accuracy_text(accuracy: float | None) -> str:
    return "" if accuracy is None else f", val_accuracy {accuracy:.3g}"


# -- detectors -------------------------------------------------------------------------------

class VanishingGradients(ProbeDetector):
    """The first layer's gradient is vanishingly small next to the last layer's.

    Fires when ``grad_ratio`` (first / last layer gradient norm) < ``max_ratio`` and
    ``grad_norm_first`` < ``max_first_norm`` while the last ``val_accuracy`` is below
    ``max_accuracy`` (ignored when the run reports no accuracy; None disables the gate).

    Defaults and sources: ``max_ratio=1e-3`` and ``max_first_norm=1e-4`` are AUTOTRAINER's
    vanishing-gradient rule (Zhang et al., ICSE 2021); ``max_accuracy=0.6`` is AUTOTRAINER's
    "gradient problems are reported only when accuracy is poor", with its not-converging bar of
    0.6. DeepDiagnosis (Wardat et al., ICSE 2022) uses an absolute 1e-7 instead.

    Epoch 0 (before any step) is judged too: the gradient at initialization is informative, and
    a deep sigmoid net whose first layer gets nothing at init is the textbook case. Both
    conditions are required, so a small net with a small loss gradient is not flagged.

    Zero gradients behind dead ReLU units (``dead_frac_max`` or ``grad_zero_frac`` >=
    ``unless_dead_frac``, 0.7 as in ``dying_relu``) are that symptom's finding, not this one:
    the cure differs.

    **Soft**: deep tanh/sigmoid nets start with tiny first-layer gradients and often learn
    anyway, late (the slow learners of the zoo's healthy controls).
    """

    name = "vanishing_gradients"
    inputs = ("grad_ratio", "grad_norm_first", "grad_norm_last")
    evidence_keys = ("grad_norm_first", "grad_ratio", "val_accuracy")
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "The gradient vanishes before it reaches the first layers."

    class Params(FixedParams):
        max_ratio: float = Field(default=1e-3, gt=0)
        max_first_norm: float = Field(default=1e-4, gt=0)
        max_accuracy: float | None = Field(default=0.6, gt=0, le=1)
        unless_dead_frac: float | None = Field(default=0.7, gt=0, le=1)

    def check(self, history: History) -> Finding | None:
        first = self.optional(history, "grad_norm_first")
        ratio = _ratio(history)
        if first is None or ratio is None or not (math.isfinite(first) and math.isfinite(ratio)):
            return None
        p = self.params
        if not (ratio < p.max_ratio and first < p.max_first_norm):
            return None
        dead = [v for k in ("dead_frac_max", "grad_zero_frac")
                if (v := self.optional(history, k)) is not None and math.isfinite(v)]
        if p.unless_dead_frac is not None and dead and max(dead) >= p.unless_dead_frac:
            return None
        poor, accuracy = self.poor_accuracy(history, p.max_accuracy)
        if not poor:
            return None
        return self.found(
            history, "grad_ratio",
            f"first-layer gradient norm {first:.3g} is {ratio:.3g}x the last layer's "
            f"(< {p.max_ratio:g}){_accuracy_text(accuracy)}",
            grad_ratio=ratio, grad_norm_first=first, val_accuracy=accuracy,
        )


class ExplodingGradients(ProbeDetector):
    """The gradient is huge: non-finite, far above its first value, or piling up in the first layers.

    Fires on the first of:

    * ``grad_norm`` is NaN/Inf (``nonfinite``), unless the same report's ``train_loss`` is
      non-finite too: the harness skips the backward pass of a non-finite loss, so its grad norm
      is then a gap, not a measurement, and ``nonfinite_loss`` owns the finding;
    * ``grad_ratio`` (first / last layer) > ``min_ratio``;
    * ``grad_norm`` > ``min_growth`` x the first report's finite ``grad_norm`` (epoch 0 with the
      managed harness);
    * at initialization, ``init_loss`` > ``max_init_loss_ratio`` x ``chance_loss`` (ln of the
      number of classes): logits that large mean activations, and with them gradients, blow up
      through the layers of a badly scaled initialisation (large-std weights).

    The last three only count while ``val_accuracy`` is below ``max_accuracy`` (ignored when there
    is no accuracy; None disables the gate); a non-finite gradient always counts.

    Defaults and sources: ``min_ratio=70`` and ``max_accuracy=0.6`` are AUTOTRAINER's
    exploding-gradient rule and accuracy gate (Zhang et al., ICSE 2021). ``min_growth=100`` is
    our choice, measured: the healthy digits run (small CNN, Adam 1e-3) grows its grad norm 8.6x
    from epoch 0 (0.262 -> 2.25) while learning, so 100x leaves an order of magnitude of margin.
    OLMo-core's 6-sigma rolling test needs far more reports than one per epoch.
    ``max_init_loss_ratio=10`` follows the "verify the loss at init" check (Karpathy, "A Recipe
    for Training Neural Networks", 2019: a softmax classifier should start at ln K); measured
    here, healthy digits runs start at 1.00x ln 10 and a std-0.6 init at 1,300x.

    **Hard**: gradients this large wreck the weights within a few steps.
    """

    name = "exploding_gradients"
    inputs = ("grad_norm", "init_loss")
    evidence_keys = ("chance_loss", "first", "grad_norm", "grad_ratio", "growth", "init_loss", "ratio", "val_accuracy")
    severity = HARD
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "The gradient norm explodes."

    class Params(FixedParams):
        min_ratio: float = Field(default=70.0, gt=0)
        min_growth: float | None = Field(default=100.0, gt=1)
        nonfinite: bool = True
        max_accuracy: float | None = Field(default=0.6, gt=0, le=1)
        max_init_loss_ratio: float | None = Field(default=10.0, gt=1)

    def check(self, history: History) -> Finding | None:
        init = self._at_init(history)
        if init is not None:
            return init
        norm = self.optional(history, "grad_norm")
        ratio = _ratio(history)
        if norm is None and ratio is None:
            return None
        p = self.params
        if norm is not None and not math.isfinite(norm):
            loss = self.optional(history, "train_loss")
            if p.nonfinite and (loss is None or math.isfinite(loss)):
                return self.found(history, "grad_norm", f"grad_norm is {norm}", grad_norm=norm)
            return None
        poor, accuracy = self.poor_accuracy(history, p.max_accuracy)
        if not poor:
            return None
        if ratio is not None and math.isfinite(ratio) and ratio > p.min_ratio:
            return self.found(
                history, "grad_ratio",
                f"first-layer gradient norm is {ratio:.3g}x the last layer's (> {p.min_ratio:g})"
                f"{_accuracy_text(accuracy)}",
                grad_ratio=ratio, grad_norm=norm, val_accuracy=accuracy,
            )
        if norm is None or p.min_growth is None:
            return None
        series = [(i, v) for i, v in history.series("grad_norm") if math.isfinite(v)]
        if len(series) < 2 or series[0][1] <= 0:
            return None
        baseline = series[0][1]
        growth = norm / baseline
        if growth <= p.min_growth:
            return None
        return self.found(
            history, "grad_norm",
            f"grad_norm {norm:.4g} is {growth:.3g}x its first value {baseline:.4g} (> {p.min_growth:g}x)"
            f"{_accuracy_text(accuracy)}",
            grad_norm=norm, first=baseline, growth=growth, val_accuracy=accuracy,
        )


    def _at_init(self, history: History) -> Finding | None:
        init, chance = self.optional(history, "init_loss"), self.optional(history, "chance_loss")
        limit = self.params.max_init_loss_ratio
        if limit is None or init is None or chance is None or not chance > 0 or not math.isfinite(init):
            return None
        if init <= limit * chance:
            return None
        norm = self.optional(history, "grad_norm")
        return self.found(
            history, "init_loss",
            f"the loss at initialization is {init:.4g}, {init / chance:.3g}x chance level ln(classes) = "
            f"{chance:.3g} (> {limit:g}x): the initial weights blow activations and gradients up"
            + (f" (grad_norm {norm:.4g})" if norm is not None else ""),
            init_loss=init, chance_loss=chance, ratio=init / chance, grad_norm=norm,
        )
