"""Reports between epochs (autofix.harness.stepreports): the harness sends them at its cadence,
the engine keeps them out of the judged history and in the attempt's step series."""

from __future__ import annotations

import math
from typing import Any

import pytest

from autofix.harness.loop import run_training
from autofix.harness.stepreports import StepReporter
from autofix.judge.history import STEP_REPORT
from autofix.rules.detection import MAX_STEP_POINTS
from autofix.rules.engine import Engine, Plan
from autofix.rules.policy import load_policies
from autofix.symptoms import build_detectors

BLOBS = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
         "data": {"factory": "blobs", "args": {"n_samples": 600, "n_features": 4}},
         "optimizer": {"name": "sgd", "lr": 0.05}, "batch_size": 20, "epochs": 2, "seed": 0,
         "probes": {"enabled": False}}  # 480 training examples: 24 steps an epoch


@pytest.mark.parametrize("every, interval, ticks, expected", [
    pytest.param(10, 0.0, [0.0] * 35, [10, 20, 30], id="every-10-steps"),
    pytest.param(10, 5.0, [float(k) for k in range(1, 36)], [10, 20, 30], id="slow-steps-the-count-decides"),
    pytest.param(10, 5.0, [k * 0.1 for k in range(1, 36)], [], id="fast-steps-the-clock-decides"),
    pytest.param(1, 1.0, [k * 0.25 for k in range(1, 13)], [4, 8, 12], id="one-a-second"),
])
def test_a_report_needs_both_the_steps_and_the_seconds(every, interval, ticks, expected):
    now = [0.0]
    sent: list[dict[str, float]] = []
    reporter = StepReporter({"every_steps": every, "min_interval_s": interval}, sent.append, clock=lambda: now[0])
    for step, tick in enumerate(ticks, start=1):  # the clock reads `tick` seconds when step `step` ends
        now[0] = tick
        reporter.stepped(step, 100, 1.0 / step)
    assert [r["step"] for r in sent] == expected
    for r in sent:
        assert r[STEP_REPORT] == 1.0 and r["planned_steps"] == 100.0
        assert r["step_loss_max"] >= r["step_loss_mean"] > 0


def test_a_report_counts_nonfinite_losses_and_averages_the_rest():
    sent: list[dict[str, float]] = []
    reporter = StepReporter({"every_steps": 4, "min_interval_s": 0}, sent.append)
    for step, loss in enumerate([1.0, math.nan, 3.0, math.inf], start=1):
        reporter.stepped(step, None, loss)
    assert sent == [{STEP_REPORT: 1.0, "step": 4.0, "step_loss_mean": 2.0, "step_loss_max": 3.0,
                     "step_nonfinite": 2.0, "steps_in_report": 4.0}]


def test_the_harness_sends_step_reports_between_its_epoch_reports():
    epochs: list[dict[str, Any]] = []
    steps: list[dict[str, float]] = []
    cfg = {**BLOBS, "step_reports": {"every_steps": 10, "min_interval_s": 0}}
    run_training(cfg, lambda metrics, ckpt: epochs.append(metrics), step_report=steps.append)
    assert [r["step"] for r in steps] == [10.0, 20.0, 30.0, 40.0]  # 24 steps an epoch: reports span epochs
    assert all(STEP_REPORT not in r for r in epochs) and [r["epoch"] for r in epochs] == [0, 1, 2]
    assert all(r["planned_steps"] == 48.0 and math.isfinite(r["step_loss_mean"]) for r in steps)


def test_the_harness_sends_none_when_switched_off_or_without_a_receiver():
    steps: list[dict[str, float]] = []
    run_training({**BLOBS, "step_reports": {"enabled": False, "min_interval_s": 0}}, lambda m, c: None,
                 step_report=steps.append)
    run_training({**BLOBS, "step_reports": {"min_interval_s": 0, "every_steps": 1}}, lambda m, c: None)
    assert steps == []


def _engine() -> tuple[Engine, list[tuple[str, dict]]]:
    events: list[tuple[str, dict]] = []
    eng = Engine(Plan(config={"lr": 0.1}), build_detectors("val_loss"), load_policies(["builtin"]),
                 journal=lambda event, **data: events.append((event, data)))
    eng.suggest("t0")
    return eng, events


