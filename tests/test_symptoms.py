"""Symptom detectors over a History, fed one report at a time as Tune would (no Ray, no torch)."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pydantic
import pytest

from autofix.errors import AutofixError
from autofix.metrics import History
from autofix.symptoms import SYMPTOMS, Finding, build_detectors


def curve(text: str) -> list[float]:
    return [float(x) for x in text.split()]


# Measured val_loss of a small CNN on digits, epoch 0 (before any training step) first.
HEALTHY = curve("2.305 2.096 1.297 .568 .388 .295 .248 .242 .186 .207 .167 .191 .144 .131 .135 .173")
STUCK = curve("2.305 2.541 2.366 2.336 2.367 2.385 2.359 2.381 2.369 2.384 2.421 2.384 2.332 2.329 2.363 2.442")
SGD_SLOW = curve("2.305 2.304 2.302 2.301 2.299 2.298 2.296 2.295 2.293 2.292 2.290 2.289 2.287 2.285 2.283 2.280")
ADAM_TINY = curve("2.305 2.304 2.303 2.302 2.301 2.300 2.299 2.298 2.296 2.295 2.294 2.293 2.292 2.290 2.289 2.287")

# Synthetic curves.
NAN_AT_3 = [2.3, 1.9, 1.5, math.nan, 1.2]
INF_AT_2 = [2.3, 1.9, math.inf, 1.5]
NEG_INF_AT_1 = [2.3, -math.inf]
LATE_DIVERGENCE = [2.3, 1.2, 0.6, 0.4, 0.35, 0.5, 0.9, 1.6, 2.4]
SPIKE = [2.3, 2.0, 4.7]
JUST_BELOW_SPIKE = [2.3, 2.0, 4.6]  # exactly 2x the first value is not above it
LARGE_OSCILLATION = [2.3, 1.5, 2.2, 1.4, 2.1, 1.3, 2.0, 1.2]
CONVERGED_NOISE = [2.3, 1.0, 0.3, 0.1, 0.06, 0.05, 0.07, 0.05, 0.08, 0.05, 0.07, 0.04, 0.05, 0.06, 0.07, 0.08]
SLOW_RISE_SMALL = [2.3, 1.0, 0.5, 0.3, 0.31, 0.33, 0.36, 0.40]  # rises 4x in a row, but by far less than 0.5x first


def first_firing(detector_name: str, series: list[float], params: dict[str, Any] | None = None,
                 metric: str = "val_loss") -> int | None:
    """Feed ``series`` one report at a time; the first iteration at which ``check`` finds something."""
    detector = SYMPTOMS[detector_name](metric, **(params or {}))
    history = History()
    for i, value in enumerate(series):
        history.record(i, {metric: value, "epoch": i})
        finding = detector.check(history)
        if finding is not None:
            assert finding.iteration == i
            return i
    return None


def firings(detector_name: str, series: list[float], params: dict[str, Any] | None = None) -> list[int]:
    detector = SYMPTOMS[detector_name]("val_loss", **(params or {}))
    history, out = History(), []
    for i, value in enumerate(series):
        history.record(i, {"val_loss": value})
        if detector.check(history) is not None:
            out.append(i)
    return out


# -- one table per detector ------------------------------------------------------------------

NONFINITE_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-adam"),
    pytest.param(STUCK, {}, None, id="stuck-adam-lr1"),
    pytest.param(SGD_SLOW, {}, None, id="sgd-too-slow"),
    pytest.param(ADAM_TINY, {}, None, id="adam-lr1e-5"),
    pytest.param([math.nan], {}, 0, id="nan-first-report"),
    pytest.param(NAN_AT_3, {}, 3, id="nan-mid-run"),
    pytest.param(INF_AT_2, {}, 2, id="inf"),
    pytest.param(NEG_INF_AT_1, {}, 1, id="minus-inf"),
    pytest.param([2.3, 50.0, 999.0], {"max_abs": 1e3}, None, id="max_abs-below-limit"),
    pytest.param([2.3, 50.0, 1000.0], {"max_abs": 1e3}, 2, id="max_abs-at-limit"),
    pytest.param([2.3, -5e3], {"max_abs": 1e3}, 1, id="max_abs-negative-huge"),
    pytest.param([2.3, 5e3], {}, None, id="huge-finite-without-max_abs"),
    pytest.param([1e4, 9e3, 8e3], {"max_abs": 1e5}, None, id="regression-scale-under-max_abs"),
]


@pytest.mark.parametrize("series, params, expected", NONFINITE_ROWS)
def test_nonfinite_loss(series, params, expected):
    assert first_firing("nonfinite_loss", series, params) == expected


DIVERGING_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-adam"),
    pytest.param(STUCK, {}, None, id="stuck-adam-lr1"),
    pytest.param(SGD_SLOW, {}, None, id="sgd-too-slow"),
    pytest.param(ADAM_TINY, {}, None, id="adam-lr1e-5"),
    pytest.param(SPIKE, {}, 2, id="spike-above-2x-first"),
    pytest.param(JUST_BELOW_SPIKE, {}, None, id="exactly-2x-first"),
    pytest.param(SPIKE, {"factor": 3.0}, None, id="spike-below-custom-factor"),
    pytest.param(LATE_DIVERGENCE, {}, 7, id="late-divergence-after-healthy-start"),
    # rising_steps=2 would fire at 8; the give-back rule (up 1.15 from the best 0.35) fires at 7
    pytest.param(LATE_DIVERGENCE, {"rising_steps": 2}, 7, id="late-divergence-rising_steps-2"),
    pytest.param([2.3, 1.2, 0.5, 0.3, 1.0, 0.7, 1.3, 0.9, 1.6], {}, 8, id="late-zigzag-gives-back-half"),
    pytest.param([2.3, 1.2, 0.5, 0.3, 1.0, 0.7, 1.3, 0.9, 1.6], {"min_rise": 0.6}, None, id="zigzag-below-min_rise"),
    pytest.param([2.3, 1.2, 0.5, 0.4, 0.5, 0.6, 0.55, 0.8, 0.9], {}, None, id="overfitting-drift-is-not-divergence"),
    pytest.param([2.3, 2.0, 1.8, 2.2, 2.9, 2.5, 3.5, 3.2, 4.0], {"factor": 3.0}, None, id="no-progress-no-give-back"),
    pytest.param(LATE_DIVERGENCE, {"rising_steps": 2, "min_rise": 0.2}, 6, id="late-divergence-rising_steps-2-min_rise-0.2"),
    pytest.param(LATE_DIVERGENCE, {"min_rise": 2.0}, None, id="late-divergence-below-min_rise"),
    pytest.param(SLOW_RISE_SMALL, {}, None, id="small-rise-near-convergence"),
    pytest.param(CONVERGED_NOISE, {}, None, id="noise-near-convergence"),
    pytest.param(LARGE_OSCILLATION, {}, None, id="oscillation-is-not-divergence"),
    pytest.param([2.3, math.nan, 5.0], {}, 2, id="nan-skipped-spike-still-found"),
    pytest.param([math.nan, 2.3, 4.7], {}, 2, id="first-finite-value-is-the-baseline"),
    pytest.param([math.nan, 3.0, 4.7], {}, None, id="first-finite-value-is-the-baseline-no-spike"),
    pytest.param([2.3, 4.7, math.nan], {}, 1, id="nan-report-is-not-judged"),
]


@pytest.mark.parametrize("series, params, expected", DIVERGING_ROWS)
def test_diverging_loss(series, params, expected):
    assert first_firing("diverging_loss", series, params) == expected


OSCILLATING_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-adam"),
    pytest.param(STUCK, {}, None, id="stuck-adam-lr1"),
    pytest.param(SGD_SLOW, {}, None, id="sgd-too-slow"),
    pytest.param(ADAM_TINY, {}, None, id="adam-lr1e-5"),
    pytest.param(LARGE_OSCILLATION, {}, 4, id="large-oscillation"),
    pytest.param(LARGE_OSCILLATION, {"min_reversals": 5}, 6, id="large-oscillation-5-reversals"),
    pytest.param(LARGE_OSCILLATION, {"min_swing": 0.5}, None, id="swing-below-custom-floor"),
    pytest.param(LARGE_OSCILLATION, {"window": 3, "min_reversals": 2}, 3, id="window-3"),
    pytest.param(CONVERGED_NOISE, {}, None, id="noise-near-convergence"),
    pytest.param(LATE_DIVERGENCE, {}, None, id="late-divergence-is-not-oscillation"),
    pytest.param(SPIKE, {}, None, id="single-spike"),
]


@pytest.mark.parametrize("series, params, expected", OSCILLATING_ROWS)
def test_oscillating_loss(series, params, expected):
    assert first_firing("oscillating_loss", series, params) == expected


PLATEAU_ROWS = [
    pytest.param(HEALTHY, {}, None, id="healthy-adam"),
    pytest.param(STUCK, {}, 4, id="stuck-adam-lr1"),
    pytest.param(SGD_SLOW, {}, 4, id="sgd-too-slow"),
    pytest.param(ADAM_TINY, {}, 4, id="adam-lr1e-5"),
    pytest.param(STUCK, {"window": 6}, 6, id="stuck-window-6"),
    pytest.param(SGD_SLOW, {"min_improvement": 0.0}, None, id="sgd-any-improvement-is-enough"),
    pytest.param(HEALTHY[:4] + [HEALTHY[3]] * 6, {}, None, id="flat-after-converging-drop"),
    pytest.param(HEALTHY[:4] + [HEALTHY[3]] * 6, {"converged_drop": 1.0}, 7, id="flat-after-drop-strict-bar"),
    pytest.param(STUCK[:4], {}, None, id="too-few-reports"),
    pytest.param(CONVERGED_NOISE, {}, None, id="noise-near-convergence"),
    pytest.param([2.3, 2.3, 2.3, 2.3, math.nan], {}, None, id="nan-report-is-not-judged"),
]


@pytest.mark.parametrize("series, params, expected", PLATEAU_ROWS)
def test_plateau(series, params, expected):
    assert first_firing("plateau", series, params) == expected


# -- the measured curves: which detectors fire, over the whole run ---------------------------

@pytest.mark.parametrize("series, expected", [
    pytest.param(HEALTHY, {}, id="healthy-adam-nothing-fires"),
    pytest.param(STUCK, {"plateau": 4}, id="stuck-adam-lr1-plateau-only"),
    pytest.param(SGD_SLOW, {"plateau": 4}, id="sgd-too-slow-plateau-only"),
    pytest.param(ADAM_TINY, {"plateau": 4}, id="adam-lr1e-5-plateau-only"),
])
def test_measured_curves_fire_only_expected_detectors(series, expected):
    fired = {name: at for name in SYMPTOMS if (at := first_firing(name, series)) is not None}
    assert fired == expected


# -- scale invariance: the same shape fires at the same place at any loss scale ---------------

SHAPES = {
    "healthy": HEALTHY, "stuck": STUCK, "spike": SPIKE, "late-divergence": LATE_DIVERGENCE,
    "oscillation": LARGE_OSCILLATION, "converged-noise": CONVERGED_NOISE,
}


@pytest.mark.parametrize("scale", [1e4 / 2.3, 1e-3, 37.0], ids=["regression-1e4", "tiny-1e-3", "x37"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("detector", sorted(SYMPTOMS))
def test_scale_invariance(detector, shape, scale):
    base = SHAPES[shape]
    assert firings(detector, [v * scale for v in base]) == firings(detector, base)


@pytest.mark.parametrize("detector, series, expected", [
    pytest.param("plateau", [1e4, 9.99e3, 1.0005e4, 9.995e3, 1.0002e4], 4, id="regression-plateau"),
    pytest.param("diverging_loss", [1e4, 8e3, 2.1e4], 2, id="regression-spike"),
    pytest.param("oscillating_loss", [1e4, 9.9e3, 1e4, 9.9e3, 1e4, 9.9e3, 1e4], None, id="regression-1pct-noise"),
    pytest.param("nonfinite_loss", [1e4, 5e4], None, id="regression-large-but-finite"),
])
def test_regression_scale_loss(detector, series, expected):
    assert first_firing(detector, series) == expected


# -- findings --------------------------------------------------------------------------------

@pytest.mark.parametrize("detector, series, params, evidence_keys", [
    ("nonfinite_loss", INF_AT_2, {}, {"value"}),
    ("nonfinite_loss", [2.3, 2e3], {"max_abs": 1e3}, {"value"}),
    ("diverging_loss", SPIKE, {}, {"first", "last", "ratio"}),
    ("diverging_loss", LATE_DIVERGENCE, {}, {"first", "start", "last", "rise"}),
    ("oscillating_loss", LARGE_OSCILLATION, {}, {"reversals", "window", "swing_floor", "amplitude"}),
    ("plateau", STUCK, {}, {"first", "last", "best_before", "best_recent", "improvement", "total_drop"}),
])
def test_finding_fields(detector, series, params, evidence_keys):
    det = SYMPTOMS[detector]("val_loss", **params)
    history = History()
    finding = None
    for i, value in enumerate(series):
        history.record(i, {"val_loss": value})
        finding = det.check(history)
        if finding is not None:
            break
    assert isinstance(finding, Finding)
    assert finding.symptom == detector
    assert finding.iteration == history.last_iteration
    assert finding.metric == "val_loss"
    assert isinstance(finding.reason, str) and finding.reason.strip()
    assert "val_loss" in finding.reason
    assert set(finding.evidence) == evidence_keys
    assert all(isinstance(v, float) for v in finding.evidence.values())
    assert Finding.from_dict(finding.to_dict()) == finding


@pytest.mark.parametrize("series, key, expected", [
    (SPIKE, "ratio", 4.7 / 2.3),
    (SPIKE, "first", 2.3),
    (SPIKE, "last", 4.7),
    (LATE_DIVERGENCE, "start", 0.35),
    (LATE_DIVERGENCE, "rise", 1.6 - 0.35),
])
def test_diverging_evidence_values(series, key, expected):
    det = SYMPTOMS["diverging_loss"]("val_loss")
    history = History()
    for i, value in enumerate(series):
        history.record(i, {"val_loss": value})
        if (finding := det.check(history)) is not None:
            assert finding.evidence[key] == pytest.approx(expected)
            return
    pytest.fail("diverging_loss never fired")


def test_plateau_evidence_on_stuck_curve():
    det = SYMPTOMS["plateau"]("val_loss")
    history = History().extend((i, {"val_loss": v}) for i, v in enumerate(STUCK[:5]))
    finding = det.check(history)
    assert finding is not None
    assert finding.evidence["best_before"] == pytest.approx(2.305)
    assert finding.evidence["best_recent"] == pytest.approx(2.336)
    assert finding.evidence["improvement"] < 0
    assert finding.evidence["total_drop"] == pytest.approx((2.305 - 2.367) / 2.305)


LOSS_SYMPTOMS = ["diverging_loss", "nonfinite_loss", "oscillating_loss", "plateau"]


@pytest.mark.parametrize("detector", LOSS_SYMPTOMS)
def test_report_without_the_metric_changes_nothing(detector):
    """A report that lacks the watched metric (or carries it only as a string) is not judged."""
    det = SYMPTOMS[detector]("val_loss")
    bad = {"nonfinite_loss": [math.nan], "diverging_loss": SPIKE, "oscillating_loss": LARGE_OSCILLATION,
           "plateau": STUCK}[detector]
    history = History().extend((i, {"val_loss": v}) for i, v in enumerate(bad))
    assert det.check(history) is not None
    history.record(len(bad), {"train_loss": 0.1})
    assert det.check(history) is None
    history.record(len(bad) + 1, {"val_loss": "nan"})
    assert det.check(history) is None


@pytest.mark.parametrize("detector", LOSS_SYMPTOMS)
def test_metric_param_picks_another_stream(detector):
    bad = {"nonfinite_loss": [math.nan], "diverging_loss": SPIKE, "oscillating_loss": LARGE_OSCILLATION,
           "plateau": STUCK}[detector]
    history = History().extend((i, {"val_loss": HEALTHY[i], "train_loss": v}) for i, v in enumerate(bad))
    assert SYMPTOMS[detector]("val_loss").check(history) is None
    finding = SYMPTOMS[detector]("val_loss", metric="train_loss").check(history)
    assert finding is not None and finding.metric == "train_loss"


# -- parameters ------------------------------------------------------------------------------

@pytest.mark.parametrize("detector, params", [
    ("nonfinite_loss", {"max_abs": 0}),
    ("nonfinite_loss", {"max_abs": -1.0}),
    ("nonfinite_loss", {"max_abs": "big"}),
    ("diverging_loss", {"factor": 1.0}),
    ("diverging_loss", {"factor": 0.5}),
    ("diverging_loss", {"rising_steps": 1}),
    ("diverging_loss", {"min_rise": 0}),
    ("oscillating_loss", {"window": 2}),
    ("oscillating_loss", {"min_reversals": 0}),
    ("oscillating_loss", {"min_swing": 0}),
    ("plateau", {"window": 1}),
    ("plateau", {"min_improvement": -0.01}),
    ("plateau", {"converged_drop": 0}),
    ("plateau", {"converged_drop": 1.5}),
    ("plateau", {"window": "four"}),
    ("plateau", {"patience": 3}),
    ("diverging_loss", {"metric": 3}),
])
def test_invalid_params_raise_validation_error(detector, params):
    with pytest.raises(pydantic.ValidationError):
        SYMPTOMS[detector]("val_loss", **params)
    with pytest.raises(pydantic.ValidationError):
        build_detectors("val_loss", {detector: params})


def test_build_detectors_one_per_symptom_with_overrides():
    detectors = build_detectors("loss", {"plateau": {"window": 6, "metric": "train_loss"}})
    assert [d.name for d in detectors] == list(SYMPTOMS)
    by_name = {d.name: d for d in detectors}
    assert by_name["plateau"].params.window == 6
    assert by_name["plateau"].metric == "train_loss"
    assert by_name["diverging_loss"].metric == "loss"


@pytest.mark.parametrize("overrides, named", [
    ({"plateu": {}}, "plateu"),
    ({"nan_loss": {}, "plateau": {}}, "nan_loss"),
])
def test_build_detectors_rejects_unknown_symptoms(overrides, named):
    with pytest.raises(AutofixError) as info:
        build_detectors("val_loss", overrides)
    text = str(info.value)
    assert named in text
    assert "available: " + ", ".join(sorted(SYMPTOMS)) in text


# -- purity ----------------------------------------------------------------------------------

def test_core_modules_import_neither_torch_nor_ray():
    code = (
        "import sys\n"
        "import autofix.symptoms, autofix.actions, autofix.policy, autofix.engine\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"imported: {done.stdout} {done.stderr}"
    assert done.stdout.strip() == ""
