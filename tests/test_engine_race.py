"""Parallel candidate fixes: a firing policy launches several of its candidates at once.

On a hard symptom the user's run is broken: it is stopped and up to ``parallel`` candidates
race. On a soft symptom about a0 (a slow learner looks the same for a while) a0 keeps training
beside its fixes as the run left alone (role "control"): ``parallel - 1`` candidates race, and
each healthy fix is compared with a0 at the fix's own last step.
"""

from __future__ import annotations

import math

import pytest
from test_engine import HEALTHY, PATIENCE_REPORT, STUCK, Journal, config, engine, policies_from, row

from autofix.rules import settle
from autofix.rules.engine import Engine
from autofix.rules.lineage import CONTROL, TREATMENT, Attempt, Outcome

LADDER = [0.1, 0.01, 0.001, 0.0001]


def four_lrs(symptom: str) -> str:
    return f"""
- name: lr
  when: {{symptom: {symptom}}}
  max_fires: 2
  then:
""" + "".join(f"    - {{action: set, path: optimizer.lr, value: {lr}}}\n" for lr in LADDER)


def feed(eng: Engine, trial_id: str, series: list[float], start: int = 0, complete: bool = True) -> Attempt:
    """Suggest ``trial_id`` and feed it ``series`` until the engine says stop (then complete)."""
    attempt = eng.suggest(trial_id)
    assert attempt is not None
    for i, value in enumerate(series, start=start):
        if eng.observe(trial_id, i, row(i, value)).stop:
            break
    if complete:
        eng.complete(trial_id)
    return attempt


BROKEN = [2.3, math.nan]  # a hard symptom at report 1


# -- a race on a hard symptom: the broken run is stopped ----------------------------------------

@pytest.mark.parametrize("parallel, max_attempts, racers", [
    (1, 6, ["a1"]),              # sequential: one candidate per fire
    (3, 6, ["a1", "a2", "a3"]),  # three candidates at once
    (3, 3, ["a1", "a2"]),        # the budget caps the race: a0 + two racers
    (8, 6, ["a1", "a2", "a3", "a4"]),  # no more racers than candidates
])
def test_race_width_on_a_hard_symptom_is_parallel_within_budget_and_candidates(tmp_path, parallel, max_attempts,
                                                                               racers):
    eng = engine(config(lr=1.0), max_attempts=max_attempts, parallel=parallel,
                 policies=policies_from(tmp_path, four_lrs("nonfinite_loss")))
    a0 = feed(eng, "t0", BROKEN)
    assert a0.outcome == Outcome.SICK and a0.stopped_on == "hard" and not a0.decision.kept_running
    assert eng.queue == racers
    assert [eng.attempts[r].config["optimizer"]["lr"] for r in racers] == LADDER[:len(racers)]
    assert a0.decision.child == "a1"
    if len(racers) > 1:
        assert [e["child"] for e in a0.decision.race] == racers
        assert all(eng.attempts[r].race == racers for r in racers)
        assert "race a1 with optimizer.lr" in a0.decision.reason
    else:
        assert a0.decision.race == [] and eng.attempts["a1"].race == []


def test_first_healthy_racer_beats_the_broken_run_and_the_others_are_stopped(tmp_path):
    eng = engine(config(lr=1.0), parallel=2, policies=policies_from(tmp_path, four_lrs("nonfinite_loss")))
    feed(eng, "t0", BROKEN)
    a1, a2 = eng.suggest("t1"), eng.suggest("t2")
    assert (a1.id, a2.id) == ("a1", "a2")
    for i in range(3):  # both running side by side
        assert not eng.observe("t1", i, row(i, STUCK[i])).stop
        assert not eng.observe("t2", i, row(i, HEALTHY[i])).stop
    for i in range(3, len(HEALTHY)):
        eng.observe("t2", i, row(i, HEALTHY[i]))
    eng.complete("t2")
    assert a2.outcome == Outcome.HEALTHY and eng.winner == "a2"
    assert settle.verdict(eng.attempts, "val_loss", "min").status == "fixed"
    verdict = eng.observe("t1", 3, row(3, STUCK[3]))
    assert verdict.stop and a1.outcome == Outcome.STOPPED and verdict.reason == "the run is settled: keep a2"
    assert eng.done and eng.suggest("t3") is None


def test_a_losing_racer_never_retries_a_rivals_candidate(tmp_path):
    eng = engine(config(lr=1.0), parallel=2, max_attempts=8,
                 policies=policies_from(tmp_path, four_lrs("nonfinite_loss")))
    feed(eng, "t0", BROKEN)
    eng.suggest("t1"), eng.suggest("t2")
    a1 = eng.attempts["a1"]
    for i, value in enumerate(BROKEN):  # a1 (lr 0.1) breaks too: its policy fires again
        if eng.observe("t1", i, row(i, value)).stop:
            break
    assert a1.outcome == Outcome.SICK
    children = [eng.attempts[c] for c in eng.queue]
    # a2 already races lr 0.01: a1's next race is 0.001 and 0.0001, each set from the original path.
    assert [c.config["optimizer"]["lr"] for c in children] == [0.001, 0.0001]
    assert all(c.parent == "a1" for c in children)


