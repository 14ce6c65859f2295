"""Probe-stream symptom detectors (gradients, activations, data, generalization), fed one report
at a time as Tune would; no Ray, no torch.

Reports carry ``step`` and ``planned_steps`` as the managed harness does (23 optimizer steps per
epoch for the digits runs), and the best constant predictor's scores (``chance_*``,
``label_entropy``) and the probe's ``update_expected`` / ``update_resolution``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import autofix.symptoms as symptoms_pkg
from autofix.judge.history import History
from autofix.symptoms import SYMPTOMS, Finding, build_detectors

from curves import (
    ADAM_TINY,
    HEALTHY as HEALTHY_VAL_LOSS,  # this module names its report dicts HEALTHY
    SGD_SLOW,
    STUCK,
    curve,
)

NEW = [
    "vanishing_gradients", "exploding_gradients", "no_update", "dying_relu", "saturated_activations",
    "label_imbalance", "unnormalized_input", "overfitting", "class_collapse", "chance_level",
]
OLD = ["nonfinite_loss", "diverging_loss", "oscillating_loss", "plateau"]
END = ["slow_progress"]  # judged at an attempt's end (autofix/symptoms/progress.py)
MODEL = ["nonfinite_at_init", "output_loss_mismatch"]

Report = dict[str, float]


# -- the healthy digits run (small CNN, Adam 1e-3), epoch 0 = before any step ---------------
# val_loss, val_accuracy and grad_norm are measured; the other streams are plausible values for
# the same run.
VAL_LOSS = HEALTHY_VAL_LOSS
VAL_ACC = curve(".097 .531 .719 .878 .897 .922 .933 .933 .947 .953 .956 .95 .964 .967 .956 .947")
GRAD_NORM = curve(".262 .297 .957 1.90 2.21 2.15 2.25 1.93 1.78 1.51 1.46 1.55 1.33 1.20 1.13 1.14")
TRAIN_LOSS = curve("2.303 1.85 .95 .50 .33 .25 .20 .16 .13 .11 .095 .08 .07 .06 .052 .045")
MACRO_F1 = curve(".018 .47 .70 .872 .894 .920 .931 .931 .946 .952 .955 .949 .963 .966 .955 .946")
GRAD_RATIO = curve("2.1 3.5 4.0 5.2 6.0 5.5 6.1 5.0 4.8 4.2 4.0 4.4 3.9 3.6 3.5 3.4")
GRAD_ZERO = curve(".01 .03 .05 .06 .07 .08 .08 .09 .09 .10 .10 .10 .11 .11 .11 .12")
DEAD = curve(".02 .08 .12 .15 .18 .20 .22 .22 .24 .25 .25 .26 .27 .27 .28 .28")
UPDATE = curve("0 3e-3 2.5e-3 2e-3 1.8e-3 1.5e-3 1.3e-3 1.2e-3 1.1e-3 1e-3 9e-4 8e-4 7e-4 7e-4 6e-4 6e-4")
PRED_FRAC = curve(".62 .27 .17 .14 .13 .12 .12 .11 .11 .11 .11 .11 .105 .105 .11 .115")
PRED_CLASSES = curve("3 8 10 10 10 10 10 10 10 10 10 10 10 10 10 10")
RECALL_MIN = curve("0 0 .35 .70 .75 .80 .83 .84 .86 .87 .88 .87 .90 .91 .89 .88")
CHANCE = math.log(10)
STEPS = 23  # optimizer steps per epoch of the digits runs
RESOLUTION = 6e-9  # float32's relative spacing (1.19e-7) x a median |weight| of 0.05


def healthy() -> list[Report]:
    reports = []
    for e in range(16):
        first = GRAD_NORM[e] * 0.6
        r: Report = {
            "epoch": e, "step": e * STEPS, "planned_steps": 15 * STEPS,
            "train_loss": TRAIN_LOSS[e], "val_loss": VAL_LOSS[e], "val_accuracy": VAL_ACC[e],
            "val_macro_f1": MACRO_F1[e], "lr": 1e-3, "grad_norm": GRAD_NORM[e],
            "grad_norm/conv1": first, "grad_norm/fc": first / GRAD_RATIO[e],
            "grad_norm_first": first, "grad_norm_last": first / GRAD_RATIO[e], "grad_ratio": GRAD_RATIO[e],
            "grad_zero_frac": GRAD_ZERO[e],
            "update_ratio/conv1": UPDATE[e] * 1.5, "update_ratio/fc": UPDATE[e] * 0.8,
            "update_ratio_max": UPDATE[e] * 1.5, "update_ratio_median": UPDATE[e],
            "update_ratio_global": UPDATE[e],
            "dead_frac/relu1": DEAD[e] * 0.5, "dead_frac/relu2": DEAD[e], "dead_frac_max": DEAD[e],
            "input_mean": 0.3, "input_std": 0.4, "input_abs_max": 1.0,
            "label_frac_max": 0.102, "label_classes": 10,
            "pred_frac_max": PRED_FRAC[e], "pred_classes": PRED_CLASSES[e],
            "val_recall_min": RECALL_MIN[e], "val_balanced_accuracy": VAL_ACC[e] - 0.002,
            # the best constant predictor (always the largest class, 10.2% of 10 classes)
            "chance_accuracy": 0.102, "chance_macro_f1": 0.0185, "chance_balanced_accuracy": 0.1,
            "label_entropy": 2.302,
            "update_expected": 1e-3, "update_resolution": RESOLUTION,  # Adam: lr x a step scale of ~1
        }
        if e == 0:
            r.update(init_loss=2.303, chance_loss=CHANCE)
        reports.append(r)
    return reports


def edit(reports: list[Report], start: int = 0, stop: int | None = None, **values: Any) -> list[Report]:
    """A copy with ``values`` set on reports[start:stop]; a list gives one value per report from
    ``start`` on (as many as it holds), None removes the key."""
    out = [dict(r) for r in reports]
    for k, value in values.items():
        end = len(out) if stop is None else stop
        if isinstance(value, list):
            end = min(end, start + len(value))
        for n, i in enumerate(range(start, end)):
            v = value[n] if isinstance(value, list) else value
            if v is None:
                out[i].pop(k, None)
            else:
                out[i][k] = v
    return out


def drop(reports: list[Report], *prefixes: str) -> list[Report]:
    return [{k: v for k, v in r.items() if not k.startswith(prefixes)} for r in reports]


def series(n: int, **streams: Any) -> list[Report]:
    """``n`` reports with epoch, step (23 a report) and planned_steps keys; a list gives one value
    per epoch, a scalar all the same."""
    return [{"epoch": e, "step": e * STEPS, "planned_steps": (n - 1) * STEPS,
             **{k: (v[e] if isinstance(v, list) else v) for k, v in streams.items()}} for e in range(n)]


HEALTHY = healthy()
HEALTHY_TANH = edit(drop(HEALTHY, "dead_frac"), **{
    "saturated_frac/tanh1": curve(".01 .05 .10 .14 .18 .20 .22 .25 .27 .28 .30 .31 .32 .33 .34 .35"),
    "saturated_frac_max": curve(".02 .06 .12 .16 .20 .22 .25 .28 .30 .31 .33 .34 .35 .36 .37 .38")})
HEALTHY_REGRESSION = drop(HEALTHY, "val_accuracy", "val_macro_f1", "label_", "pred_", "val_recall",
                          "val_balanced", "chance_", "init_loss")
HEALTHY_NO_EPOCH = drop(HEALTHY, "epoch")
HEALTHY_NO_STEP = drop(HEALTHY, "step", "planned_steps")  # each report stands at its iteration
BARE = [{"epoch": e, "val_loss": v} for e, v in enumerate(VAL_LOSS)]  # a custom trainable's reports
HEALTHY_RUNS = {"digits-cnn": HEALTHY, "digits-tanh": HEALTHY_TANH, "regression": HEALTHY_REGRESSION,
                "no-epoch-key": HEALTHY_NO_EPOCH, "no-step-key": HEALTHY_NO_STEP, "bare-val-loss": BARE}


def run(name: str, reports: list[Report], params: dict[str, Any] | None = None,
        default_metric: str = "val_loss") -> list[Finding]:
    """Feed the reports one at a time; every finding, checked for shape."""
    detector = SYMPTOMS[name](default_metric, **(params or {}))
    history, found = History(), []
    for i, report in enumerate(reports):
        history.record(i, report)
        finding = detector.check(history)
        if finding is not None:
            assert finding.symptom == name
            assert finding.iteration == i
            assert isinstance(finding.metric, str) and finding.metric
            assert finding.reason.strip() and "\n" not in finding.reason
            assert all(isinstance(v, float) for v in finding.evidence.values())
            found.append(finding)
    return found


def first_firing(name: str, reports: list[Report], params: dict[str, Any] | None = None,
                 default_metric: str = "val_loss") -> int | None:
    found = run(name, reports, params, default_metric)
    return found[0].iteration if found else None


# -- healthy runs: nothing fires, ever ---------------------------------------------------------

@pytest.mark.parametrize("run_name", sorted(HEALTHY_RUNS))
@pytest.mark.parametrize("name", sorted(SYMPTOMS))
def test_healthy_runs_fire_nothing(name, run_name):
    assert run(name, HEALTHY_RUNS[run_name]) == []


@pytest.mark.parametrize("name, params", [
    ("vanishing_gradients", {"max_accuracy": None}),
    ("exploding_gradients", {"max_accuracy": None}),
    ("dying_relu", {"max_accuracy": None}),
    ("saturated_activations", {"max_accuracy": None}),
])
def test_healthy_run_quiet_even_without_the_accuracy_gate(name, params):
    """The gate is a second line of defence: the healthy values alone stay below the bars."""
    assert run(name, HEALTHY, params) == []
    assert run(name, HEALTHY_TANH, params) == []


# -- one table per symptom: (reports, params, first firing iteration or None) -----------------

VANISHING = edit(HEALTHY, grad_ratio=1e-5, grad_norm_first=1e-6, val_accuracy=0.1, val_macro_f1=0.02)
VANISHING_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(VANISHING, {}, 0, id="deep-sigmoid-vanishing-at-init"),
    pytest.param(edit(HEALTHY, 3, grad_ratio=1e-5, grad_norm_first=1e-6, val_accuracy=0.2), {}, 3,
                 id="onset-mid-run-with-poor-accuracy"),
    pytest.param(edit(VANISHING, val_accuracy=0.9), {}, None, id="good-accuracy-gates-it"),
    pytest.param(edit(VANISHING, val_accuracy=0.9), {"max_accuracy": None}, 0, id="gate-disabled"),
    pytest.param(edit(VANISHING, val_accuracy=0.6), {}, None, id="accuracy-at-the-bar-is-not-poor"),
    pytest.param(edit(VANISHING, val_accuracy=None), {}, 0, id="no-accuracy-ignores-the-gate"),
    pytest.param(edit(VANISHING, grad_norm_first=1e-3), {}, None, id="first-norm-not-small"),
    pytest.param(edit(VANISHING, grad_ratio=0.5), {}, None, id="ratio-not-small"),
    pytest.param(edit(VANISHING, grad_ratio=1e-3), {}, None, id="ratio-at-the-bar"),
    pytest.param(edit(VANISHING, grad_ratio=5e-3), {"max_ratio": 1e-2}, 0, id="custom-max_ratio"),
    pytest.param(edit(VANISHING, grad_ratio=None, grad_norm_last=1.0), {}, 0, id="ratio-from-first-and-last"),
    pytest.param(edit(VANISHING, grad_ratio=math.nan), {}, None, id="nan-ratio"),
    pytest.param(edit(VANISHING, grad_ratio=None, grad_norm_last=None), {}, None, id="missing-ratio"),
    pytest.param(edit(VANISHING, grad_norm_first=None), {}, None, id="missing-first-norm"),
    pytest.param(BARE, {}, None, id="bare-reports"),
]


@pytest.mark.parametrize("reports, params, expected", VANISHING_ROWS)
def test_vanishing_gradients(reports, params, expected):
    assert first_firing("vanishing_gradients", reports, params) == expected


POOR = {"val_accuracy": 0.15, "val_macro_f1": 0.05}
EXPLODING_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(edit(HEALTHY, 4, grad_ratio=120.0, **POOR), {}, 4, id="ratio-above-70"),
    pytest.param(edit(HEALTHY, 4, grad_ratio=70.0, **POOR), {}, None, id="ratio-at-70"),
    pytest.param(edit(HEALTHY, 4, grad_ratio=120.0), {}, None, id="ratio-gated-by-good-accuracy"),
    pytest.param(edit(HEALTHY, 4, grad_ratio=120.0), {"max_accuracy": None}, 4, id="ratio-gate-disabled"),
    pytest.param(edit(HEALTHY, 4, grad_ratio=120.0, **POOR), {"min_ratio": 200}, None, id="custom-min_ratio"),
    pytest.param(edit(HEALTHY, 1, grad_norm=[1.0, 5.0, 40.0, 900.0], **POOR), {}, 3,
                 id="grad-norm-grows-over-100x-epoch-0"),
    pytest.param(edit(HEALTHY, 1, grad_norm=[1.0, 5.0, 20.0], **POOR), {}, None, id="growth-77x-below-bar"),
    pytest.param(edit(HEALTHY, 1, grad_norm=[1.0, 5.0, 20.0], **POOR), {"min_growth": 50}, 3,
                 id="custom-min_growth"),
    pytest.param(edit(HEALTHY, 1, grad_norm=[1.0, 5.0, 900.0], **POOR), {"min_growth": None}, None,
                 id="growth-arm-disabled"),
    pytest.param(edit(edit(HEALTHY, 0, 1, grad_norm=0.0), 1, grad_norm=5.0, **POOR), {}, None,
                 id="zero-first-grad-norm-is-no-baseline"),
    pytest.param(edit(HEALTHY, 5, grad_norm=math.inf), {}, 5, id="inf-grad-norm-any-accuracy"),
    pytest.param(edit(HEALTHY, 5, grad_norm=math.nan, train_loss=None), {}, 5, id="nan-grad-norm-no-train-loss"),
    pytest.param(edit(HEALTHY, 5, grad_norm=math.nan, train_loss=math.nan), {}, None,
                 id="nan-grad-norm-of-a-nan-loss-is-a-gap"),
    pytest.param(edit(HEALTHY, 5, grad_norm=math.inf), {"nonfinite": False}, None, id="nonfinite-arm-off"),
    pytest.param(edit(HEALTHY, 4, grad_ratio=math.inf, **POOR), {}, None, id="inf-ratio-is-a-dead-last-layer"),
    pytest.param(drop(edit(HEALTHY, 4, grad_ratio=120.0, **POOR), "grad_"), {}, None, id="missing-grad-streams"),
    pytest.param(BARE, {}, None, id="bare-reports"),
]


@pytest.mark.parametrize("reports, params, expected", EXPLODING_ROWS)
def test_exploding_gradients(reports, params, expected):
    assert first_firing("exploding_gradients", reports, params) == expected


# A loop without optimizer.step(): parameters frozen at init, so the evaluation repeats exactly.
NO_STEP = edit(HEALTHY, 1, update_ratio_global=0.0, update_ratio_max=0.0, update_ratio_median=0.0,
               val_loss=2.305, val_accuracy=0.097, train_loss=curve("2.3041 2.3038 2.3043 2.3040 2.3039 2.3042 "
                                                                    "2.3040 2.3041 2.3038 2.3043 2.3040 2.3039 "
                                                                    "2.3042 2.3040 2.3041"))
ZERO_UPDATE = {"update_ratio_global": 0.0, "update_ratio_max": 0.0, "update_ratio_median": 0.0}
# A converged run whose ReduceLROnPlateau decayed the learning rate to ~5e-9 from epoch 10: the
# step, below float32's resolution of the weights, rounds away to an exact zero. No bug.
DECAYED = edit(HEALTHY, 10, lr=5e-9, update_expected=5e-9, **ZERO_UPDATE)
NO_UPDATE_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(NO_STEP, {}, 2, id="missing-optimizer-step"),
    pytest.param(NO_STEP, {"for_reports": 1}, 1, id="for_reports-1"),
    pytest.param(NO_STEP, {"for_reports": 4, "window": None}, 4, id="for_reports-4"),
    pytest.param(NO_STEP, {"for_reports": 4}, 3, id="for_reports-4-the-repeated-val-loss-shows-first"),
    # only where the step should have shown: update_expected above update_resolution
    pytest.param(DECAYED, {}, None, id="converged-lr-decayed-to-5e-9"),
    pytest.param(edit(HEALTHY, 10, **ZERO_UPDATE), {}, 11, id="zero-update-at-lr-1e-3-from-epoch-10"),
    pytest.param(edit(NO_STEP, update_expected=RESOLUTION), {}, None, id="expected-at-resolution-is-not-above"),
    pytest.param(edit(NO_STEP, update_expected=2 * RESOLUTION), {}, 2, id="expected-twice-the-resolution"),
    pytest.param(edit(NO_STEP, 2, 3, update_expected=5e-9), {}, 4, id="each-of-the-last-2-reports-must-show-it"),
    pytest.param(edit(NO_STEP, update_expected=None), {}, None, id="no-update_expected"),
    pytest.param(edit(NO_STEP, update_resolution=None), {}, None, id="no-update_resolution"),
    pytest.param(edit(NO_STEP, update_expected=math.nan), {}, None, id="nan-update_expected"),
    # identical losses alone never fire it: a converged loss can repeat
    pytest.param(drop(NO_STEP, "update_"), {}, None, id="identical-losses-alone-never-fire"),
    # The val loss repeats bit for bit while steps that should show are taken: they never reach
    # the model (weights reloaded in forward, as the zoo's loop_bug_reload case does).
    pytest.param(drop(NO_STEP, "update_ratio"), {}, 3, id="val-loss-repeats-under-visible-steps"),
    pytest.param(drop(NO_STEP, "update_ratio"), {"window": None}, None, id="repeat-arm-disabled"),
    pytest.param(series(6, train_loss=0.6931, val_loss=0.6931), {}, None, id="custom-trainable-loss-frozen"),
    pytest.param(edit(NO_STEP, update_ratio_global=1e-9), {}, 3, id="weights-move-but-never-reach-the-model"),
    pytest.param(edit(NO_STEP, 1, update_ratio_global=1e-9, update_expected=5e-9), {}, None,
                 id="repeats-below-float32-resolution-are-convergence"),
    pytest.param(edit(HEALTHY, 1, 2, update_ratio_global=0.0), {}, None, id="one-zero-step-of-a-warm-up"),
    pytest.param(edit(NO_STEP, 1, train_loss=math.nan), {}, None, id="step-skipped-for-a-nan-loss"),
    pytest.param(edit(NO_STEP, 1, grad_norm=math.inf), {}, None, id="step-skipped-for-an-inf-gradient"),
    # every gradient entry exactly zero: the model passes no gradient (dead at init, a loss flat
    # on its outputs); the loop is not shown broken, on either arm
    pytest.param(edit(NO_STEP, 1, grad_zero_frac=1.0), {}, None, id="every-gradient-zero-is-the-models"),
    pytest.param(edit(drop(NO_STEP, "update_ratio"), 1, grad_zero_frac=1.0), {}, None,
                 id="every-gradient-zero-repeat-arm"),
    pytest.param(edit(NO_STEP, 1, grad_zero_frac=0.999), {}, 2, id="some-gradient-reached-yet-no-update"),
    pytest.param(edit(HEALTHY, 0, 1, update_ratio_global=0.0), {"for_reports": 1}, None,
                 id="epoch-0-has-no-step"),
    # judged by step, not by report: a second report still at step 0 has no step either
    pytest.param(edit(NO_STEP, 1, 2, step=0), {"for_reports": 1}, 2, id="report-1-at-step-0"),
    pytest.param(BARE, {}, None, id="bare-reports"),
]


@pytest.mark.parametrize("reports, params, expected", NO_UPDATE_ROWS)
def test_no_update(reports, params, expected):
    assert first_firing("no_update", reports, params) == expected


DEAD_RUN = edit(HEALTHY, 2, **{"dead_frac/relu2": 0.85, "dead_frac_max": 0.85, "val_accuracy": 0.1,
                               "val_macro_f1": 0.02})
DYING_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(DEAD_RUN, {}, 2, id="dead-units-from-epoch-2"),
    pytest.param(edit(HEALTHY, 0, 1, dead_frac_max=0.9), {}, 0, id="dead-at-init"),
    pytest.param(edit(DEAD_RUN, 2, dead_frac_max=0.7), {}, 2, id="exactly-70pct"),
    pytest.param(edit(DEAD_RUN, 2, dead_frac_max=0.69), {}, None, id="69pct"),
    pytest.param(edit(DEAD_RUN, 2, dead_frac_max=0.85), {"min_dead_frac": 0.9}, None, id="custom-min_dead_frac"),
    pytest.param(edit(DEAD_RUN, 2, dead_frac_max=0.85), {"min_dead_frac": None}, None, id="dead-arm-off"),
    pytest.param(edit(DEAD_RUN, 2, val_accuracy=0.8), {}, None, id="good-accuracy-gates-it"),
    pytest.param(edit(DEAD_RUN, 2, val_accuracy=0.8), {"max_accuracy": None}, 2, id="gate-disabled"),
    pytest.param(edit(DEAD_RUN, val_accuracy=None), {}, 2, id="no-accuracy-ignores-the-gate"),
    pytest.param(drop(edit(HEALTHY, 3, grad_zero_frac=0.75, val_accuracy=0.1), "dead_frac"), {}, 3,
                 id="zero-gradients-without-activation-probe"),
    pytest.param(drop(edit(HEALTHY, 3, grad_zero_frac=0.75, val_accuracy=0.1), "dead_frac"),
                 {"min_zero_grad_frac": None}, None, id="zero-gradient-arm-off"),
    pytest.param(edit(DEAD_RUN, 2, dead_frac_max=math.nan), {}, None, id="nan-dead-frac"),
    pytest.param(drop(DEAD_RUN, "dead_frac", "grad_zero"), {}, None, id="missing-streams"),
    pytest.param(BARE, {}, None, id="bare-reports"),
]


@pytest.mark.parametrize("reports, params, expected", DYING_ROWS)
def test_dying_relu(reports, params, expected):
    assert first_firing("dying_relu", reports, params) == expected


def test_dying_relu_names_the_worst_layer():
    finding = run("dying_relu", DEAD_RUN)[0]
    assert "relu2" in finding.reason and finding.metric == "dead_frac_max"
    assert finding.evidence["dead_frac_max"] == pytest.approx(0.85)


SATURATED = edit(HEALTHY_TANH, **{"saturated_frac/tanh1": 0.8, "saturated_frac_max": 0.8,
                                  "val_accuracy": 0.1, "val_macro_f1": 0.02})
SATURATED_ROWS = [
    pytest.param(HEALTHY_TANH, {}, None, id="healthy-digits"),
    pytest.param(SATURATED, {}, 0, id="saturated-at-init"),
    pytest.param(edit(HEALTHY_TANH, 6, saturated_frac_max=0.6, val_accuracy=0.3), {}, 6, id="onset-mid-run"),
    pytest.param(edit(SATURATED, saturated_frac_max=0.5), {}, None, id="exactly-50pct-is-not-above"),
    pytest.param(edit(SATURATED, saturated_frac_max=0.8), {"min_saturated_frac": 0.85}, None, id="custom-bar"),
    pytest.param(edit(SATURATED, val_accuracy=0.9), {}, None, id="good-accuracy-gates-it"),
    pytest.param(edit(SATURATED, val_accuracy=0.9), {"max_accuracy": None}, 0, id="gate-disabled"),
    pytest.param(edit(SATURATED, saturated_frac_max=math.inf), {}, None, id="inf-fraction"),
    pytest.param(drop(SATURATED, "saturated"), {}, None, id="missing-streams"),
    pytest.param(BARE, {}, None, id="bare-reports"),
]


@pytest.mark.parametrize("reports, params, expected", SATURATED_ROWS)
def test_saturated_activations(reports, params, expected):
    assert first_firing("saturated_activations", reports, params) == expected


IMBALANCE_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(edit(HEALTHY, label_frac_max=0.81, label_classes=2), {}, 0, id="binary-81-19"),
    pytest.param(edit(HEALTHY, label_frac_max=0.79, label_classes=2), {}, None, id="binary-79-21"),
    pytest.param(edit(HEALTHY, label_frac_max=0.7, label_classes=2), {}, None, id="binary-70-30"),
    pytest.param(edit(HEALTHY, label_frac_max=0.4), {}, 0, id="ten-classes-majority-40pct"),
    pytest.param(edit(HEALTHY, label_frac_max=0.25), {}, None, id="ten-classes-majority-25pct"),
    pytest.param(edit(HEALTHY, label_frac_max=0.85, label_classes=None), {}, 0, id="no-class-count-assumes-2"),
    pytest.param(edit(HEALTHY, label_frac_max=0.5, label_classes=None), {}, None, id="no-class-count-balanced"),
    pytest.param(edit(HEALTHY, label_frac_max=1.0, label_classes=1), {}, 0, id="a-single-label"),
    pytest.param(edit(HEALTHY, label_frac_max=0.85, label_classes=2), {"min_ratio": 10}, None,
                 id="sagemaker-ratio-10"),
    pytest.param(edit(HEALTHY, label_frac_max=0.95, label_classes=2), {"min_ratio": 10}, 0,
                 id="sagemaker-ratio-10-binary-95-5"),
    pytest.param(edit(HEALTHY, 5, label_frac_max=0.9, label_classes=2), {}, 5, id="first-report-carrying-it"),
    pytest.param(edit(HEALTHY, label_frac_max=math.nan), {}, None, id="nan-fraction"),
    pytest.param(drop(HEALTHY, "label_"), {}, None, id="missing-streams"),
]


@pytest.mark.parametrize("reports, params, expected", IMBALANCE_ROWS)
def test_label_imbalance(reports, params, expected):
    assert first_firing("label_imbalance", reports, params) == expected


INPUT_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(edit(HEALTHY, input_mean=33.3, input_std=78.6, input_abs_max=255.0), {}, 0, id="raw-0-255-pixels"),
    pytest.param(edit(HEALTHY, input_mean=4.9, input_std=6.0, input_abs_max=16.0), {}, 0, id="raw-digits-0-16"),
    pytest.param(edit(HEALTHY, input_mean=0.13, input_std=0.31, input_abs_max=1.0), {}, None, id="images-in-0-1"),
    pytest.param(edit(HEALTHY, input_mean=0.0, input_std=1.0, input_abs_max=8.0), {}, None, id="standardized"),
    pytest.param(edit(HEALTHY, input_std=1e-3), {}, 0, id="variance-1e-6-too-small"),
    pytest.param(edit(HEALTHY, input_std=3.0), {}, None, id="variance-9-inside"),
    pytest.param(edit(HEALTHY, input_std=3.3), {}, 0, id="variance-10.9-outside"),
    pytest.param(edit(HEALTHY, input_mean=12.0, input_std=1.0, input_abs_max=15.0), {}, 0, id="offset-mean"),
    pytest.param(edit(HEALTHY, input_mean=12.0, input_std=1.0, input_abs_max=15.0), {"max_abs_mean": None}, None,
                 id="mean-check-off"),
    pytest.param(edit(HEALTHY, input_mean=0.0, input_std=1.0, input_abs_max=500.0), {}, 0, id="one-huge-feature"),
    pytest.param(edit(HEALTHY, input_mean=0.0, input_std=1.0, input_abs_max=500.0), {"max_abs": None}, None,
                 id="max-check-off"),
    pytest.param(edit(HEALTHY, input_std=5.0), {"max_var": 30}, None, id="custom-max_var"),
    pytest.param(edit(HEALTHY, input_mean=math.nan), {}, 0, id="nan-in-the-input"),
    pytest.param(edit(HEALTHY, input_mean=None, input_abs_max=None), {}, None, id="only-std-present-and-sane"),
    pytest.param(edit(HEALTHY, input_mean=None, input_abs_max=None, input_std=50.0), {}, 0, id="only-std-present"),
    pytest.param(drop(HEALTHY, "input_"), {}, None, id="missing-streams"),
]


@pytest.mark.parametrize("reports, params, expected", INPUT_ROWS)
def test_unnormalized_input(reports, params, expected):
    assert first_firing("unnormalized_input", reports, params) == expected


# input_spread is reported at epoch 0 only (a property of the data set).
CONSTANT_ROWS = [
    pytest.param(HEALTHY, {}, None, id="no-spread-reported"),
    pytest.param(edit(HEALTHY, 0, 1, input_spread=0.0), {}, 0, id="every-input-the-same"),
    pytest.param(edit(HEALTHY, 0, 1, input_spread=16.0), {}, None, id="digits-differ"),
    pytest.param(edit(HEALTHY, 0, 1, input_spread=1e-7), {}, None, id="the-smallest-difference-is-no-bug"),
    pytest.param(edit(HEALTHY, 0, 1, input_spread=1e-7), {"max_spread": 1e-6}, 0, id="max_spread-1e-6"),
    pytest.param(edit(HEALTHY, 0, 1, input_spread=math.inf), {}, None, id="nan-in-the-data-is-no-constant"),
    pytest.param(edit(HEALTHY, 3, 4, input_spread=0.0), {}, 3, id="a-custom-loop-reporting-it-later"),
]


@pytest.mark.parametrize("reports, params, expected", CONSTANT_ROWS)
def test_constant_inputs(reports, params, expected):
    assert first_firing("constant_inputs", reports, params) == expected


OVERFIT = series(11, val_loss=curve("2.3 1.2 .6 .4 .35 .38 .42 .47 .55 .6 .7"),
                 train_loss=curve("2.3 1.1 .5 .3 .2 .14 .1 .07 .05 .04 .03"))
THREE = {"patience_steps": 3 * STEPS}  # the old patience of 3 reports, in steps
HOLDS = [0.1, 0.6, 0.8, 0.9, 0.92, 0.92, 0.915, 0.92, 0.91, 0.915, 0.91]  # best 0.92, last 0.91
FALLS = [0.1, 0.6, 0.8, 0.88, 0.88, 0.87, 0.86, 0.85, 0.84, 0.83, 0.82]  # the zoo case: 0.88 -> 0.82
OVERFITTING_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    # best .35 at step 92; 128 steps later is report 10 (step 230)
    pytest.param(OVERFIT, {}, 10, id="val-rises-for-128-steps-train-falls"),
    pytest.param(OVERFIT, THREE, 7, id="patience-69-steps"),
    pytest.param(OVERFIT, {"patience_steps": 5 * STEPS}, 9, id="patience-115-steps"),
    pytest.param(OVERFIT, {**THREE, "min_rise": 0.5}, 8, id="min_rise-50pct"),
    # patience is a share of the planned steps when that is longer: 0.3 x 230 planned = 69 steps;
    # 0.1 x 2,300 planned = 230 steps, more than this run has after its best
    pytest.param(OVERFIT, {"patience_steps": 1, "patience_share": 0.3}, 7, id="patience-share-of-planned"),
    pytest.param(edit(OVERFIT, planned_steps=2300), {}, None, id="a-tenth-of-a-long-plan"),
    pytest.param(edit(OVERFIT, train_loss=curve("2.3 1.1 .5 .3 .2 .22 .25 .28 .3 .32 .35")), {}, None,
                 id="train-loss-rises-too"),
    pytest.param(series(8, val_loss=curve("2.3 2.4 2.5 2.6 2.7 2.8 2.9 3.0"),
                        train_loss=curve("2.3 2.0 1.7 1.4 1.1 .8 .5 .2")), {}, None,
                 id="val-never-improved-is-not-overfitting"),
    pytest.param(series(12, val_loss=curve("2.3 1.0 .5 .45 .47 .44 .46 .45 .43 .46 .44 .45"),
                        train_loss=curve("2.3 .9 .4 .3 .25 .2 .17 .15 .13 .12 .11 .10")), THREE, None,
                 id="noisy-flat-val"),
    pytest.param(edit(OVERFIT, train_loss=None), {}, None, id="missing-train-loss"),
    pytest.param(edit(OVERFIT, 7, train_loss=None), {}, None, id="last-report-without-train-loss"),
    pytest.param(edit(OVERFIT, 7, 8, val_loss=math.nan), THREE, 8, id="nan-val-report-not-judged"),
    pytest.param(OVERFIT, {"metric": "val_loss", "train_metric": "val_loss"}, None, id="same-stream-twice"),
    pytest.param(BARE, {}, None, id="bare-reports"),
    # converged noise of the healthy zoo controls: train barely moves / the rise is immaterial
    pytest.param(series(8, val_loss=curve("1.38 .6 .3 .203 .21 .24 .27 .297"),
                        train_loss=curve("1.38 .5 .25 .2128 .21 .208 .205 .2013")), THREE, None,
                 id="train-fell-only-5pct"),
    pytest.param(series(8, val_loss=curve("1.38 .6 .3 .203 .21 .24 .27 .297"),
                        train_loss=curve("1.38 .5 .25 .2128 .21 .208 .205 .2013")), {**THREE, "min_train_drop": 0.05},
                 7, id="train-fell-5pct-min_train_drop-5pct"),
    pytest.param(series(8, val_loss=curve(".698 .2 .05 .0246 .026 .028 .03 .0326"),
                        train_loss=curve(".7 .2 .06 .0389 .035 .032 .03 .0281")), THREE, None,
                 id="rise-immaterial-vs-first"),
    pytest.param(series(8, val_loss=curve(".698 .2 .05 .0246 .026 .028 .03 .0326"),
                        train_loss=curve(".7 .2 .06 .0389 .035 .032 .03 .0281")), {**THREE, "min_rise_of_first": 0},
                 6, id="rise-immaterial-vs-first-guard-off"),
    # The score gate: a validation loss that climbs while val_accuracy holds within 0.02 of its
    # best is over-confidence, not lost accuracy (ported-models SELU control: 0.99 -> 0.987).
    pytest.param(edit(OVERFIT, val_accuracy=HOLDS), {}, None, id="accuracy-holds-within-0.02"),
    pytest.param(edit(OVERFIT, val_accuracy=FALLS), {}, 10, id="accuracy-falls-0.06"),
    pytest.param(edit(OVERFIT, val_accuracy=HOLDS), {"min_score_drop": 0.005}, 10, id="min_score_drop-0.005"),
    pytest.param(edit(OVERFIT, val_accuracy=HOLDS), {"score_metric": None}, 10, id="score_metric-none-no-gate"),
    pytest.param(edit(OVERFIT, val_accuracy=HOLDS), {"score_metric": "val_macro_f1"}, 10, id="score-not-reported"),
    pytest.param(edit(edit(OVERFIT, val_accuracy=HOLDS), 10, val_accuracy=math.nan), {}, 10,
                 id="nan-score-at-the-last-report-no-gate"),
]


@pytest.mark.parametrize("reports, params, expected", OVERFITTING_ROWS)
def test_overfitting(reports, params, expected):
    assert first_firing("overfitting", reports, params) == expected


def test_overfitting_reads_the_run_loss_metric():
    renamed = [{"step": r["step"], "loss": r["val_loss"], "train_loss": r["train_loss"]} for r in OVERFIT]
    assert first_firing("overfitting", renamed, default_metric="loss") == 10
    assert first_firing("overfitting", OVERFIT, default_metric="train_loss") is None


@pytest.mark.parametrize("key, expected", [
    ("best", 0.35),
    ("steps_since_best", 6 * STEPS),  # best at report 4, found at report 10
    ("train_at_best", 0.2),
    ("last", 0.7),
])
def test_overfitting_evidence(key, expected):
    finding = run("overfitting", OVERFIT)[0]
    assert finding.metric == "val_loss"
    assert finding.evidence[key] == pytest.approx(expected)


def test_overfitting_evidence_names_the_score_that_fell():
    assert "score_best" not in run("overfitting", OVERFIT)[0].evidence
    finding = run("overfitting", edit(OVERFIT, val_accuracy=FALLS))[0]
    assert (finding.evidence["score_best"], finding.evidence["score_last"]) == (0.88, 0.82)


# Balanced 10 classes; from epoch 1 every validation prediction falls in one class, and the
# training loss stays at ln(10): nothing is learned.
COLLAPSED = edit(HEALTHY, 1, pred_frac_max=1.0, pred_classes=1, val_accuracy=0.1, val_macro_f1=0.018,
                 val_recall_min=0.0, val_balanced_accuracy=0.1, train_loss=2.30)
# The same predictions while the training loss still falls: 6% on the first report, 2.5% a report
# after it, so over 64 steps (3 reports of 23, and the one before) by 7.3%.
STILL_LEARNING = edit(COLLAPSED, 1, train_loss=[round(2.165 * 0.975 ** k, 4) for k in range(15)])
# Binary 90/10 labels; the model predicts the majority only: accuracy 0.9, macro-F1 0.47. Its training
# loss settles at the labels' entropy (0.325) after the first report.
MAJORITY = edit(HEALTHY, label_frac_max=0.9, label_classes=2, pred_frac_max=1.0, pred_classes=1,
                val_accuracy=0.9, val_macro_f1=0.474, val_recall_min=0.0, val_balanced_accuracy=0.5,
                chance_loss=None, chance_accuracy=0.9, chance_macro_f1=0.474, chance_balanced_accuracy=0.5,
                label_entropy=0.325, train_loss=[0.69] + [0.325] * 15)
COLLAPSE_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    pytest.param(COLLAPSED, {}, 1, id="balanced-labels-one-predicted-class"),
    pytest.param(edit(HEALTHY, 0, 1, pred_frac_max=1.0), {}, None, id="untrained-net-predicts-one-class"),
    # never judged at step 0, counted in steps: a second report still at step 0 is not judged either
    pytest.param(edit(COLLAPSED, 1, 2, step=0), {}, 2, id="report-1-at-step-0"),
    # the training loss still falls > 5% over the last 64 steps: a transient, not a settled collapse
    pytest.param(STILL_LEARNING, {}, None, id="still-learning-gates-it"),
    pytest.param(STILL_LEARNING, {"max_train_progress": None}, 1, id="still-learning-gate-off"),
    # over 1 step (the last report and the one before) it falls 2.5% from report 2 on
    pytest.param(STILL_LEARNING, {"window_steps": 1}, 2, id="window_steps-1"),
    # ... unless a share of the planned steps is longer: 0.2 x 345 = 69 steps
    pytest.param(STILL_LEARNING, {"window_steps": 1, "window_share": 0.2}, None, id="window_share-of-planned"),
    # the gate opens once 64 steps (and the report before) show no progress: report 4 (steps 23 -> 92)
    pytest.param(MAJORITY, {}, 4, id="imbalanced-majority-only-by-f1-gap"),
    pytest.param(MAJORITY, {"min_f1_gap": None}, None, id="f1-arm-off"),
    pytest.param(edit(MAJORITY, val_macro_f1=None), {}, None, id="imbalanced-without-macro-f1"),
    pytest.param(edit(COLLAPSED, 1, pred_frac_max=0.85), {}, None, id="85pct-below-bar"),
    pytest.param(edit(COLLAPSED, 1, pred_frac_max=0.85), {"min_pred_frac": 0.8}, 1, id="custom-min_pred_frac"),
    pytest.param(edit(COLLAPSED, 1, label_frac_max=0.75, label_classes=2, pred_frac_max=0.92,
                      val_accuracy=0.8, val_macro_f1=0.7), {}, None, id="predictions-as-skewed-as-labels"),
    pytest.param(edit(COLLAPSED, label_frac_max=None), {}, None, id="no-label-share-and-f1-gap-small"),
    pytest.param(drop(COLLAPSED, "pred_", "val_macro", "label_"), {}, None, id="missing-streams"),
    pytest.param(drop(COLLAPSED, "epoch"), {}, 1, id="position-when-no-epoch-key"),
    pytest.param(BARE, {}, None, id="bare-reports"),
]


@pytest.mark.parametrize("reports, params, expected", COLLAPSE_ROWS)
def test_class_collapse(reports, params, expected):
    assert first_firing("class_collapse", reports, params) == expected


# STUCK, SGD_SLOW, ADAM_TINY: measured val_loss curves, epoch 0 first (tests/curves.py).


def with_chance(values: list[float], key: str = "val_loss") -> list[Report]:
    """A custom trainable's reports: the loss, and at epoch 0 only chance_loss = ln(10) (no label_entropy)."""
    reports = series(len(values), **{key: values})
    reports[0].update(chance_loss=CHANCE, init_loss=values[0])
    return reports


