"""What "healthy", "at chance" and "better" mean: pure functions over reported numbers.

Every verdict autofix gives is judged here, the same way for every attempt:

* **Where a report stands in training** is its ``step`` (optimizer steps so far; the managed
  harness reports it, custom trainables pass it to ``autofix.report``) out of ``planned_steps``.
  A report without ``step`` stands at its iteration: one report counts as one step.
* **Nothing at chance is healthy.** Chance is the best constant predictor (always the majority
  class): macro-F1 at most its macro-F1 + 0.02, or accuracy at most its accuracy + 0.02 while
  balanced accuracy is at most its 1/K + 0.02 too, or a loss at least 0.95 x the label entropy
  (the cross-entropy of predicting the class shares for every input; only when no score is
  shown above its chance figure: a huge loss beside a good score is overconfidence). The accuracy arm needs
  the balanced accuracy because on imbalanced labels a model that trades accuracy for the
  minority classes (class weights: the cure for a collapse) scores below the majority rate
  without being at chance. A NaN accuracy (NaN outputs) is never healthy.
* **Healthy** = the loss fell by ``min_drop`` of its first (untrained) value and is not at chance.
  For a max-mode metric (F1, accuracy) success is never a relative rise from an untrained epoch 0.
* **Better** is judged at the same step count: a child's metric against its reference's metric
  at the child's own step (:func:`value_at`), never against an earlier, shorter curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autofix.judge.history import PLANNED, STEP, History

__all__ = [
    "BALANCED_ACCURACY",
    "CHANCE_ACCURACY",
    "CHANCE_BALANCED",
    "CHANCE_F1",
    "CHANCE_LOSS_SHARE",
    "CHANCE_MARGIN",
    "LABEL_ENTROPY",
    "PLANNED",
    "STEP",
    "Health",
    "Judge",
    "at_chance",
    "beats",
    "finite",
    "health",
    "planned_steps",
    "step_of",
    "value_at",
]

CHANCE_ACCURACY = "chance_accuracy"  # the majority class's share of the validation labels
CHANCE_F1 = "chance_macro_f1"  # macro-F1 of always predicting the majority class
CHANCE_BALANCED = "chance_balanced_accuracy"  # its balanced accuracy: 1 / the classes present
BALANCED_ACCURACY = "val_balanced_accuracy"
LABEL_ENTROPY = "label_entropy"  # entropy (nats) of the training class shares
CHANCE_MARGIN = 0.02
CHANCE_LOSS_SHARE = 0.95


@dataclass(frozen=True)
class Judge:
    """What the verdict reads: metric names and the success bar (from the spec, as plain values)."""

    loss_metric: str = "val_loss"
    min_drop: float = 0.3
    accuracy_metric: str = "val_accuracy"
    f1_metric: str = "val_macro_f1"


@dataclass(frozen=True)
class Health:
    """An attempt's health at its last report: whether it passes, and why in one line."""

    ok: bool
    reason: str
    drop: float | None = None


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def step_of(row: Mapping[str, float], iteration: int) -> float:
    """A report's position in optimizer steps: its ``step``, else its iteration."""
    step = finite(row.get(STEP))
    return step if step is not None else float(iteration)


def planned_steps(history: History) -> float | None:
    """The planned length in steps, as last reported (None when never reported)."""
    for iteration in reversed(history.iterations):
        value = finite(history.rows_view(iteration).get(PLANNED))
        if value is not None:
            return value
    return None


def at_chance(row: Mapping[str, float], judge: Judge) -> str | None:
    """Why ``row`` is at chance level, or None (also None when no chance figure is known)."""
    above = False  # a score shown above its chance figure
    for metric, chance in ((judge.f1_metric, CHANCE_F1), (judge.accuracy_metric, CHANCE_ACCURACY)):
        value = row.get(metric)
        if value is None:
            continue
        if finite(value) is None:
            return f"{metric} is {value} (non-finite outputs)"
        base = finite(row.get(chance))
        if base is None:
            continue
        if value > base + CHANCE_MARGIN or (chance == CHANCE_ACCURACY and not _balanced_at_chance(row)):
            above = True  # (below the majority rate, but not by ignoring the minority classes)
            continue
        return f"{metric} {value:.3g} is at chance (the majority-class predictor scores {base:.3g}, +{CHANCE_MARGIN:g})"
    if above:
        # A loss above the label entropy with scores above chance is overconfidence, not chance:
        # an N(0, 1)-initialised CNN scored 0.815 accuracy at a cross-entropy of 61 (26x the label
        # entropy; benchmarks/zoo custom_normal_init, seed 1, left alone).
        return None
    loss, entropy = finite(row.get(judge.loss_metric)), finite(row.get(LABEL_ENTROPY))
    if loss is not None and entropy is not None and entropy > 0 and loss >= CHANCE_LOSS_SHARE * entropy:
        return (f"{judge.loss_metric} {loss:.4g} is at chance (>= {CHANCE_LOSS_SHARE:g} x the label entropy "
                f"{entropy:.4g} of a constant predictor)")
    return None


def _balanced_at_chance(row: Mapping[str, float]) -> bool:
    """Balanced accuracy at most 1/K + margin (True when it is not reported: accuracy alone).
    Without its chance figure, 1/K is bounded by 1/2: above 0.52 no K makes it chance."""
    value = finite(row.get(BALANCED_ACCURACY))
    if value is None:
        return True
    base = finite(row.get(CHANCE_BALANCED))
    return value <= (base if base is not None else 0.5) + CHANCE_MARGIN


def health(history: History, judge: Judge) -> Health:
    """Whether the attempt is healthy at its last report: loss down by ``min_drop`` and not at chance."""
    values = history.finite(judge.loss_metric)
    last = history.last(judge.loss_metric)
    if len(values) < 2 or last is None or finite(last) is None:
        return Health(False, f"{judge.loss_metric} has no finite first and last value")
    first = values[0]
    drop = (first - last) / (abs(first) or 1.0)
    text = f"{judge.loss_metric} fell {drop:.1%} from its first report (needed {judge.min_drop:.0%})"
    if drop < judge.min_drop:
        return Health(False, text, drop)
    chance = at_chance(history.last_row(), judge)
    if chance is not None:
        return Health(False, f"{text}, but {chance}", drop)
    return Health(True, text, drop)


def value_at(history: History, metric: str, step: float) -> float | None:
    """``metric`` at the last report at or before ``step``, provided the history reaches ``step``
    (None when it stops short: an earlier, shorter curve is no comparison)."""
    best: float | None = None
    reached = False
    for iteration in history.iterations:
        at = history.position(iteration)
        reached = reached or at >= step
        value = history.rows_view(iteration).get(metric)
        if at <= step and value is not None:
            best = value
    return best if reached else None


def beats(value: float | None, other: float | None, mode: str) -> bool:
    """``value`` is strictly better than ``other`` ("min": lower); a non-finite value never is,
    and anything finite beats a non-finite ``other``."""
    a, b = finite(value), finite(other)
    if a is None:
        return False
    if b is None:
        return True
    return a < b if mode == "min" else a > b