def test_race_decisions_survive_a_state_round_trip(tmp_path):
    eng = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, four_lrs("nonfinite_loss")))
    feed(eng, "t0", BROKEN)
    clone = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, four_lrs("nonfinite_loss")))
    clone.load_state_dict(eng.state_dict())
    assert clone.attempts["a0"].decision.race == eng.attempts["a0"].decision.race
    assert clone.attempts["a2"].race == ["a1", "a2", "a3"]
    assert clone.queue == ["a1", "a2", "a3"]


def test_a_repeatable_action_races_as_a_ladder(tmp_path):
    ladder = """
- name: lr
  when: {symptom: nonfinite_loss}
  then:
    - {action: scale, path: optimizer.lr, factor: 0.1, times: 3}
"""
    eng = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, ladder))
    a0 = feed(eng, "t0", BROKEN)
    racers = [eng.attempts[r] for r in eng.queue]
    assert [r.config["optimizer"]["lr"] for r in racers] == pytest.approx([0.1, 0.01, 0.001])
    # every racer's patch is relative to its parent a0, not to the previous rung
    assert [[c.to_dict() for c in r.patch] for r in racers] == [
        [{"path": "optimizer.lr", "from": 1.0, "to": pytest.approx(v)}] for v in (0.1, 0.01, 0.001)]
    assert a0.decision.race[2]["patch"][0]["from"] == 1.0


# -- a soft symptom on a0: a0 keeps training beside its fixes as the run left alone -------------

@pytest.mark.parametrize("parallel, max_attempts, racers, kept", [
    pytest.param(1, 6, ["a1"], False, id="sequential-a0-stopped"),
    pytest.param(2, 6, ["a1"], True, id="a0-and-one-fix"),
    pytest.param(3, 6, ["a1", "a2"], True, id="a0-and-two-fixes"),
    pytest.param(4, 3, ["a1", "a2"], True, id="the-budget-caps-the-race"),
    pytest.param(2, 1, [], False, id="no-room-a0-not-stopped"),
])
def test_a_soft_decision_keeps_a0_running_as_the_control(tmp_path, parallel, max_attempts, racers, kept):
    eng = engine(config(lr=1.0), max_attempts=max_attempts, parallel=parallel,
                 policies=policies_from(tmp_path, four_lrs("plateau")))
    a0 = eng.suggest("t0")
    stops = [eng.observe("t0", i, row(i, STUCK[i])).stop for i in range(PATIENCE_REPORT + 1)]
    assert eng.queue == racers
    assert [eng.attempts[r].config["optimizer"]["lr"] for r in racers] == LADDER[:len(racers)]
    if racers and not kept:
        assert stops[-1] and a0.outcome == Outcome.SICK and a0.role == TREATMENT
        return
    assert not any(stops) and a0.outcome == Outcome.RUNNING
    assert (a0.role == CONTROL) is kept and (a0.decision is not None) is kept
    if kept:
        assert a0.decision.kept_running and a0.decision.severity == "soft"
        assert "a0 keeps training beside it as the run left alone" in a0.decision.reason


def test_the_control_is_measured_never_acted_on(tmp_path):
    eng = engine(config(lr=1.0), parallel=2, policies=policies_from(tmp_path, four_lrs("plateau")))
    a0 = feed(eng, "t0", STUCK, complete=False)
    assert a0.role == CONTROL and a0.outcome == Outcome.RUNNING, "stuck to the end, never stopped"
    assert a0.fires == {"lr": 1} and eng.queue == ["a1"], "the plateau held on, no second fire"
    eng.complete("t0")
    assert a0.outcome == Outcome.UNHEALTHY and a0.decision.kept_running