def with_entropy(values: list[float], entropy: float = 2.302) -> list[Report]:
    """The managed harness's reports: label_entropy on every report (unweighted CE, natural sampler)."""
    return edit(with_chance(values), label_entropy=entropy)


# Binary 90/10 labels trained with class weights (so no label_entropy: the loss is weighted): it
# trades accuracy (0.70-0.77, below the majority's 0.9) for the minority class. Balanced accuracy
# and macro-F1 are well above the constant predictor's 0.5 and 0.474: not at chance.
REWEIGHTED = edit(series(8, val_loss=curve(".69 .5 .45 .42 .41 .40 .40 .39"),
                         train_loss=curve(".69 .52 .46 .43 .41 .40 .39 .38"),
                         val_accuracy=curve(".5 .7 .74 .75 .76 .76 .77 .77"),
                         val_balanced_accuracy=curve(".5 .72 .78 .8 .81 .81 .82 .82"),
                         val_macro_f1=curve(".45 .55 .6 .62 .63 .63 .64 .64"),
                         chance_accuracy=0.9, chance_macro_f1=0.474, chance_balanced_accuracy=0.5),
                  0, 1, chance_loss=math.log(2))
CHANCE_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-digits"),
    # no min_epochs: the first report after step 0 is judged
    pytest.param(with_chance(SGD_SLOW), {}, 1, id="sgd-too-slow"),
    pytest.param(with_chance(ADAM_TINY), {}, 1, id="adam-lr1e-5"),
    pytest.param(with_chance(STUCK), {}, 2, id="stuck-adam-lr1"),  # 2.541 is 10% above ln(10)
    pytest.param(edit(with_chance(SGD_SLOW), 1, 2, step=0), {}, 2, id="report-1-at-step-0"),
    pytest.param(with_chance(STUCK), {"tolerance": 0.01}, None, id="stuck-is-1-3pct-off"),
    pytest.param(with_chance(SGD_SLOW), {"tolerance": 0.001}, 1, id="sgd-within-0.1pct"),
    pytest.param(with_chance(VAL_LOSS), {}, None, id="healthy"),
    pytest.param(with_chance([2.3, 2.0, 3.0, 3.5, 4.0]), {}, None, id="far-above-chance-is-divergence"),
    pytest.param(series(16, val_loss=STUCK), {}, None, id="no-chance-loss"),
    pytest.param(edit(with_chance(STUCK), 2, 3, val_loss=None), {}, 3, id="report-without-loss"),
    pytest.param(edit(with_chance(STUCK), 0, 1, chance_loss=math.nan), {}, None, id="nan-chance-loss"),
    pytest.param(drop(with_chance(STUCK), "epoch"), {}, 2, id="position-when-no-epoch-key"),
    pytest.param(with_chance(STUCK, key="train_loss"), {"metric": "train_loss"}, 2, id="metric-param"),
    pytest.param(with_chance(STUCK, key="train_loss"), {}, None, id="run-loss-metric-absent"),
    # verdict.at_chance: a loss >= 0.95 x the label entropy (2.541 >= 2.187 at report 1)
    pytest.param(with_entropy(STUCK), {}, 1, id="loss-at-label-entropy"),
    # with label_entropy reported the chance_loss tolerance is not used: 2.0 is 13% below ln(10),
    # within a tolerance of 20%, but below 0.95 x the entropy
    pytest.param(with_chance([2.3, 2.0, 1.96, 1.95]), {"tolerance": 0.2}, 1, id="within-20pct-of-ln-10"),
    pytest.param(with_entropy([2.3, 2.0, 1.96, 1.95]), {"tolerance": 0.2}, None, id="entropy-reported-no-tolerance"),
    # verdict.at_chance: macro-F1 at the constant predictor's + 0.02
    pytest.param(edit(HEALTHY, 4, val_macro_f1=0.0385), {}, 4, id="macro-f1-at-chance"),
    pytest.param(edit(HEALTHY, 4, val_macro_f1=0.04), {}, None, id="macro-f1-above-chance"),
    # verdict.at_chance: accuracy at chance counts only while balanced accuracy is at chance too
    pytest.param(REWEIGHTED, {}, None, id="reweighted-below-majority-rate-not-at-chance"),
    pytest.param(edit(REWEIGHTED, 3, val_balanced_accuracy=0.51, val_macro_f1=0.497), {}, 3,
                 id="below-majority-rate-balanced-at-chance"),
    pytest.param(edit(REWEIGHTED, val_balanced_accuracy=None), {}, 1, id="below-majority-rate-no-balanced"),
    pytest.param(edit(REWEIGHTED, 2, val_accuracy=0.9, val_balanced_accuracy=0.5, val_macro_f1=0.474), {}, 2,
                 id="predicts-the-majority-only"),
    # NaN outputs: a non-finite accuracy is at chance (a NaN loss is nonfinite_loss's)
    pytest.param(edit(HEALTHY, 5, val_accuracy=math.nan, val_macro_f1=math.nan), {}, 5, id="nan-accuracy"),
    pytest.param(edit(HEALTHY, 5, val_accuracy=math.nan, val_macro_f1=math.nan, val_loss=math.nan), {}, None,
                 id="nan-accuracy-and-loss"),
    pytest.param(edit(HEALTHY, 0, 1, val_macro_f1=0.0), {}, None, id="untrained-report-not-judged"),
]


