"""The engine driven as Tune would drive it (suggest / observe / complete), with plain objects."""

from __future__ import annotations

import copy
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest

from autofix.engine import Engine, Plan
from autofix.lineage import Outcome
from autofix.policy import load_policies
from autofix.symptoms import build_detectors


def curve(text: str) -> list[float]:
    return [float(x) for x in text.split()]


HEALTHY = curve("2.305 2.096 1.297 .568 .388 .295 .248 .242 .186 .207 .167 .191 .144 .131 .135 .173")
STUCK = curve("2.305 2.541 2.366 2.336 2.367 2.385 2.359 2.381 2.369 2.384 2.421 2.384 2.332 2.329 2.363 2.442")
SGD_SLOW = curve("2.305 2.304 2.302 2.301 2.299 2.298 2.296 2.295 2.293 2.292 2.290 2.289 2.287 2.285 2.283 2.280")
ADAM_TINY = curve("2.305 2.304 2.303 2.302 2.301 2.300 2.299 2.298 2.296 2.295 2.294 2.293 2.292 2.290 2.289 2.287")
SPIKE = [2.3, 2.0, 4.7, 5.0]
NAN_AT_3 = [2.3, 1.9, 1.5, math.nan, 1.2]
OSCILLATION = [2.3, 1.5, 2.2, 1.4, 2.1, 1.3, 2.0, 1.2]
ALWAYS_NAN = [math.nan] * 8


def config(lr: float = 1.0, name: str = "adam", **extra: Any) -> dict[str, Any]:
    """A managed-training config, as the spec dumps it."""
    return {"optimizer": {"name": name, "lr": lr}, "scheduler": None, "batch_size": 64, "epochs": 16, **extra}


class Journal:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **data: Any) -> None:
        self.events.append((event, copy.deepcopy(data)))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]


def engine(cfg: dict | None = None, max_attempts: int = 6, policies=None, journal=None, **plan: Any) -> Engine:
    fields = {"metric": "val_loss", "loss_metric": "val_loss", "max_attempts": max_attempts, **plan}
    plan_ = Plan(config=cfg if cfg is not None else config(), **fields)
    return Engine(plan_, build_detectors("val_loss"), policies if policies is not None else load_policies(["builtin"]),
                  journal)


def policies_from(tmp_path: Path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text("version: 1\npolicies:\n" + textwrap.indent(textwrap.dedent(text), "  "))
    return load_policies([path])


def run_attempt(eng: Engine, trial_id: str, series: list[float], complete: bool = True):
    """Suggest, feed ``series`` until the engine says stop, then complete. Returns (attempt, stop iteration)."""
    attempt = eng.suggest(trial_id)
    assert attempt is not None
    stopped = None
    for i, value in enumerate(series):
        if eng.observe(trial_id, i, {"val_loss": value, "epoch": i}).stop:
            stopped = i
            break
    if complete:
        eng.complete(trial_id)
    return attempt, stopped


# -- the measured curves with the shipped policies -------------------------------------------

def test_stuck_curve_stops_a0_and_queues_a1_with_lower_lr():
    eng = engine(config(lr=1.0))
    a0, stopped = run_attempt(eng, "t0", STUCK)
    assert stopped == 5  # plateau from report 4, plateau-high-lr needs 2 reports
    assert a0.outcome == Outcome.SICK
    assert a0.config["optimizer"]["lr"] == 1.0, "the parent's config stays as it ran"
    decision = a0.decision
    assert decision.policy == "plateau-high-lr"
    assert decision.finding.symptom == "plateau" and decision.finding.iteration == 5
    assert decision.child == "a1"
    assert [c.to_dict() for c in decision.patch] == [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}]
    assert "plateau" in decision.reason and "'plateau-high-lr'" in decision.reason and "a1" in decision.reason
    assert a0.reason == decision.reason
    assert [f.symptom for f in a0.findings] == ["plateau"] and a0.findings[0].iteration == 4
    assert eng.queue == ["a1"]
    a1 = eng.attempts["a1"]
    assert a1.parent == "a0" and a1.policy == "plateau-high-lr" and a1.outcome == Outcome.QUEUED
    assert a1.config == config(lr=0.1)
    assert [c.to_dict() for c in a1.patch] == [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}]
    assert not eng.done
    assert eng.suggest("t1") is a1 and a1.trial_id == "t1" and a1.outcome == Outcome.RUNNING