@pytest.mark.parametrize("a0_rest, a0_outcome, status, winner, keep", [
    pytest.param(STUCK[9:], Outcome.UNHEALTHY, "fixed", "a1", "a1", id="a0-stays-stuck-the-fix-beats-it"),
    pytest.param([1.5, 1.0, .5, .3, .2, .15, .12], Outcome.HEALTHY, "healthy", "a0", "a0",
                 id="a0-heals-better-keep-a0"),
    pytest.param([2.3, math.nan], Outcome.SICK, "fixed", "a1", "a1", id="a0-breaks-stopped-at-once"),
])
def test_a_fix_racing_a0_is_settled_against_a0_at_the_same_step(tmp_path, a0_rest, a0_outcome, status, winner,
                                                                 keep):
    journal = Journal()
    eng = engine(config(lr=1.0), parallel=2, journal=journal, policies=policies_from(tmp_path, four_lrs("plateau")))
    a0 = eng.suggest("t0")
    for i in range(PATIENCE_REPORT + 1):
        eng.observe("t0", i, row(i, STUCK[i]))
    a1 = feed(eng, "t1", HEALTHY)  # the fix runs its 345 steps while a0 stands at step 184
    assert a1.outcome == Outcome.HEALTHY and a1.compared is None and eng.winner is None
    assert journal.of("control_queued") == [], "a0 still runs: no control to queue"
    for i, value in enumerate(a0_rest, start=PATIENCE_REPORT + 1):
        if eng.observe("t0", i, row(i, value)).stop:
            break
    eng.complete("t0")
    verdict = settle.verdict(eng.attempts, "val_loss", "min")
    assert (verdict.status, verdict.winner, verdict.keep) == (status, winner, keep)
    assert a1.compared is not None and a1.compared["reference"] == "a0"
    assert eng.winner == keep and len(eng.attempts) == 2
    assert a0.outcome == a0_outcome


def test_the_control_is_queued_before_the_racers_still_waiting(tmp_path):
    """a0 ends (stuck, short of the patience) and its soft finding is acted on at the end: a race
    of fixes. When the first racer heals, a0's continuation jumps the queue: the healthy fix is
    waiting for it."""
    eng = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, four_lrs("plateau")))
    a0 = feed(eng, "t0", STUCK[:PATIENCE_REPORT])
    assert a0.outcome == Outcome.SICK and a0.stopped_on == "soft"
    racers = list(eng.queue)
    assert len(racers) >= 2
    feed(eng, "t1", HEALTHY)
    control = eng.attempts[eng.queue[0]]
    assert (control.role, control.parent) == (CONTROL, "a0")
    assert eng.queue == [control.id] + racers[1:]


@pytest.mark.parametrize("max_attempts, queued", [
    pytest.param(2, [], id="no-room-for-a-fix-and-the-reserve"),
    pytest.param(3, ["a1"], id="a-fix-and-the-reserve"),
])
def test_a_soft_decision_at_the_end_of_a0_cannot_keep_it_running(tmp_path, max_attempts, queued):
    """At the end of its trial a0 can no longer train beside its fixes: the decision must not say
    it does, and the budget must keep the attempt that continues a0 to the fix's step, as with
    parallel 1 (test_engine: a soft finding never stops a0 without budget for a child and its control)."""
    eng = engine(config(lr=1.0), max_attempts=max_attempts, parallel=2,
                 policies=policies_from(tmp_path, four_lrs("plateau")))
    a0 = feed(eng, "t0", STUCK[:PATIENCE_REPORT])  # ends at step 161, short of the 172.5-step patience
    assert eng.queue == queued
    if not queued:
        assert a0.decision is None and a0.outcome == Outcome.UNHEALTHY
        return
    assert a0.outcome == Outcome.SICK and not a0.decision.kept_running
    assert "keeps training" not in a0.decision.reason
    feed(eng, "t1", HEALTHY)
    assert [eng.attempts[a].role for a in eng.queue] == [CONTROL], "room left to continue a0"


# -- swap candidates race, each with its matching initialisation ---------------------------------

EXP_AT_INIT = {"nonfinite_output_index": 5.0, "nonfinite_output/5": 0.02, "nonfinite_module/Exponential": 1.0,
               "nonfinite_output_activation": 1.0}


@pytest.mark.parametrize("parallel, racers", [
    (1, [("selu", "lecun_normal")]),
    (2, [("selu", "lecun_normal"), ("leaky_relu", "kaiming")]),
    (3, [("selu", "lecun_normal"), ("leaky_relu", "kaiming"), ("tanh", "xavier")]),
])
def test_the_swap_candidates_race_in_their_measured_order_when_slots_allow(parallel, racers):
    cfg = config(lr=0.1, architecture={"activation": None, "activation_scope": "hidden", "output_activation": None},
                 init=None)
    eng = engine(cfg, parallel=parallel)
    a0 = eng.suggest("t0")
    assert eng.observe("t0", 0, row(0, math.nan, train_loss=math.nan, **EXP_AT_INIT)).stop
    assert a0.decision.policy == "nonfinite-at-init-activation" and a0.stopped_on == "hard"
    children = [eng.attempts[c] for c in eng.queue]
    assert [(c.config["architecture"]["activation"], c.config["init"]["scheme"]) for c in children] == racers
    assert all(c.config["architecture"]["activation_scope"] == "nonfinite" and c.config["optimizer"]["lr"] == 0.1
               for c in children)  # never the learning rate