@pytest.mark.parametrize("reports, params, expected", CHANCE_ROWS)
def test_chance_level(reports, params, expected):
    assert first_firing("chance_level", reports, params) == expected


@pytest.mark.parametrize("reports, keys", [
    pytest.param(with_chance(STUCK), {"loss", "chance_loss", "relative_gap"}, id="chance-loss-tolerance"),
    pytest.param(with_entropy(STUCK), {"loss", "label_entropy"}, id="label-entropy"),
    pytest.param(edit(HEALTHY, 4, val_macro_f1=0.0385), {"loss", "label_entropy", "val_accuracy", "chance_accuracy"},
                 id="harness-reports"),
    pytest.param(edit(REWEIGHTED, val_balanced_accuracy=None), {"loss", "val_accuracy", "chance_accuracy"},
                 id="reweighted-without-entropy"),
])
def test_chance_level_evidence(reports, keys):
    finding = run("chance_level", reports)[0]
    assert finding.metric == "val_loss"
    assert set(finding.evidence) == keys


# -- missing metrics: never an exception, no finding -----------------------------------------

POSITIVE = {
    "vanishing_gradients": VANISHING, "exploding_gradients": edit(HEALTHY, 5, grad_norm=math.inf),
    "no_update": NO_STEP, "dying_relu": DEAD_RUN, "saturated_activations": SATURATED,
    "label_imbalance": edit(HEALTHY, label_frac_max=0.9), "unnormalized_input": edit(HEALTHY, input_std=50.0),
    "overfitting": OVERFIT, "class_collapse": COLLAPSED, "chance_level": with_chance(STUCK),
}


