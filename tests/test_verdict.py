"""autofix.judge.verdict: what "at chance", "healthy" and "better" mean, as tables over reported numbers."""

from __future__ import annotations

import math

import pytest

from autofix.judge.history import History
from autofix.judge.verdict import Judge, at_chance, beats, health, planned_steps, step_of, value_at

JUDGE = Judge()  # val_loss, min_drop 0.3, val_accuracy, val_macro_f1

# The best constant predictor on balanced digits (10 classes, the largest 10.2%) ...
DIGITS = {"chance_accuracy": 0.102, "chance_macro_f1": 0.0185, "chance_balanced_accuracy": 0.1,
          "label_entropy": 2.302}
# ... and on binary 90/10 labels: accuracy 0.9, macro-F1 0.474, balanced accuracy 0.5.
SKEWED = {"chance_accuracy": 0.9, "chance_macro_f1": 0.474, "chance_balanced_accuracy": 0.5}


def row(base: dict[str, float], **values: float) -> dict[str, float]:
    return {**base, **values}


# -- at_chance: (row, judge, the metric whose arm says "at chance", or None) ------------------

AT_CHANCE_ROWS = [
    pytest.param({}, JUDGE, None, id="empty-row"),
    pytest.param({"val_loss": 2.3, "val_accuracy": 0.1, "val_macro_f1": 0.02}, JUDGE, None,
                 id="no-chance-figures-no-verdict"),
    pytest.param(row(DIGITS, val_loss=0.2, val_accuracy=0.95, val_macro_f1=0.95, val_balanced_accuracy=0.95),
                 JUDGE, None, id="trained-digits"),
    # macro-F1 at most the constant predictor's + 0.02
    pytest.param(row(SKEWED, val_macro_f1=0.494), JUDGE, "val_macro_f1", id="macro-f1-at-chance-plus-margin"),
    pytest.param(row(SKEWED, val_macro_f1=0.495), JUDGE, None, id="macro-f1-just-above"),
    pytest.param(row(SKEWED, val_macro_f1=0.3), JUDGE, "val_macro_f1", id="macro-f1-below-chance"),
    # accuracy at most the majority rate + 0.02, while balanced accuracy is at chance too
    pytest.param(row(SKEWED, val_accuracy=0.9), JUDGE, "val_accuracy", id="accuracy-at-chance-no-balanced"),
    pytest.param(row(SKEWED, val_accuracy=0.92, val_balanced_accuracy=0.52), JUDGE, "val_accuracy",
                 id="accuracy-and-balanced-at-the-margin"),
    pytest.param(row(SKEWED, val_accuracy=0.921), JUDGE, None, id="accuracy-just-above"),
    pytest.param(row(SKEWED, val_accuracy=0.75, val_balanced_accuracy=0.8, val_macro_f1=0.62), JUDGE, None,
                 id="reweighted-below-majority-rate-balanced-above"),
    pytest.param(row(SKEWED, val_accuracy=0.75, val_balanced_accuracy=0.53), JUDGE, None,
                 id="balanced-just-above-chance"),
    pytest.param(row(SKEWED, val_accuracy=0.75, val_balanced_accuracy=0.51, val_macro_f1=0.497), JUDGE,
                 "val_accuracy", id="below-majority-rate-balanced-at-chance"),
    pytest.param(row(SKEWED, val_accuracy=0.95, val_balanced_accuracy=0.5, val_macro_f1=0.6), JUDGE, None,
                 id="accuracy-above-chance-balanced-at-chance"),
    # the loss at least 0.95 x the label entropy
    pytest.param(row(DIGITS, val_loss=2.1869), JUDGE, "val_loss", id="loss-at-0.95-entropy"),
    pytest.param(row(DIGITS, val_loss=2.18), JUDGE, None, id="loss-below-0.95-entropy"),
    pytest.param(row(DIGITS, val_loss=3.5), JUDGE, "val_loss", id="loss-above-entropy"),
    # An overconfident model (an N(0, 1) init: huge logits) is no chance level when a score says so
    pytest.param(row(DIGITS, val_loss=61.0, val_accuracy=0.815), JUDGE, None, id="loss-above-entropy-accuracy-above"),
    pytest.param(row(DIGITS, val_loss=61.0, val_accuracy=0.11), JUDGE, "val_accuracy",
                 id="loss-above-entropy-accuracy-at-chance"),
    pytest.param({"label_entropy": 2.302, "val_loss": 61.0, "val_accuracy": 0.815}, JUDGE, "val_loss",
                 id="loss-above-entropy-accuracy-without-its-chance-figure"),
    pytest.param({"val_loss": 0.0, "label_entropy": 0.0}, JUDGE, None, id="zero-entropy-single-class"),
    pytest.param(row(DIGITS, val_loss=math.nan), JUDGE, None, id="nan-loss-is-not-a-chance-verdict"),
    # non-finite outputs: a NaN/Inf accuracy or F1 is at chance, whatever the chance figures
    pytest.param({"val_accuracy": math.nan}, JUDGE, "val_accuracy", id="nan-accuracy"),
    pytest.param({"val_macro_f1": math.nan, "val_accuracy": 0.9}, JUDGE, "val_macro_f1", id="nan-macro-f1"),
    pytest.param(row(DIGITS, val_accuracy=math.inf, val_macro_f1=0.9), JUDGE, "val_accuracy", id="inf-accuracy"),
    # the judge's metric names
    pytest.param(row(SKEWED, f1=0.4, val_macro_f1=0.9), Judge(f1_metric="f1"), "f1", id="judge-f1-metric"),
    pytest.param(row(SKEWED, acc=0.9, val_accuracy=0.99), Judge(accuracy_metric="acc"), "acc",
                 id="judge-accuracy-metric"),
    pytest.param(row(DIGITS, loss=2.3, val_loss=0.1), Judge(loss_metric="loss"), "loss", id="judge-loss-metric"),
]