def test_healthy_curve_wins_without_a_child():
    eng = engine(config(lr=1e-3))
    a0, stopped = run_attempt(eng, "t0", HEALTHY)
    assert stopped is None
    assert a0.outcome == Outcome.HEALTHY and a0.findings == [] and a0.decision is None
    assert eng.winner == "a0"
    assert eng.queue == [] and list(eng.attempts) == ["a0"]
    assert eng.done and eng.suggest("t1") is None
    assert eng.improvement(a0) == pytest.approx((2.305 - 0.173) / 2.305)


@pytest.mark.parametrize("cfg, series, stop_at, policy, patch", [
    pytest.param(config(lr=1e-3), NAN_AT_3, 3, "nonfinite-lower-lr",
                 [{"path": "optimizer.lr", "from": 1e-3, "to": 1e-4}], id="nan-stops-immediately"),
    pytest.param(config(lr=1e-3), [math.inf], 0, "nonfinite-lower-lr",
                 [{"path": "optimizer.lr", "from": 1e-3, "to": 1e-4}], id="inf-on-first-report"),
    pytest.param(config(lr=1e-3), SPIKE, 2, "diverging-lower-lr",
                 [{"path": "optimizer.lr", "from": 1e-3, "to": 1e-4}], id="spike"),
    pytest.param(config(lr=0.05), OSCILLATION, 5, "oscillating-lower-lr",
                 [{"path": "optimizer.lr", "from": 0.05, "to": 0.005}], id="oscillation-for-2-reports"),
    pytest.param(config(lr=1.0), STUCK, 5, "plateau-high-lr",
                 [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}], id="stuck-adam-lr1"),
    pytest.param(config(lr=1e-5), ADAM_TINY, 5, "plateau-low-lr",
                 [{"path": "optimizer.lr", "from": 1e-5, "to": 1e-4}], id="adam-lr1e-5"),
    pytest.param(config(lr=0.01, name="sgd"), SGD_SLOW, 6, "plateau-fallback",
                 [{"path": "scheduler", "from": None,
                   "to": {"name": "reduce_on_plateau", "kwargs": {"factor": 0.2, "patience": 5}}}],
                 id="sgd-too-slow-fallback-for-3-reports"),
    pytest.param(config(lr=1.0, name="SGD"), STUCK, 5, "plateau-high-lr-sgd",
                 [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}], id="stuck-sgd-case-insensitive"),
])
def test_first_decision_with_shipped_policies(cfg, series, stop_at, policy, patch):
    eng = engine(cfg)
    a0, stopped = run_attempt(eng, "t0", series)
    assert stopped == stop_at
    assert a0.outcome == Outcome.SICK
    assert a0.decision.policy == policy
    assert [c.to_dict() for c in a0.decision.patch] == patch
    assert eng.queue == ["a1"]
    assert [c.to_dict() for c in eng.attempts["a1"].patch] == patch


# -- for_steps, cooldown ---------------------------------------------------------------------

@pytest.mark.parametrize("for_steps, stop_at", [(1, 4), (2, 5), (3, 6), (5, 8)])
def test_for_steps_is_respected(tmp_path, for_steps, stop_at):
    pols = policies_from(tmp_path, f"""\
        - name: lower
          when: {{symptom: plateau}}
          for_steps: {for_steps}
          then: [{{action: scale, path: optimizer.lr, factor: 0.1}}]
        """)
    eng = engine(config(lr=1.0), policies=pols)
    eng.suggest("t0")
    verdicts = [eng.observe("t0", i, {"val_loss": v}).stop for i, v in enumerate(STUCK[: stop_at + 1])]
    assert verdicts == [False] * stop_at + [True]
    assert eng.attempts["a0"].decision.reason.startswith(f"plateau held {for_steps} report(s)")


def test_a_break_in_the_symptom_resets_the_streak(tmp_path):
    pols = policies_from(tmp_path, """\
        - name: lower
          when: {symptom: nonfinite_loss}
          for_steps: 2
          then: [{action: scale, path: optimizer.lr, factor: 0.1}]
        """)
    eng = engine(config(lr=1.0), policies=pols)
    eng.suggest("t0")
    series = [2.3, math.nan, 2.2, math.nan, 2.1, math.nan, math.nan]
    assert [eng.observe("t0", i, {"val_loss": v}).stop for i, v in enumerate(series)] == [False] * 6 + [True]