@pytest.mark.parametrize("name", NEW)
def test_last_report_without_the_inputs_finds_nothing(name):
    reports = POSITIVE[name]
    at = first_firing(name, reports)
    assert at is not None
    history = History().extend(enumerate(reports[: at + 1]))
    detector = SYMPTOMS[name]("val_loss")
    assert detector.check(history) is not None
    history.record(at + 1, {"epoch": at + 1})
    assert detector.check(history) is None
    history.record(at + 2, {"epoch": at + 2, **{k: "n/a" for k in reports[at]}})  # strings are not kept
    assert detector.check(history) is None


@pytest.mark.parametrize("name", NEW)
def test_empty_history_and_empty_reports(name):
    detector = SYMPTOMS[name]("val_loss")
    assert detector.check(History()) is None
    assert run(name, [{} for _ in range(6)]) == []


PROBE_KEYS = [
    "epoch", "step", "planned_steps", "update_expected", "update_resolution", "chance_accuracy",
    "chance_macro_f1", "chance_balanced_accuracy", "label_entropy",
    "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "grad_norm", "grad_norm/conv1",
    "grad_norm_first", "grad_norm_last", "grad_ratio", "grad_zero_frac", "update_ratio/fc", "update_ratio_max",
    "update_ratio_median", "update_ratio_global", "dead_frac/relu1", "dead_frac_max", "saturated_frac/tanh1",
    "saturated_frac_max", "input_mean", "input_std", "input_abs_max", "label_frac_max", "label_classes",
    "pred_frac_max", "pred_classes", "val_recall_min", "val_balanced_accuracy", "init_loss", "chance_loss",
]
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, -1.0, 0.5]),
                   st.integers(-3, 20), st.just("x"), st.none())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(PROBE_KEYS), VALUES, max_size=12), max_size=8))