@pytest.mark.parametrize("values, judge, metric", AT_CHANCE_ROWS)
def test_at_chance(values, judge, metric):
    why = at_chance(values, judge)
    if metric is None:
        assert why is None
    else:
        assert why is not None and why.startswith(f"{metric} ")


# -- health: (loss curve and last-report extras, judge, ok, drop) ----------------------------

def history(losses: list[float], last: dict[str, float] | None = None, metric: str = "val_loss") -> History:
    rows = [{metric: v, "step": 23.0 * i} for i, v in enumerate(losses)]
    if rows:
        rows[-1].update(last or {})
    return History().extend(enumerate(rows))


HEALTH_ROWS = [
    pytest.param(history([2.3, 1.0]), JUDGE, True, (2.3 - 1.0) / 2.3, id="loss-fell-57pct"),
    pytest.param(history([1.0, 0.75]), Judge(min_drop=0.25), True, 0.25, id="fell-exactly-min_drop"),
    pytest.param(history([1.0, 0.8]), Judge(min_drop=0.25), False, 0.2, id="fell-less-than-min_drop"),
    pytest.param(history([2.3, 2.5]), JUDGE, False, (2.3 - 2.5) / 2.3, id="loss-rose"),
    pytest.param(history([1e4, 5e3]), JUDGE, True, 0.5, id="regression-scale"),
    pytest.param(history([2.3, 0.2], row(DIGITS, val_accuracy=0.95, val_macro_f1=0.95)), JUDGE, True,
                 (2.3 - 0.2) / 2.3, id="fell-and-above-chance"),
    # the loss fell, but the last report is at chance: not healthy
    pytest.param(history([2.3, 1.0], row(SKEWED, val_accuracy=0.9, val_macro_f1=0.474)), JUDGE, False,
                 (2.3 - 1.0) / 2.3, id="fell-but-macro-f1-at-chance"),
    pytest.param(history([2.3, 1.0], {"val_accuracy": math.nan}), JUDGE, False, (2.3 - 1.0) / 2.3,
                 id="fell-but-nan-accuracy"),
    # an earlier report at chance does not matter: the last one is judged
    pytest.param(history([2.3, 2.29, 1.0], {"val_accuracy": 0.95, "chance_accuracy": 0.102}), JUDGE, True,
                 (2.3 - 1.0) / 2.3, id="only-the-last-report-is-judged"),
    pytest.param(history([2.3, 1.0], {"val_loss": math.nan}), JUDGE, False, None, id="last-loss-nan"),
    pytest.param(history([math.nan, 2.0, 1.0]), JUDGE, True, 0.5, id="first-finite-loss-is-the-start"),
    pytest.param(history([2.3]), JUDGE, False, None, id="one-report"),
    pytest.param(history([]), JUDGE, False, None, id="no-report"),
    pytest.param(history([2.3, 1.0], metric="loss"), JUDGE, False, None, id="judge-metric-never-reported"),
    pytest.param(history([2.3, 1.0], metric="loss"), Judge(loss_metric="loss"), True, (2.3 - 1.0) / 2.3,
                 id="judge-loss-metric"),
]


@pytest.mark.parametrize("hist, judge, ok, drop", HEALTH_ROWS)
def test_health(hist, judge, ok, drop):
    verdict = health(hist, judge)
    assert verdict.ok is ok
    assert verdict.drop == (None if drop is None else pytest.approx(drop))
    assert verdict.reason.strip() and "\n" not in verdict.reason


def test_unhealthy_at_chance_says_why():
    verdict = health(history([2.3, 1.0], row(SKEWED, val_accuracy=0.9, val_macro_f1=0.474)), JUDGE)
    assert "val_macro_f1" in verdict.reason and "chance" in verdict.reason


# -- value_at: the metric at the last report at or before a step, if the history reaches it ---

