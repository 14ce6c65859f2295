"""Budgets hold across a resume: Tune's time_budget_s restarts on restore, autofix's does not."""

from __future__ import annotations

import time
import types

import pytest
from test_engine import config, engine

from autofix.rules.lineage import Outcome
from autofix.tune.controller import AutofixScheduler
from autofix.tune.resume import _budget_left_s


def rec(event: str, ts: float) -> dict:
    return {"event": event, "ts": ts}


@pytest.mark.parametrize("budget, records, left", [
    (None, [rec("run_started", 0), rec("finding", 50)], None),
    (100, [rec("run_started", 0), rec("finding", 30)], 70),
    # killed at 30; 1000 s dead; resumed and killed again 20 s later: 50 s spent in all
    (100, [rec("run_started", 0), rec("finding", 30), rec("run_resumed", 1030), rec("decision", 1050)], 50),
    (100, [rec("run_started", 0), rec("finding", 130)], 0),  # never below zero
    (100, [], 100),
])
def test_budget_left_counts_only_the_time_a_driver_was_alive(budget, records, left):
    assert _budget_left_s(budget, records) == left


def test_an_expired_budget_stops_running_attempts_and_launches_nothing():
    eng = engine(config(lr=1e-3), max_attempts=4)
    a0 = eng.suggest("t0")
    eng.observe("t0", 0, {"val_loss": 2.3, "epoch": 0})
    eng.expire("wall-clock budget spent")
    verdict = eng.observe("t0", 1, {"val_loss": 2.0, "epoch": 1})
    assert verdict.stop and a0.outcome == Outcome.STOPPED and a0.reason == "wall-clock budget spent"
    assert eng.done and eng.suggest("t1") is None


@pytest.mark.parametrize("deadline, stops", [(None, False), (time.time() + 3600, False), (time.time() - 1, True)])
def test_the_scheduler_enforces_a_resumed_runs_deadline(deadline, stops):
    eng = engine(config(lr=1e-3), max_attempts=4)
    eng.suggest("t0")
    eng.deadline = deadline
    scheduler = AutofixScheduler(eng)
    trial = types.SimpleNamespace(trial_id="t0", checkpoint=None)
    answer = scheduler.on_trial_result(None, trial, {"val_loss": 2.3, "epoch": 0, "training_iteration": 1})
    assert (answer == "STOP") is stops
    assert (eng.halted is not None) is stops