def test_no_detector_raises_on_arbitrary_reports(reports):
    detectors = build_detectors("val_loss")
    history = History()
    for i, report in enumerate(reports):
        history.record(i, report)
        for detector in detectors:
            finding = detector.check(history)
            if finding is not None:
                assert finding.iteration == i and finding.symptom == detector.name


# -- findings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
def test_findings_are_plain_numbers_and_round_trip(name):
    finding = run(name, POSITIVE[name])[0]
    assert isinstance(finding, Finding)
    assert finding.evidence and all(isinstance(v, float) for v in finding.evidence.values())
    data = finding.to_dict()
    assert Finding.from_dict(data).to_dict().keys() == data.keys()
    assert finding.metric in POSITIVE[name][finding.iteration] or finding.metric == "val_loss"


@pytest.mark.parametrize("name, metric, keys", [
    ("vanishing_gradients", "grad_ratio", {"grad_ratio", "grad_norm_first", "val_accuracy"}),
    ("exploding_gradients", "grad_norm", {"grad_norm"}),
    ("no_update", "update_ratio_global", {"update_ratio_global", "reports", "update_expected", "update_resolution"}),
    ("dying_relu", "dead_frac_max", {"dead_frac_max", "grad_zero_frac", "val_accuracy"}),
    ("saturated_activations", "saturated_frac_max", {"saturated_frac_max", "val_accuracy"}),
    ("label_imbalance", "label_frac_max", {"label_frac_max", "label_classes", "min_imbalance_ratio"}),
    ("unnormalized_input", "input_std", {"input_mean", "input_std", "input_abs_max"}),
    ("overfitting", "val_loss", {"best", "last", "rise", "steps_since_best", "train_at_best", "train_last"}),
    ("class_collapse", "pred_frac_max", {"pred_frac_max", "label_frac_max", "pred_classes", "val_recall_min",
                                         "val_balanced_accuracy"}),
    ("chance_level", "val_loss", {"loss", "chance_loss", "relative_gap"}),
])
def test_finding_metric_and_evidence_keys(name, metric, keys):
    finding = run(name, POSITIVE[name])[0]
    assert finding.metric == metric
    assert set(finding.evidence) == keys