STEPPED = History().extend(enumerate([
    {"step": 0.0, "m": 2.3}, {"step": 23.0, "m": 1.5}, {"step": 46.0, "m": 0.9}, {"step": 69.0, "m": 0.6},
]))
GAPPY = History().extend(enumerate([
    {"step": 0.0, "m": 2.3}, {"step": 23.0, "m": 1.5}, {"step": 46.0}, {"step": 69.0, "m": math.nan},
    {"step": 92.0, "m": 0.5},
]))
NO_STEPS = History().extend(enumerate([{"m": 2.3}, {"m": 1.5}, {"m": 0.9}]))

VALUE_AT_ROWS = [
    pytest.param(STEPPED, 46, 0.9, id="at-a-report's-step"),
    pytest.param(STEPPED, 50, 0.9, id="between-reports-the-one-before"),
    pytest.param(STEPPED, 68.9, 0.9, id="just-before-the-last"),
    pytest.param(STEPPED, 69, 0.6, id="at-the-last-report"),
    pytest.param(STEPPED, 0, 2.3, id="at-step-0"),
    pytest.param(STEPPED, 69.5, None, id="history-stops-short"),
    pytest.param(STEPPED, 1000, None, id="far-beyond-the-history"),
    pytest.param(GAPPY, 50, 1.5, id="report-without-the-metric-skipped"),
    pytest.param(GAPPY, 69, math.nan, id="nan-at-the-step-is-the-value"),
    pytest.param(GAPPY, 92, 0.5, id="after-the-gap"),
    pytest.param(NO_STEPS, 1, 1.5, id="no-step-key-stands-at-its-iteration"),
    pytest.param(NO_STEPS, 3, None, id="no-step-key-stops-short"),
    pytest.param(History(), 0, None, id="empty-history"),
]


@pytest.mark.parametrize("hist, step, expected", VALUE_AT_ROWS)
def test_value_at(hist, step, expected):
    got = value_at(hist, "m", step)
    if expected is None:
        assert got is None
    elif math.isnan(expected):
        assert got is not None and math.isnan(got)
    else:
        assert got == expected


def test_value_at_a_metric_never_reported_is_none():
    assert value_at(STEPPED, "other", 46) is None


# -- beats: strictly better in the metric's mode; non-finite never is, anything finite beats it

BEATS_ROWS = [
    pytest.param(1.0, 2.0, "min", True, id="min-lower"),
    pytest.param(2.0, 1.0, "min", False, id="min-higher"),
    pytest.param(1.0, 1.0, "min", False, id="min-equal-is-not-better"),
    pytest.param(0.9, 0.8, "max", True, id="max-higher"),
    pytest.param(0.8, 0.9, "max", False, id="max-lower"),
    pytest.param(0.9, 0.9, "max", False, id="max-equal-is-not-better"),
    pytest.param(math.nan, 1.0, "min", False, id="nan-never-beats"),
    pytest.param(math.inf, 1.0, "max", False, id="inf-never-beats-in-max-mode"),
    pytest.param(-math.inf, 1.0, "min", False, id="minus-inf-never-beats-in-min-mode"),
    pytest.param(None, 1.0, "min", False, id="none-never-beats"),
    pytest.param(5.0, math.nan, "min", True, id="finite-beats-nan"),
    pytest.param(0.1, math.inf, "max", True, id="finite-beats-inf-in-max-mode"),
    pytest.param(5.0, -math.inf, "min", True, id="finite-beats-minus-inf-in-min-mode"),
    pytest.param(5.0, None, "min", True, id="finite-beats-none"),
    pytest.param(math.nan, math.nan, "min", False, id="nan-vs-nan"),
    pytest.param(None, None, "max", False, id="none-vs-none"),
]


@pytest.mark.parametrize("value, other, mode, expected", BEATS_ROWS)
def test_beats(value, other, mode, expected):
    assert beats(value, other, mode) is expected


# -- where a report stands, and the planned length --------------------------------------------

@pytest.mark.parametrize("values, iteration, expected", [
    pytest.param({"step": 230.0}, 10, 230.0, id="its-step"),
    pytest.param({}, 10, 10.0, id="no-step-its-iteration"),
    pytest.param({"step": math.nan}, 10, 10.0, id="nan-step-its-iteration"),
    pytest.param({"step": math.inf}, 10, 10.0, id="inf-step-its-iteration"),
])
def test_step_of(values, iteration, expected):
    assert step_of(values, iteration) == expected


@pytest.mark.parametrize("rows, expected", [
    pytest.param([{"planned_steps": 345.0}, {"planned_steps": 690.0}], 690.0, id="as-last-reported"),
    pytest.param([{"step": 0.0}], None, id="never-reported"),
    pytest.param([{"planned_steps": math.nan}], None, id="nan"),
    pytest.param([], None, id="empty-history"),
])
def test_planned_steps(rows, expected):
    assert planned_steps(History().extend(enumerate(rows))) == expected
