"""Why a run ended, truly: the end reason names what happened (autofix/rules/ending.py), and an attempt
that ends unhealthy with no symptom is slow progress, which the shipped policies answer.

The engine is driven as Tune drives it (suggest / observe / complete) with the digits runs'
shape: 23 optimizer steps per report, 345 planned (report 15 is the planned end).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autofix.rules.ending import ended_because, interrupted_because
from autofix.rules.engine import Engine, Plan
from autofix.rules.lineage import Outcome
from autofix.rules.policy import SHIPPED_POLICIES, load_policies
from autofix.spec.schema import BudgetSpec
from autofix.symptoms import build_detectors

SPR, PLANNED = 23, 345
SLOW = [2.3 - 0.033 * i for i in range(16)]  # down 21.5% at its planned end: no other symptom
STUCK = [float(x) for x in "2.305 2.541 2.366 2.336 2.367 2.385 2.359 2.381 2.369 2.384 2.421 2.384 2.332 2.329 "
                           "2.363 2.442".split()]


def _engine(lr: float, max_attempts: int = 6, policies: list[str] | None = None) -> Engine:
    config = {"optimizer": {"name": "adam", "lr": lr}, "scheduler": None, "epochs": 15}
    plan = Plan(config=config, max_attempts=max_attempts)
    files = [str(SHIPPED_POLICIES / p) for p in policies] if policies else ["builtin"]
    return Engine(plan, build_detectors("val_loss"), load_policies(files))


def _attempt(eng: Engine, series: list[float], error: str | None = None, planned: float | None = PLANNED) -> str:
    """Run the next queued attempt over ``series`` (until the engine stops it), then complete it."""
    trial = f"t{len(eng.by_trial)}"
    attempt = eng.suggest(trial)
    assert attempt is not None, "nothing queued"
    for i, value in enumerate(series):
        row = {"val_loss": value, "epoch": i, "step": float(i * SPR)}
        if planned is not None:
            row["planned_steps"] = planned
        if eng.observe(trial, i, row).stop:
            break
    eng.complete(trial, error=error, log="/run/tune/a0-x/error.txt" if error else None)
    return attempt.id


def _until_done(eng: Engine, series: list[float], **kw: Any) -> None:
    while not eng.done and eng.queue:
        _attempt(eng, series, **kw)


def trial_raises(eng: Engine) -> None:
    _attempt(eng, SLOW[:3], error="Traceback (most recent call last):\nValueError: boom")


def slow_until_policies_run_out(eng: Engine) -> None:
    _until_done(eng, SLOW)


def slow_without_a_policy(eng: Engine) -> None:
    _attempt(eng, SLOW)


def reserve_keeps_the_last_attempt(eng: Engine) -> None:
    _attempt(eng, STUCK)


def no_attempt_left_for_the_fix(eng: Engine) -> None:
    _attempt(eng, [2.3, 1.9, math.nan])


# (scenario, lr, max_attempts, policy files, attempts launched, the end reason says)
ROWS = [
    pytest.param(trial_raises, 1e-3, 6, None, ["a0"],
                 "a0 failed (the trial raised: ValueError: boom): an error in the training code is not a training "
                 "symptom, so no policy answers it", id="error"),
    pytest.param(slow_until_policies_run_out, 1e-3, 6, ["progress.yaml"], ["a0", "a1", "a2"],
                 "slow_progress: policy 'slow-progress' had no remedy left in this lineage", id="remedies-spent"),
    pytest.param(slow_without_a_policy, 1e-3, 6, ["loss.yaml"], ["a0"],
                 "a0 ended unhealthy (val_loss fell 21.5% from its first report (needed 30%); still active: "
                 "slow_progress); no enabled policy answers slow_progress", id="no-policy-answers"),
    pytest.param(reserve_keeps_the_last_attempt, 1.0, 2, None, ["a0"],
                 "a0 kept training to its end: policies 'plateau-high-lr', 'plateau-fallback', 'slow-progress' had a "
                 "remedy, but max_attempts=2 left no attempt for a fix beside the one kept in reserve to continue a0",
                 id="budget-reserve"),
    pytest.param(no_attempt_left_for_the_fix, 1e-2, 1, None, ["a0"],
                 "max_attempts=1 reached: a0's nonfinite_loss had a remedy (policy 'nonfinite-lower-lr') but no "
                 "attempt was left to launch it", id="budget-spent"),
]


@pytest.mark.parametrize("scenario, lr, max_attempts, files, launched, says", ROWS)
def test_the_end_reason_names_what_happened(scenario: Callable, lr, max_attempts, files, launched, says):
    eng = _engine(lr, max_attempts, files)
    scenario(eng)
    assert eng.done
    assert [a.id for a in eng.attempts.values() if a.trial_id] == launched
    reason = ended_because(eng, BudgetSpec(max_attempts=max_attempts, wall_clock_s=None), elapsed=1.0)
    assert says in reason, reason
    assert "no policy had a remedy left for the last attempt" not in reason


def test_budget_ends_and_signals_name_themselves():
    eng = _engine(1e-3)
    _attempt(eng, SLOW[:4])  # still queued: a child of slow progress
    assert ended_because(eng, BudgetSpec(wall_clock_s=60), elapsed=61.0) == "wall-clock budget of 60 s spent"
    assert ended_because(eng, BudgetSpec(wall_clock_s=None), elapsed=61.0).startswith("max_attempts=6 reached: a1")
    assert interrupted_because("SIGTERM", "autofix resume /r") == (
        "interrupted by SIGTERM: the trials were stopped at their last checkpoint; continue with: autofix resume /r")
    assert "nothing to resume" in interrupted_because("SIGINT", None)


def test_an_attempt_ending_unhealthy_without_a_symptom_is_answered():
    """The reported case: a0's NaN is fixed by a lower rate, a1 then learns too slowly and ends with
    no symptom; the run used to stop there after 2 of 6 attempts. Now a1's end is slow progress
    and the LR policy launches a2."""
    eng = _engine(1e-2)
    assert _attempt(eng, [2.3, 1.9, math.nan]) == "a0"
    assert eng.attempts["a1"].config["optimizer"]["lr"] == pytest.approx(1e-3)
    assert _attempt(eng, SLOW) == "a1"
    a1 = eng.attempts["a1"]
    assert a1.outcome == Outcome.SICK and a1.decision.finding.symptom == "slow_progress"
    assert a1.decision.policy == "slow-progress" and a1.decision.child == "a2"
    assert eng.attempts["a2"].config["optimizer"]["lr"] == pytest.approx(3e-3)
    assert not eng.done and eng.queue == ["a2"]


@pytest.mark.parametrize("planned, found_at", [
    pytest.param(PLANNED, 15, id="planned-end-reached: found at the last report"),
    pytest.param(None, 15, id="no-plan-reported: found when the attempt ends"),
    pytest.param(PLANNED * 2, 15, id="stopped-before-its-plan: found when the attempt ends"),
])
def test_slow_progress_is_found_at_the_end_with_or_without_a_plan(planned, found_at):
    eng = _engine(1e-4, policies=["progress.yaml"])
    _attempt(eng, SLOW, planned=planned)
    a0 = eng.attempts["a0"]
    assert [(f.symptom, f.iteration) for f in a0.findings] == [("slow_progress", found_at)]
    assert a0.decision.policy == "slow-progress-low-lr" and eng.queue == ["a1"]


def test_a_healthy_end_is_not_slow_progress():
    eng = _engine(1e-4)
    _attempt(eng, [2.3 * 0.95 ** i for i in range(16)])  # down 54%
    assert eng.attempts["a0"].outcome == Outcome.HEALTHY and eng.attempts["a0"].findings == []


def test_the_shipped_progress_policies_exist_for_the_symptom():
    names = [p.name for p in load_policies([str(Path(SHIPPED_POLICIES, "progress.yaml"))])]
    assert names == ["slow-progress-low-lr", "slow-progress-low-lr-sgd", "slow-progress"]