def test_the_engine_keeps_step_reports_out_of_the_judged_history():
    eng, events = _engine()
    eng.observe("t0", 0, {"val_loss": 2.3, "epoch": 0, "step": 0.0, "planned_steps": 100.0})
    for k in range(1, 6):  # a NaN step loss between epochs is shown, not judged (no nonfinite_loss)
        verdict = eng.observe("t0", k, {STEP_REPORT: 1.0, "step": 10.0 * k, "step_loss_mean": math.nan,
                                        "step_loss_max": math.nan})
        assert not verdict.stop
    a0 = eng.attempts["a0"]
    assert a0.history.iterations == [0] and a0.reports == 1 and not a0.findings
    assert [p[0] for p in a0.steps] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert [d["step"] for e, d in events if e == "step_report"] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert a0.to_dict()["steps"] == a0.steps  # report.json carries the series


def test_the_step_series_stays_bounded_and_keeps_the_recent_steps_dense():
    eng, _ = _engine()
    for k in range(1, 3 * MAX_STEP_POINTS):
        eng.observe("t0", k, {STEP_REPORT: 1.0, "step": float(k), "step_loss_mean": 1.0, "step_loss_max": 1.0})
    steps = [p[0] for p in eng.attempts["a0"].steps]
    assert len(steps) <= MAX_STEP_POINTS and steps == sorted(steps) and steps[-1] == 3 * MAX_STEP_POINTS - 1
    assert steps[-10:] == [float(k) for k in range(3 * MAX_STEP_POINTS - 10, 3 * MAX_STEP_POINTS)]


def test_the_headline_says_a_healthy_run_was_rewound_in_place():
    from autofix.reports.reporting import AttemptReport, Report

    def report(rewinds: float | None) -> Report:
        last = {"val_loss": 0.5} | ({"rewinds": rewinds} if rewinds is not None else {})
        a0 = AttemptReport(id="a0", parent=None, trial_id="t", config={}, patch=[], policy=None, start="cold",
                           findings=[], decision=None, outcome="healthy", reason="", error=None, improvement=0.8,
                           series=[(0, 2.5), (3, 0.5)], last_metrics=last)
        return Report(status="healthy", winner="a0", name="x", metric="val_loss", mode="min", min_drop=0.3,
                      output="o", duration_s=1.0, ended_because="settled", attempts=[a0])

    assert "spike guard answered 6 loss spike(s) in place" in report(6.0).summary()
    assert "the run left alone needs no fix" in report(0.0).summary() and "rewound" not in report(None).summary()


@pytest.mark.parametrize("step, steps, planned, shown", [
    pytest.param(120.0, 50.0, 1000.0, True, id="crosses-10pct"),
    pytest.param(150.0, 25.0, 1000.0, False, id="inside-one-tenth"),
    pytest.param(1000.0, 60.0, 1000.0, True, id="the-end"),
    pytest.param(120.0, 50.0, None, False, id="no-plan-no-line"),
])
def test_the_live_view_prints_a_step_report_each_tenth_of_the_plan(step, steps, planned, shown):
    from autofix.reports.progress import event_line

    line = event_line({"event": "step_report", "attempt": "a0", "step": step, "steps": steps, "planned": planned,
                       "loss_mean": 0.4321, "loss_max": 0.9})
    assert (line is not None) is shown
    if shown:
        assert f"step {step:g}/{planned:g}: training loss 0.4321 (mean of the last {steps:g} steps)" in line


def test_a_custom_trainable_builds_its_step_reporter_with_the_harness_defaults():
    import autofix

    reporter = autofix.step_reporter()
    assert (reporter.every, reporter.interval) == (50, 2.0)
    assert (autofix.step_reporter(10, 0.5).every, autofix.step_reporter(10, 0.5).interval) == (10, 0.5)


@pytest.mark.parametrize("restored, expected", [
    (1.0, "] rewound a loss spike: step 700 -> 650 (1 so far, 50 steps given back)"),
    (0.0, "] skipped a loss spike's batch at step 700, weights sound (1 so far, 50 steps given back)"),
    (None, "] rewound a loss spike: step 700 -> 650 (1 so far, 50 steps given back)"),  # a journal of before
])
def test_the_live_view_says_whether_a_spike_was_rewound_or_its_batch_skipped(restored, expected):
    from autofix.reports.progress import event_line

    record = {"event": "rewind", "attempt": "a0", "rewinds": 1.0, "from_step": 700.0, "to_step": 650.0,
              "rewound_steps": 50.0, "restored": restored}
    assert event_line(record).endswith(expected)


def test_extra_numbers_are_asked_for_only_when_a_report_is_sent():
    sent: list[dict[str, float]] = []
    asked: list[int] = []
    reporter = StepReporter({"every_steps": 5, "min_interval_s": 0}, sent.append)
    for step in range(1, 11):
        reporter.stepped(step, None, 1.0, lambda at=step: asked.append(at) or {"rewinds": 2.0})
    assert asked == [5, 10] and [r["rewinds"] for r in sent] == [2.0, 2.0]
