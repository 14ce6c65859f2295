"""Symptoms of what the model learns: overfitting, collapse onto few classes, loss at chance.

Inputs, per report (epoch 0 = before any training step): ``train_loss`` and the run's watched
loss (``val_loss`` by default); ``val_accuracy``, ``val_macro_f1``, ``pred_frac_max`` (largest
fraction of validation predictions in one class), ``label_frac_max``; the best constant
predictor's scores (``chance_accuracy``, ``chance_macro_f1``, ``label_entropy``; see
:mod:`autofix.judge.verdict`) and, at epoch 0 only, ``chance_loss`` (= ln(number of classes)). A run
that lacks them (regression, a custom trainable) gets no finding from these detectors.

All three are **soft**: a slow learner sits at chance, predicts one class or wobbles its
validation loss before it learns.
"""

from __future__ import annotations

import math

from pydantic import Field

from autofix.judge.history import History
from autofix.judge.verdict import LABEL_ENTROPY, Judge, at_chance
from autofix.symptoms.base import Finding, FixedParams, Params as DetectorParams, ProbeDetector, window_steps

__all__ = ["ChanceLevel", "ClassCollapse", "Overfitting"]


class Overfitting(ProbeDetector):
    """The validation loss turned back up while the training loss kept falling.

    Fires when all of these hold at the last report:

    * the validation loss (``metric``, default: the run's loss metric) improved on its first
      value at some point (one that never improved is ``plateau`` / ``diverging_loss``, not
      overfitting);
    * its best value is ``patience_steps`` optimizer steps old or more (or ``patience_share`` of
      the planned steps, when longer);
    * its last value is at least ``min_rise`` (relative) above that best;
    * that rise is also at least ``min_rise_of_first`` of the *first* validation loss (the
      untrained loss sets the task's scale: a converged 0.025 -> 0.033 is 33% but immaterial);
    * ``train_metric`` fell by at least ``min_train_drop`` (relative) since the report of the
      best validation loss: the model is still fitting the training set, not just noisy;
    * where ``score_metric`` (higher is better) is reported, its last value is at least
      ``min_score_drop`` below its best: a validation loss that climbs while the score holds is
      the model growing over-confident on what it already gets right, which no remedy for
      overfitting would improve where it is judged.

    Requiring both the age and the margin is what keeps noisy healthy curves quiet: the
    healthy digits run ends .131 .135 .173, 32% above its best but only 2 reports after it.

    Defaults and sources: ``patience_steps=128`` / ``patience_share=0.1`` are our choice, in
    steps where PyTorch Lightning's ``EarlyStopping`` counts 3 checks; ``min_rise=0.1`` follows
    SageMaker Debugger's ``Overfit`` rule (``ratio_threshold`` 0.1,
    there on the val/train gap, here on the rise above the best validation loss).
    ``min_rise_of_first=0.03`` and ``min_train_drop=0.1`` are our choices, added after healthy
    blobs/circles controls (benchmarks/zoo) fired on converged noise: 0.203 -> 0.297 while the
    training loss moved 5%, and 0.025 -> 0.033 out of a first 0.70. ``min_score_drop=0.02`` is
    the margin autofix's verdicts allow a score (``autofix.judge.verdict.CHANCE_MARGIN``), added after
    two healthy ported-models controls (a SELU MLP on circles, an exponential MLP on blobs) whose
    val_loss doubled and more while val_accuracy stayed within 0.004 of its best (0.99 and
    0.997): each was relaunched with weight decay for nothing. The zoo's overfitting case, whose
    accuracy falls 0.88 -> 0.82 as its val_loss climbs, still fires.
    """

    name = "overfitting"
    inputs = ("train_loss",)
    evidence_keys = ("best", "last", "rise", "score_best", "score_last", "steps_since_best", "train_at_best",
        "train_last")
    summary = "The validation loss rises while the training loss keeps falling."
    acts_when_healthy = True  # it shows on a run whose loss did fall

    class Params(DetectorParams):
        patience_steps: int = Field(default=128, ge=1)
        patience_share: float = Field(default=0.1, ge=0, le=1)
        min_rise: float = Field(default=0.1, gt=0)
        min_rise_of_first: float = Field(default=0.03, ge=0)
        min_train_drop: float = Field(default=0.1, ge=0, lt=1)
        train_metric: str = Field(default="train_loss", min_length=1)
        score_metric: str | None = Field(default="val_accuracy", min_length=1)
        min_score_drop: float = Field(default=0.02, ge=0)

    def check(self, history: History) -> Finding | None:
        p = self.params
        score = self._score(history)
        if self.metric == p.train_metric or (score is not None and score[0] - score[1] < p.min_score_drop):
            return None
        now = self.last_values(history, self.metric, p.train_metric)
        if now is None or not all(math.isfinite(v) for v in now.values()):
            return None
        val = [(i, v) for i, v in history.series(self.metric) if math.isfinite(v)]
        first = val[0][1]
        best_at = max(range(len(val)), key=lambda k: (-val[k][1], k))  # latest report of the minimum
        best_iteration, best = val[best_at]
        since = history.position(val[-1][0]) - history.position(best_iteration)
        patience = window_steps(history, p.patience_steps, p.patience_share)
        last = now[self.metric]
        if best >= first or since < patience or last < best + p.min_rise * abs(best):
            return None
        if last - best < p.min_rise_of_first * abs(first):
            return None
        train_then = dict(history.series(p.train_metric)).get(best_iteration)
        train_now = now[p.train_metric]
        if train_then is None or not math.isfinite(train_then):
            return None
        if not train_now < train_then - p.min_train_drop * abs(train_then):
            return None
        rise = (last - best) / (abs(best) or 1.0)
        return self.found(
            history, self.metric,
            f"{self.metric} {last:.4g} is {rise:.0%} above its best {best:.4g} of {since:g} steps ago, "
            f"while {p.train_metric} fell {train_then:.4g} -> {train_now:.4g}",
            best=best, last=last, rise=rise, steps_since_best=since,
            train_at_best=train_then, train_last=train_now,
            **({} if score is None else {"score_best": score[0], "score_last": score[1]}),
        )

    def _score(self, history: History) -> tuple[float, float] | None:
        """(best, last) of ``score_metric``, or None where the last report has no finite score."""
        name = self.params.score_metric
        last = None if name is None else history.last_row().get(name)
        if name is None or last is None or not math.isfinite(last):
            return None
        return max(history.finite(name)), last