@pytest.mark.parametrize("cooldown, child_stop_at", [(0, 0), (2, 2), (3, 3)])
def test_cooldown_delays_the_same_policy_on_the_child(tmp_path, cooldown, child_stop_at):
    pols = policies_from(tmp_path, f"""\
        - name: lower
          when: {{symptom: nonfinite_loss}}
          cooldown_steps: {cooldown}
          then: [{{action: scale, path: optimizer.lr, factor: 0.1, times: 3}}]
        """)
    eng = engine(config(lr=1.0), policies=pols)
    _, a0_stop = run_attempt(eng, "t0", ALWAYS_NAN)
    _, a1_stop = run_attempt(eng, "t1", ALWAYS_NAN)
    assert (a0_stop, a1_stop) == (0, child_stop_at)


# -- budgets and bounds ----------------------------------------------------------------------

@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_max_attempts_is_enforced(max_attempts):
    journal = Journal()
    eng = engine(config(lr=1.0), max_attempts=max_attempts, journal=journal)
    launched = []
    for t in range(max_attempts + 2):
        attempt = eng.suggest(f"t{t}")
        if attempt is None:
            break
        launched.append(attempt.id)
        for i, v in enumerate(STUCK):
            if eng.observe(f"t{t}", i, {"val_loss": v}).stop:
                break
        eng.complete(f"t{t}")
    assert launched == [f"a{i}" for i in range(max_attempts)]
    assert eng.done and eng.queue == [] and eng.winner is None
    last = eng.attempts[launched[-1]]
    assert last.outcome == Outcome.SICK and last.decision.child is None
    assert "no attempt left in the budget" in last.reason
    assert journal.names().count("attempt_launched") == max_attempts
    assert len(eng.attempts) == max_attempts


def test_done_tracks_running_and_queued_attempts():
    eng = engine(config(lr=1.0), max_attempts=2)
    assert not eng.done  # a0 queued
    eng.suggest("t0")
    assert not eng.done and eng.running == ["a0"]
    assert eng.suggest("t-extra") is None, "one queued attempt, already launched"
    for i, v in enumerate(STUCK[:6]):
        eng.observe("t0", i, {"val_loss": v})
    assert eng.running == [] and eng.queue == ["a1"] and not eng.done
    eng.suggest("t1")
    assert not eng.done
    eng.complete("t1", error="RuntimeError: CUDA out of memory")
    assert eng.done


def test_no_config_is_launched_twice_skipped_candidate_is_recorded(tmp_path):
    pols = policies_from(tmp_path, """\
        - name: raise-lr
          when: {symptom: plateau}
          then: [{action: scale, path: optimizer.lr, factor: 10}]
        - name: lower-lr
          when: {symptom: diverging_loss}
          priority: 10
          then:
            - {action: scale, path: optimizer.lr, factor: 0.1}
            - {action: add_scheduler, kind: reduce_on_plateau}
        """)
    eng = engine(config(lr=0.01), policies=pols)
    a0, _ = run_attempt(eng, "t0", STUCK)
    assert a0.decision.policy == "raise-lr" and eng.attempts["a1"].config["optimizer"]["lr"] == 0.1
    a1, stopped = run_attempt(eng, "t1", SPIKE)
    assert stopped == 2
    decision = a1.decision
    assert decision.policy == "lower-lr"
    assert decision.skipped == ["scale(path=optimizer.lr, factor=0.1): that config already ran as a0"]
    assert decision.action.startswith("add_scheduler(")
    a2 = eng.attempts["a2"]
    assert a2.config["optimizer"]["lr"] == 0.1 and a2.config["scheduler"]["name"] == "reduce_on_plateau"
    configs = [json.dumps(a.config, sort_keys=True) for a in eng.attempts.values()]
    assert len(configs) == len(set(configs))


def test_no_config_is_launched_twice_exhausted_policy_ends_the_lineage(tmp_path):
    pols = policies_from(tmp_path, """\
        - name: raise-lr
          when: {symptom: plateau}
          then: [{action: scale, path: optimizer.lr, factor: 10}]
        - name: lower-lr
          when: {symptom: diverging_loss}
          then: [{action: scale, path: optimizer.lr, factor: 0.1, times: 2}]
        """)
    journal = Journal()
    eng = engine(config(lr=0.01), policies=pols, journal=journal)
    run_attempt(eng, "t0", STUCK)
    a1, stopped = run_attempt(eng, "t1", SPIKE)
    assert stopped is None, "no new config to try, so nothing to stop for"
    assert a1.decision is None and a1.outcome == Outcome.UNHEALTHY
    assert "still active: diverging_loss" in a1.reason
    exhausted = [d for e, d in journal.events if e == "policy_exhausted"]
    assert exhausted == [{"attempt": "a1", "policy": "lower-lr",
                          "skipped": ["scale(path=optimizer.lr, factor=0.1): that config already ran as a0"] * 2}]
    assert eng.queue == [] and eng.done and list(eng.attempts) == ["a0", "a1"]


