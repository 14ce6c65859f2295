"""Symptoms of the data rather than of training: imbalanced labels, unnormalized input,
constant inputs.

The managed harness reports ``input_mean``, ``input_std``, ``input_abs_max`` (over a sampled
training batch) and ``label_frac_max`` (largest training-class fraction), ``label_classes``.
Both are properties of the data set, so they hold from epoch 0 on and are reported on every
report that carries the streams: policies decide whether to normalize or reweight. At epoch 0
it also reports ``input_spread``: how far any training example of the first batches lies from
the first one (0: every input the same, a loading bug no configuration cures).
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from autofix.judge.history import History
from autofix.symptoms.base import HARD, Finding, FixedParams, ProbeDetector

__all__ = ["ConstantInputs", "LabelImbalance", "UnnormalizedInput"]


class LabelImbalance(ProbeDetector):
    """One class dominates the training labels.

    The probe reports only the largest class fraction ``p`` and the number of classes ``K``; the
    smallest class is then at most ``(1 - p) / (K - 1)``, so the largest-to-smallest ratio is at
    least ``p (K - 1) / (1 - p)``. Fires when that lower bound is >= ``min_ratio``. Without
    ``label_classes`` it assumes K = 2, the most lenient bound. With the default 4 the bar is a
    majority of 0.8 for binary labels, 0.5 for 5 classes and 0.31 for 10 classes.

    Defaults and sources: the largest/smallest ratio is the measure of SageMaker Debugger's
    ``ClassImbalance`` rule (``threshold_imbalance``, default 10 there); ``min_ratio=4`` (4:1,
    0.8 for binary) is our choice, lower because this finding only lets a policy reweight; set
    10 to match SageMaker.

    **Soft** (and advisory): the labels are what they are; whether they hurt shows only in what
    the model learns, over time. It may act on a run whose loss fell (the majority class carries
    the loss down while the minority classes are lost): its policy's ``where`` decides (balanced
    accuracy), and a reweighted child is kept only if it beats the run left alone at the same step.
    """

    name = "label_imbalance"
    inputs = ("label_frac_max",)
    evidence_keys = ("label_classes", "label_frac_max", "min_imbalance_ratio")
    summary = "The training labels are dominated by one class."
    advisory = True  # reweighting does not change the labels: a fixed run still has them
    acts_when_healthy = True  # the majority carries the loss down while the minority is lost

    class Params(FixedParams):
        min_ratio: float = Field(default=4.0, gt=1)

    def check(self, history: History) -> Finding | None:
        frac = self.optional(history, "label_frac_max")
        if frac is None or not math.isfinite(frac) or not 0 < frac <= 1:
            return None
        classes = self.optional(history, "label_classes")
        k = classes if classes is not None and math.isfinite(classes) and classes >= 2 else 2.0
        ratio = math.inf if frac >= 1 else frac * (k - 1) / (1 - frac)
        if ratio < self.params.min_ratio:
            return None
        of = f" of {classes:.0f} classes" if classes is not None and math.isfinite(classes) else " class"
        return self.found(
            history, "label_frac_max",
            f"the largest{of} holds {frac:.0%} of the training labels: at least {ratio:.3g}x "
            f"the smallest (>= {self.params.min_ratio:g}x)",
            label_frac_max=frac, label_classes=classes, min_imbalance_ratio=ratio,
        )


class UnnormalizedInput(ProbeDetector):
    """The input is not normalized: its variance, mean or largest value is off any sane scale.

    Fires when ``input_std``^2 is outside [``min_var``, ``max_var``], or |``input_mean``| >=
    ``max_abs_mean``, or ``input_abs_max`` > ``max_abs`` (None disables the mean or max check).
    A NaN/Inf statistic (NaN/Inf in the data) fires too. Any of the three streams may be
    missing; with none of them there is no finding.

    Defaults and sources: ``min_var=1e-5`` and ``max_var=10`` are DeepDiagnosis's tensor-variance
    range (Wardat et al., ICSE 2022); ``max_abs_mean=10`` is AUTOTRAINER's abnormal-input bar
    (mean |layer output| >= 10; Zhang et al., ICSE 2021), applied to the input; ``max_abs=100``
    is our choice: standardized data is 100 standard deviations out only for an outlier or an
    unscaled feature, while raw 0-255 pixels exceed it.

    **Soft**: many runs train fine on unscaled features (the zoo's blobs, variance ~30); it acts
    early only beside a hard symptom it explains (exploding gradients on raw pixels).
    """

    name = "unnormalized_input"
    inputs = ("input_mean", "input_std", "input_abs_max")
    evidence_keys = ("input_abs_max", "input_mean", "input_std")
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "The input data is not normalized."

    class Params(FixedParams):
        min_var: float = Field(default=1e-5, ge=0)
        max_var: float = Field(default=10.0, gt=0)
        max_abs_mean: float | None = Field(default=10.0, gt=0)
        max_abs: float | None = Field(default=100.0, gt=0)

        @model_validator(mode="after")
        def _range(self) -> UnnormalizedInput.Params:
            if self.min_var >= self.max_var:
                raise ValueError(f"min_var ({self.min_var}) must be below max_var ({self.max_var})")
            return self

    def check(self, history: History) -> Finding | None:
        mean = self.optional(history, "input_mean")
        std = self.optional(history, "input_std")
        top = self.optional(history, "input_abs_max")
        p = self.params
        problems: list[str] = []
        metric = ""
        bad = [n for n, v in (("input_mean", mean), ("input_std", std), ("input_abs_max", top))
               if v is not None and not math.isfinite(v)]
        if bad:
            problems.append(f"{', '.join(bad)} not finite (NaN/Inf in the input)")
            metric = bad[0]
        if std is not None and math.isfinite(std):
            var = std * std
            if not p.min_var <= var <= p.max_var:
                problems.append(f"variance {var:.3g} outside [{p.min_var:g}, {p.max_var:g}]")
                metric = metric or "input_std"
        if mean is not None and math.isfinite(mean) and p.max_abs_mean is not None and abs(mean) >= p.max_abs_mean:
            problems.append(f"|mean| {abs(mean):.3g} >= {p.max_abs_mean:g}")
            metric = metric or "input_mean"
        if top is not None and math.isfinite(top) and p.max_abs is not None and top > p.max_abs:
            problems.append(f"max |x| {top:.3g} > {p.max_abs:g}")
            metric = metric or "input_abs_max"
        if not problems:
            return None
        return self.found(
            history, metric, "input not normalized: " + "; ".join(problems),
            input_mean=mean, input_std=std, input_abs_max=top,
        )


class ConstantInputs(ProbeDetector):
    """Every training example the model is fed is the same input: nothing can be learned.

    Fires when ``input_spread`` (the largest absolute difference between any example of the
    first training batches and the first example; reported at epoch 0 when those batches hold
    two or more examples) is at most ``max_spread``. Labels that differ on identical inputs
    leave every model at the label distribution, so the learning rate, the initialisation and
    the model are never the remedy: the run stops with a checklist.

    Defaults and sources: Karpathy's "A Recipe for Training Neural Networks" (2019) checks the
    data exactly as it enters the net ("visualize just before the net"); this is that check in
    one number, reported, not repaired, as DeepDiagnosis reports faults no configuration cures.
    ``max_spread=0.0`` (exactly identical inputs) is our choice; the isolation ladder's
    real-vs-shuffled-labels rung finds the same bug, at a cost, where inputs differ but carry no
    signal. Measured: the isolation zoo's digits loader with every image the first one
    (``bug: constant_inputs``) was localised to the model by a dying-ReLU re-init first.
    """

    name = "constant_inputs"
    inputs = ("input_spread",)
    evidence_keys = ("input_spread",)
    severity = HARD
    fixable = False
    summary = "Every training input is the same: the data loader feeds one example (a data bug)."
    advice = """\
Every example in the first training batches is identical, so no model can tell the classes
apart and no configuration helps. Check that
(1) the dataset's __getitem__ uses its index (not a fixed one, not the first row);
(2) the transform does not replace the input (a normalisation by a zero-variance statistic, a
    constant fill, a crop outside the image);
(3) the input column is the features, not an ID or a constant column;
(4) augmentation or caching did not store one tensor and reuse it for every example."""

    class Params(FixedParams):
        max_spread: float = Field(default=0.0, ge=0)

    def check(self, history: History) -> Finding | None:
        spread = self.optional(history, "input_spread")
        if spread is None or not math.isfinite(spread) or spread > self.params.max_spread:
            return None
        return self.found(
            history, "input_spread",
            f"every training input is the same: no example of the first batches differs from the first "
            f"by more than {spread:.3g}",
            input_spread=spread,
        )