class ClassCollapse(ProbeDetector):
    """The model predicts (almost) only one class although the labels are not that skewed.

    Never judged at the untrained report (step 0): an untrained net legitimately predicts one
    class. When it may act is the run's patience (a soft symptom).
    Fires on either arm:

    * ``pred_frac_max`` >= ``min_pred_frac`` and ``pred_frac_max - label_frac_max`` >=
      ``min_label_gap``: the predictions are far more concentrated than the labels;
    * ``val_accuracy - val_macro_f1`` >= ``min_f1_gap`` (None disables): accuracy carried by the
      majority class while the others are missed, the way collapse shows on imbalanced labels
      (90/10 labels, all predicted majority: accuracy 0.9, macro-F1 0.47).

    An arm whose inputs are missing is skipped. ``val_recall_min`` and ``val_balanced_accuracy``
    are added to the evidence when reported.

    Only a collapse the model has settled into counts: while ``train_loss`` still improves by
    more than ``max_train_progress`` (relative) over the last ``window_steps`` optimizer steps
    (or ``window_share`` of the planned steps, when longer), the model is
    still learning and concentrated early predictions are a transient (measured on the seed
    SimpleCNN memorising FakeData: 98% of predictions in one class at epoch 2 while its training
    loss falls 10% per epoch). Without ``train_loss`` the gate is skipped.

    Defaults and sources: no published threshold; ``min_pred_frac=0.9``, ``min_label_gap=0.2``,
    ``min_f1_gap=0.3``, ``window_steps=64`` and ``window_share=0.05`` are our choice (the brief's examples). Measured on
    the healthy digits run: predictions spread to <= 0.15 per class after training and the
    accuracy/macro-F1 gap stays below 0.1. SageMaker Debugger's ``ClassImbalance`` checks the
    same failure per class (misprediction fraction 0.7), which needs per-class streams.
    """

    name = "class_collapse"
    inputs = ("pred_frac_max", "val_macro_f1")
    evidence_keys = ("f1_gap", "label_frac_max", "pred_classes", "pred_frac_max", "val_accuracy",
        "val_balanced_accuracy", "val_macro_f1", "val_recall_min")
    summary = "The predictions collapse onto few classes."

    class Params(FixedParams):
        min_pred_frac: float = Field(default=0.9, gt=0, le=1)
        min_label_gap: float = Field(default=0.2, gt=0, lt=1)
        min_f1_gap: float | None = Field(default=0.3, gt=0, le=1)
        window_steps: int = Field(default=64, ge=1)
        window_share: float = Field(default=0.05, ge=0, le=1)
        max_train_progress: float | None = Field(default=0.05, gt=0)

    def check(self, history: History) -> Finding | None:
        p = self.params
        iterations = history.iterations
        if len(iterations) < 2 or history.position(iterations[-1]) <= 0 or self._still_learning(history):
            return None
        extra = {k: self.optional(history, k) for k in ("val_recall_min", "val_balanced_accuracy")}
        shares = self.last_values(history, "pred_frac_max", "label_frac_max")
        if shares is not None and all(math.isfinite(v) for v in shares.values()):
            pred, label = shares["pred_frac_max"], shares["label_frac_max"]
            if pred >= p.min_pred_frac and pred - label >= p.min_label_gap:
                return self.found(
                    history, "pred_frac_max",
                    f"{pred:.0%} of validation predictions fall in one class, while the largest class "
                    f"holds {label:.0%} of the labels",
                    pred_frac_max=pred, label_frac_max=label, pred_classes=self.optional(history, "pred_classes"),
                    **extra,
                )
        scores = self.last_values(history, "val_accuracy", "val_macro_f1")
        if p.min_f1_gap is None or scores is None or not all(math.isfinite(v) for v in scores.values()):
            return None
        accuracy, f1 = scores["val_accuracy"], scores["val_macro_f1"]
        if accuracy - f1 < p.min_f1_gap:
            return None
        return self._f1_finding(history, accuracy, f1, extra)

    def _still_learning(self, history: History) -> bool:
        p = self.params
        limit = p.max_train_progress
        train = history.recent("train_loss", window_steps(history, p.window_steps, p.window_share), before=1)
        if limit is None or len(train) < 2:
            return False
        before, now = train[0][1], train[-1][1]
        return before > 0 and (before - now) / before > limit

    def _f1_finding(self, history: History, accuracy: float, f1: float, extra: dict) -> Finding:
        return self.found(
            history, "val_macro_f1",
            f"val_macro_f1 {f1:.3g} is {accuracy - f1:.3g} below val_accuracy {accuracy:.3g}: "
            "the minority classes are not predicted",
            val_accuracy=accuracy, val_macro_f1=f1, f1_gap=accuracy - f1,
            pred_frac_max=self.optional(history, "pred_frac_max"), **extra,
        )