@pytest.mark.parametrize("action, max_fires, attempts", [
    pytest.param("{action: scale, path: optimizer.lr, factor: 0.5, times: 5}", 2, 3, id="max_fires-2"),
    pytest.param("{action: scale, path: optimizer.lr, factor: 0.5, times: 2}", None, 3, id="times-2"),
    pytest.param("{action: scale, path: optimizer.lr, factor: 0.5}", None, 2, id="times-1"),
    pytest.param("{action: scale, path: optimizer.lr, factor: 0.5, times: 4}", None, 5, id="times-4"),
    pytest.param("{action: scale, path: optimizer.lr, factor: 0.5, min: 0.2, times: 9}", None, 4,
                 id="bound-reached-after-3"),
])
def test_fires_per_lineage_are_bounded(tmp_path, action, max_fires, attempts):
    limit = f"max_fires: {max_fires}" if max_fires else ""
    pols = policies_from(tmp_path, f"""\
        - name: lower
          when: {{symptom: plateau}}
          {limit}
          then: [{action}]
        """)
    eng = engine(config(lr=1.0), max_attempts=20, policies=pols)
    t = 0
    while (attempt := eng.suggest(f"t{t}")) is not None:
        for i, v in enumerate(STUCK):
            if eng.observe(f"t{t}", i, {"val_loss": v}).stop:
                break
        eng.complete(f"t{t}")
        t += 1
    assert len(eng.attempts) == attempts
    assert eng.done
    last = eng.attempts[f"a{attempts - 1}"]
    assert last.outcome == Outcome.UNHEALTHY and last.decision is None
    assert [a.outcome for a in eng.attempts.values()] == [Outcome.SICK] * (attempts - 1) + [Outcome.UNHEALTHY]


# -- errors, outcomes ------------------------------------------------------------------------

@pytest.mark.parametrize("plan, reports, message", [
    pytest.param({}, [{"loss": 2.3, "epoch": 0}], "report has no metric 'val_loss'; it reported: epoch, loss",
                 id="missing-first-report"),
    pytest.param({}, [{"val_loss": 2.3}, {"train_loss": 2.0, "time_this_iter_s": 1.0}],
                 "report has no metric 'val_loss'; it reported: train_loss", id="missing-later-report"),
    pytest.param({}, [{}], "report has no metric 'val_loss'; it reported: nothing", id="empty-report"),
    pytest.param({}, [{"val_loss": "2.3"}], "metric 'val_loss' must be a number, got '2.3'", id="string-value"),
    pytest.param({"metric": "val_accuracy", "mode": "max"}, [{"val_loss": 2.3}],
                 "report has no metric 'val_accuracy'; it reported: val_loss", id="missing-score-metric"),
])
def test_report_missing_the_watched_metric_is_an_error(plan, reports, message):
    journal = Journal()
    eng = engine(config(lr=1e-3), journal=journal, **plan)
    attempt = eng.suggest("t0")
    verdicts = [eng.observe("t0", i, r) for i, r in enumerate(reports)]
    assert [v.stop for v in verdicts] == [False] * (len(reports) - 1) + [True]
    assert verdicts[-1].reason == message
    assert attempt.outcome == Outcome.ERROR and attempt.reason == message
    assert eng.queue == [] and eng.done
    eng.complete("t0")
    assert attempt.outcome == Outcome.ERROR, "complete after the stop changes nothing"
    assert journal.names().count("attempt_finished") == 1


@pytest.mark.parametrize("error, reason", [
    ("Traceback (most recent call last):\n  File \"train.py\", line 3\nValueError: boom\n",
     "the trial raised: ValueError: boom"),
    ("ValueError: boom", "the trial raised: ValueError: boom"),
])
def test_trial_error_is_recorded_and_queues_nothing(error, reason):
    eng = engine(config(lr=1.0))
    attempt = eng.suggest("t0")
    for i, v in enumerate(STUCK[:3]):
        eng.observe("t0", i, {"val_loss": v})
    eng.complete("t0", error=error)
    assert attempt.outcome == Outcome.ERROR
    assert attempt.reason == reason and attempt.error == error
    assert eng.queue == [] and list(eng.attempts) == ["a0"] and eng.done and eng.winner is None