# -- parameters -------------------------------------------------------------------------------

# What the bounds cannot say (a bound past each declared one is generated below, from Params):
# a metric a probe detector does not take, a parameter that is gone, a cross-field rule.
@pytest.mark.parametrize("name, params", [
    ("vanishing_gradients", {"metric": "grad_ratio"}),
    ("vanishing_gradients", {"ratio": 1e-3}),
    ("exploding_gradients", {"nonfinite": "maybe"}),
    ("no_update", {"metric": "val_loss"}),
    # the loss-repeat arm is gone, and its parameters with it
    ("no_update", {"window": 1}),
    ("no_update", {"loss_metrics": "val_loss"}),
    ("dying_relu", {"min_dead_frac": None, "min_zero_grad_frac": None}),
    ("unnormalized_input", {"min_var": 10, "max_var": 1}),
    ("overfitting", {"patience": 3}),  # reports: gone
    ("class_collapse", {"min_epochs": 1}),  # gone: never judged at step 0
    ("class_collapse", {"window": 2}),  # reports: gone
    ("chance_level", {"min_epochs": 3}),  # gone
    ("chance_level", {"window": 3}),
])
def test_invalid_params_raise_validation_error(name, params):
    with pytest.raises(pydantic.ValidationError):
        SYMPTOMS[name]("val_loss", **params)
    with pytest.raises(pydantic.ValidationError):
        build_detectors("val_loss", {name: params})


