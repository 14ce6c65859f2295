"""Parallel candidate fixes: a firing policy launches several of its candidates at once."""

from __future__ import annotations

import pytest

from autofix.engine import Engine
from autofix.lineage import Attempt, Outcome

from test_engine import HEALTHY, STUCK, config, engine, policies_from

THREE_LRS = """
- name: plateau-lr
  when: {symptom: plateau}
  for_steps: 1
  max_fires: 2
  then:
    - {action: set, path: optimizer.lr, value: 0.1}
    - {action: set, path: optimizer.lr, value: 0.01}
    - {action: set, path: optimizer.lr, value: 0.001}
    - {action: set, path: optimizer.lr, value: 0.0001}
"""


def stick(eng: Engine, trial_id: str) -> Attempt:
    attempt = eng.suggest(trial_id)
    for i, value in enumerate(STUCK):
        if eng.observe(trial_id, i, {"val_loss": value, "epoch": i}).stop:
            break
    eng.complete(trial_id)
    return attempt


@pytest.mark.parametrize("parallel, max_attempts, racers", [
    (1, 6, ["a1"]),             # sequential: one candidate per fire, as before
    (3, 6, ["a1", "a2", "a3"]),  # three candidates at once
    (3, 3, ["a1", "a2"]),        # the budget caps the race: a0 + two racers
    (8, 6, ["a1", "a2", "a3", "a4"]),  # no more racers than candidates
])
def test_race_width_is_parallel_within_budget_and_candidates(tmp_path, parallel, max_attempts, racers):
    eng = engine(config(lr=1.0), max_attempts=max_attempts, parallel=parallel,
                 policies=policies_from(tmp_path, THREE_LRS))
    a0 = stick(eng, "t0")
    assert a0.outcome == Outcome.SICK
    assert eng.queue == racers
    assert [eng.attempts[r].config["optimizer"]["lr"] for r in racers] == [0.1, 0.01, 0.001, 0.0001][:len(racers)]
    assert a0.decision.child == "a1"
    if len(racers) > 1:
        assert [e["child"] for e in a0.decision.race] == racers
        assert all(eng.attempts[r].race == racers for r in racers)
        assert "race a1 with optimizer.lr" in a0.decision.reason
    else:
        assert a0.decision.race == [] and eng.attempts["a1"].race == []


def test_first_healthy_racer_wins_and_the_others_are_stopped(tmp_path):
    eng = engine(config(lr=1.0), parallel=2, policies=policies_from(tmp_path, THREE_LRS))
    stick(eng, "t0")
    a1, a2 = eng.suggest("t1"), eng.suggest("t2")
    assert (a1.id, a2.id) == ("a1", "a2")
    for i in range(3):  # both running side by side
        assert not eng.observe("t1", i, {"val_loss": STUCK[i], "epoch": i}).stop
        assert not eng.observe("t2", i, {"val_loss": HEALTHY[i], "epoch": i}).stop
    for i in range(3, len(HEALTHY)):
        eng.observe("t2", i, {"val_loss": HEALTHY[i], "epoch": i})
    eng.complete("t2")
    assert a2.outcome == Outcome.HEALTHY and eng.winner == "a2"
    verdict = eng.observe("t1", 3, {"val_loss": STUCK[3], "epoch": 3})
    assert verdict.stop and a1.outcome == Outcome.STOPPED and "a2 already healthy" in a1.reason
    assert eng.done and eng.suggest("t3") is None


def test_a_losing_racer_never_retries_a_rivals_candidate(tmp_path):
    eng = engine(config(lr=1.0), parallel=2, max_attempts=8, policies=policies_from(tmp_path, THREE_LRS))
    stick(eng, "t0")
    eng.suggest("t1"), eng.suggest("t2")
    a1 = eng.attempts["a1"]
    for i, value in enumerate(STUCK):  # a1 (lr 0.1) is stuck too: its policy fires again
        if eng.observe("t1", i, {"val_loss": value, "epoch": i}).stop:
            break
    assert a1.outcome == Outcome.SICK
    children = [eng.attempts[c] for c in eng.queue]
    # a2 already races lr 0.01: a1's next race is 0.001 and 0.0001, each set from the original path.
    assert [c.config["optimizer"]["lr"] for c in children] == [0.001, 0.0001]
    assert all(c.parent == "a1" for c in children)


def test_race_decisions_survive_a_state_round_trip(tmp_path):
    eng = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, THREE_LRS))
    stick(eng, "t0")
    clone = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, THREE_LRS))
    clone.load_state_dict(eng.state_dict())
    assert clone.attempts["a0"].decision.race == eng.attempts["a0"].decision.race
    assert clone.attempts["a2"].race == ["a1", "a2", "a3"]
    assert clone.queue == ["a1", "a2", "a3"]


def test_a_repeatable_action_races_as_a_ladder(tmp_path):
    ladder = """
- name: plateau-lr
  when: {symptom: plateau}
  for_steps: 1
  then:
    - {action: scale, path: optimizer.lr, factor: 0.1, times: 3}
"""
    eng = engine(config(lr=1.0), parallel=3, policies=policies_from(tmp_path, ladder))
    a0 = stick(eng, "t0")
    racers = [eng.attempts[r] for r in eng.queue]
    assert [r.config["optimizer"]["lr"] for r in racers] == pytest.approx([0.1, 0.01, 0.001])
    # every racer's patch is relative to its parent a0, not to the previous rung
    assert [[c.to_dict() for c in r.patch] for r in racers] == [
        [{"path": "optimizer.lr", "from": 1.0, "to": pytest.approx(v)}] for v in (0.1, 0.01, 0.001)]
    assert a0.decision.race[2]["patch"][0]["from"] == 1.0