@pytest.mark.parametrize("series, plan, outcome, text", [
    pytest.param([2.305, 2.2, 2.1, 2.0], {}, Outcome.UNHEALTHY, "(needed 30%)", id="too-little-drop"),
    pytest.param(HEALTHY, {"min_drop": 0.95}, Outcome.UNHEALTHY, "(needed 95%)", id="healthy-curve-strict-bar"),
    pytest.param([2.3], {}, Outcome.UNHEALTHY, "no finite first and last value", id="single-report"),
    pytest.param(HEALTHY[:4], {}, Outcome.HEALTHY, "fell 75.4%", id="short-but-healthy"),
])
def test_end_of_epochs_outcome(series, plan, outcome, text):
    eng = engine(config(lr=1e-3), **plan)
    attempt, stopped = run_attempt(eng, "t0", series)
    assert stopped is None
    assert attempt.outcome == outcome and text in attempt.reason
    assert eng.queue == []


@pytest.mark.parametrize("replayed", [[4], [3, 4]])
def test_replayed_reports_do_not_advance_for_steps(replayed):
    eng = engine(config(lr=1.0))
    eng.suggest("t0")
    for i, v in enumerate(STUCK[:5]):  # plateau seen once, at report 4
        assert not eng.observe("t0", i, {"val_loss": v}).stop
    verdicts = [eng.observe("t0", i, {"val_loss": STUCK[i]}).stop for i in replayed]
    assert verdicts == [False] * len(replayed)
    assert eng.attempts["a0"].outcome == Outcome.RUNNING


def test_symptom_still_pending_at_the_end_fires_there():
    """A plateau seen once (for_steps 2 not reached) still answers when the trial ends."""
    eng = engine(config(lr=1.0))
    attempt, stopped = run_attempt(eng, "t0", STUCK[:5])
    assert stopped is None
    assert attempt.outcome == Outcome.SICK
    assert attempt.decision.policy == "plateau-high-lr"
    assert "at the end of the attempt" in attempt.reason
    assert eng.queue == ["a1"]


def test_max_epochs_stops_a_running_attempt():
    eng = engine(config(lr=1e-3), max_epochs=3)
    eng.suggest("t0")
    stops = [eng.observe("t0", i, {"val_loss": v, "epoch": i}).stop for i, v in enumerate(HEALTHY[:4])]
    assert stops == [False, False, False, True]


def test_custom_trainable_through_aliases():
    eng = engine({"lr": 1.0, "epochs": 16}, aliases={"optimizer.lr": "lr"})
    a0, stopped = run_attempt(eng, "t0", STUCK)
    assert stopped == 5 and a0.decision.policy == "plateau-high-lr"  # optimizer.name missing: passes not_in
    assert eng.attempts["a1"].config == {"lr": 0.1, "epochs": 16}
    assert [c.to_dict() for c in a0.decision.patch] == [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}]