def test_overrides_reach_the_new_detectors():
    by_name = {d.name: d for d in build_detectors("loss", {"dying_relu": {"min_dead_frac": 0.8},
                                                           "chance_level": {"metric": "train_loss"}})}
    assert by_name["dying_relu"].params.min_dead_frac == 0.8
    assert by_name["chance_level"].metric == "train_loss"
    assert by_name["overfitting"].metric == "loss"


# -- the registry -----------------------------------------------------------------------------

CODE = ("missing_zero_grad", "loss_broadcast", "detached_loss", "nan_metric")  # symptoms/code.py
DATA_BUG = "constant_inputs"  # symptoms/data.py: a loading bug, reported like the code bugs


ISOLATION = ("unexplained_failure", "baseline_learns")  # symptoms/isolation.py: the isolation ladder's


STEP = ("loss_spike",)  # symptoms/spike.py: judged inside the trial, at every step


def test_registry_holds_all_twenty_five_symptoms():
    assert set(SYMPTOMS) == (set(OLD) | set(NEW) | set(END) | set(MODEL) | set(CODE) | set(ISOLATION) | {DATA_BUG}
                             | set(STEP))
    assert len(SYMPTOMS) == 25
    assert all(name == cls.name for name, cls in SYMPTOMS.items())


def _isort_key(name: str) -> tuple[int, str]:
    """ruff RUF022's isort-style order: CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted_and_exports_every_detector():
    exported = symptoms_pkg.__all__
    assert exported == sorted(exported, key=_isort_key)
    assert len(set(exported)) == len(exported)
    for cls in SYMPTOMS.values():
        assert cls.__name__ in exported and getattr(symptoms_pkg, cls.__name__) is cls


SOURCES = re.compile(r"AUTOTRAINER|DeepDiagnosis|Lightning|Ray Tune|Keras|SageMaker|Karpathy|OLMo-core|llm-foundry")


@pytest.mark.parametrize("name", sorted(SYMPTOMS))
def test_every_symptom_documents_itself(name):
    cls = SYMPTOMS[name]
    assert cls.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert isinstance(cls.summary, str) and cls.summary.strip()
    doc = cls.__doc__ or ""
    assert SOURCES.search(doc), f"{name}: the docstring names no source for its defaults"
    for field in cls.Params.model_fields:
        if field != "metric":
            assert f"``{field}" in doc, f"{name}: parameter {field} is not documented"
    assert isinstance(cls.fixable, bool) and isinstance(cls.advice, str)


def test_only_training_code_and_data_loading_bugs_are_unfixable():
    unfixable = [name for name, cls in SYMPTOMS.items() if not cls.fixable]
    assert unfixable == ["no_update", DATA_BUG, *CODE]
    advice = SYMPTOMS["no_update"].advice
    assert len(advice) > 200
    for cause in ("optimizer.step()", "zero_grad()", "backward()", "detach", "requires_grad", "learning rate"):
        assert cause in advice
    assert all(cls.advice == "" or not cls.fixable for cls in SYMPTOMS.values())


def test_symptoms_import_neither_torch_nor_ray():
    code = ("import sys, autofix.symptoms; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(SYMPTOMS))
def test_every_detector_declares_catalogued_inputs_and_its_evidence(name):
    from autofix.spec.catalogue import METRICS, is_metric
    cls = SYMPTOMS[name]
    assert all(is_metric(k) or (k.endswith("/") and k in METRICS) for k in cls.inputs), cls.inputs
    assert cls.evidence_keys and len(set(cls.evidence_keys)) == len(cls.evidence_keys)


def _generated_invalid():
    from invalid import invalid_values
    for name, cls in sorted(SYMPTOMS.items()):
        for field, value, why in invalid_values(cls.Params):
            yield pytest.param(name, field, value, id=f"{name}-{field}-{why}")


@pytest.mark.parametrize("name, field, value", list(_generated_invalid()))
def test_every_declared_bound_of_every_detector_rejects_the_value_past_it(name, field, value):
    """Generated from the Params constraints (tests/invalid.py): the bound is written once."""
    with pytest.raises(pydantic.ValidationError) as info:
        build_detectors("val_loss", {name: {field: value}})
    assert any(err["loc"][-1] == field for err in info.value.errors())


def test_the_generator_covers_every_bounded_detector_parameter():
    from invalid import invalid_values
    bounded = {(n, f) for n, cls in SYMPTOMS.items() for f, i in cls.Params.model_fields.items() if i.metadata}
    generated = {(n, f) for n, cls in SYMPTOMS.items() for f, _, _ in invalid_values(cls.Params)}
    assert bounded <= generated and len(generated) >= 60