class ChanceLevel(ProbeDetector):
    """The attempt is still at chance level: nothing has been learned.

    Fires, after the untrained report, when the last report is at chance as the verdict defines
    it (:func:`autofix.judge.verdict.at_chance`: the best constant predictor's accuracy or macro-F1 +
    0.02, or a loss >= 0.95 x the label entropy), or, for a run that reports only the uniform
    predictor's ``chance_loss`` (ln of the number of classes), a loss within ``tolerance`` of it.

    ``accuracy_metric`` and ``f1_metric`` name the accuracy and macro-F1 streams the chance test
    reads (the managed harness's ``val_accuracy`` and ``val_macro_f1`` by default).

    Defaults and sources: the expected initial loss -ln(1/classes) is the sanity check of
    Karpathy's "A Recipe for Training Neural Networks" and DeepDiagnosis's "loss not decreasing"
    (Wardat et al., ICSE 2022) without a threshold; ``tolerance=0.05`` is our choice. When it may
    act is the run's patience: **soft**, a slow learner sits at chance before it learns.
    """

    name = "chance_level"
    inputs = ("chance_accuracy", "chance_macro_f1", "label_entropy", "chance_loss")
    evidence_keys = ("chance_accuracy", "chance_loss", "label_entropy", "loss", "relative_gap", "val_accuracy")
    summary = "The loss is stuck at chance level."

    class Params(DetectorParams):
        tolerance: float = Field(default=0.05, gt=0, lt=1)
        accuracy_metric: str = Field(default="val_accuracy", min_length=1)
        f1_metric: str = Field(default="val_macro_f1", min_length=1)

    def check(self, history: History) -> Finding | None:
        p = self.params
        iterations = history.iterations
        loss = self.optional(history, self.metric)
        if len(iterations) < 2 or history.position(iterations[-1]) <= 0 or loss is None or not math.isfinite(loss):
            return None
        why = at_chance(history.last_row(), Judge(self.metric, 0.0, p.accuracy_metric, p.f1_metric))
        if why is not None:
            return self.found(history, self.metric, f"{why}, at step {history.position(iterations[-1]):g}",
                              loss=loss, **{k: self.optional(history, k) for k in (
                                  LABEL_ENTROPY, p.accuracy_metric, "chance_accuracy")})
        chance = next((v for _, v in history.series("chance_loss") if math.isfinite(v) and v > 0), None)
        if chance is None or self.optional(history, LABEL_ENTROPY) is not None:
            return None
        off = (loss - chance) / chance
        if abs(off) > p.tolerance:
            return None
        return self.found(
            history, self.metric,
            f"{self.metric} {loss:.4g} is still within {abs(off):.1%} of chance level ln(classes) = {chance:.4g}",
            loss=loss, chance_loss=chance, relative_gap=off,
        )