def test_inapplicable_candidate_is_skipped_with_its_reason():
    eng = engine({"optimizer": {"name": "sgd", "lr": 0.01}, "epochs": 16})  # a custom trainable: no scheduler key
    a0, stopped = run_attempt(eng, "t0", SGD_SLOW)
    assert stopped == 6 and a0.decision.policy == "plateau-fallback"
    assert len(a0.decision.skipped) == 1
    assert a0.decision.skipped[0].startswith("add_scheduler(") and "knobs" in a0.decision.skipped[0]
    assert eng.attempts["a1"].config == {"optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 16}


LATE = curve("2.305 1.297 .568 .388 .295 .248 .242 .186 .9 2.5 6.0 9.0 12.0")


@pytest.mark.parametrize("series, symptom, start, warm_from", [
    # Healthy (val_loss down >= 30%) until report 7, diverging from 8: resume from report 7's state.
    (LATE, "diverging_loss", "warm", "ckpt-7"),
    # Stuck from the start: no checkpoint was ever healthy, so the child starts cold.
    (STUCK, "plateau", "cold", None),
])
def test_warm_start_resumes_from_the_last_healthy_checkpoint_before_the_onset(tmp_path, series, symptom, start,
                                                                             warm_from):
    pols = policies_from(tmp_path, f"""\
        - name: lower
          when: {{symptom: {symptom}}}
          then: [{{action: scale, path: optimizer.lr, factor: 0.1, start: warm}}]
        """)
    eng = engine(config(lr=1.0), policies=pols)
    eng.suggest("t0")
    for i, v in enumerate(series):
        # Tune shows the checkpoint saved with the previous report.
        if eng.observe("t0", i, {"val_loss": v}, checkpoint=f"ckpt-{i - 1}" if i else None).stop:
            break
    child = eng.attempts["a1"]
    assert (child.start, child.warm_from) == (start, warm_from)
    if warm_from:  # the warm child continues its parent's curve up to the checkpoint
        assert max(child.history.rows()) == 7


# -- journal ---------------------------------------------------------------------------------

def test_journal_receives_every_event():
    journal = Journal()
    eng = engine(config(lr=1.0), journal=journal)
    run_attempt(eng, "t0", STUCK)
    run_attempt(eng, "t1", HEALTHY)
    assert journal.names() == [
        "attempt_launched", "finding", "decision", "attempt_finished",
        "attempt_launched", "attempt_finished",
    ]
    launched, finding, decision, finished, launched1, finished1 = (d for _, d in journal.events)
    assert launched == {"attempt": "a0", "parent": None, "trial_id": "t0", "start": "cold", "patch": []}
    assert finding["attempt"] == "a0" and finding["symptom"] == "plateau" and finding["iteration"] == 4
    assert finding["metric"] == "val_loss" and finding["reason"] and finding["evidence"]
    assert decision["attempt"] == "a0" and decision["policy"] == "plateau-high-lr" and decision["child"] == "a1"
    assert decision["patch"] == [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}]
    assert finished["attempt"] == "a0" and finished["outcome"] == Outcome.SICK and finished["reason"]
    assert launched1["parent"] == "a0" and launched1["patch"] == decision["patch"]
    assert finished1["outcome"] == Outcome.HEALTHY and finished1["improvement"] == pytest.approx(0.925, abs=1e-3)
    json.dumps(journal.events)  # events are plain data


# -- resumable state -------------------------------------------------------------------------

def _continue(eng: Engine, journal: Journal, steps: list[tuple]) -> list[Any]:
    """Apply a script of Tune events; return what the engine answered."""
    out: list[Any] = []
    for step in steps:
        if step[0] == "suggest":
            a = eng.suggest(step[1])
            out.append(a and a.id)
        elif step[0] == "observe":
            out.append(eng.observe(step[1], step[2], step[3]))
        else:
            out.append(eng.complete(step[1]))
    return out


def _observe_all(trial: str, series: list[float], start: int = 0) -> list[tuple]:
    return [("observe", trial, start + i, {"val_loss": v, "epoch": start + i}) for i, v in enumerate(series)]


SCRIPT = (
    [("suggest", "t0")] + _observe_all("t0", STUCK[:6]) + [("complete", "t0")]
    + [("suggest", "t1")] + _observe_all("t1", STUCK[:6]) + [("complete", "t1")]
    + [("suggest", "t2")] + _observe_all("t2", HEALTHY) + [("complete", "t2"), ("suggest", "t3")]
)


@pytest.mark.parametrize("cut", [0, 1, 4, 8, 9, 12, 17, 20, len(SCRIPT)])
def test_state_dict_round_trip_continues_identically(cut):
    j1, j2 = Journal(), Journal()
    original = engine(config(lr=1.0), max_attempts=4, journal=j1)
    _continue(original, j1, SCRIPT[:cut])
    state = json.loads(json.dumps(original.state_dict()))
    resumed = engine(config(lr=1.0), max_attempts=4, journal=j2)
    resumed.load_state_dict(state)
    assert json.loads(json.dumps(resumed.state_dict())) == state
    assert resumed.done == original.done and resumed.running == original.running
    j1.events.clear()
    answers1 = _continue(original, j1, SCRIPT[cut:])
    answers2 = _continue(resumed, j2, SCRIPT[cut:])
    assert answers2 == answers1
    assert j2.events == j1.events
    assert json.loads(json.dumps(resumed.state_dict())) == json.loads(json.dumps(original.state_dict()))
    assert original.winner == "a2" and original.done


def test_full_run_lineage():
    eng = engine(config(lr=1.0), max_attempts=4)
    _continue(eng, Journal(), SCRIPT)
    assert {a.id: (a.parent, a.outcome, a.config["optimizer"]["lr"]) for a in eng.attempts.values()} == {
        "a0": (None, Outcome.SICK, 1.0),
        "a1": ("a0", Outcome.SICK, 0.1),
        "a2": ("a1", Outcome.HEALTHY, 0.01),
    }
