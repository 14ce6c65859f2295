"""Invariants of any lineage, whatever the metric stream: bounded, no loops, no config twice,
and a verdict that names attempts of the run."""

from __future__ import annotations

import math

from hypothesis import given, settings, strategies as st
from test_engine import HEALTHY, SGD_SLOW, STUCK

from autofix.rules import settle
from autofix.rules.engine import Engine, Plan
from autofix.rules.lineage import CONTROL, ISOLATION, Outcome, config_key
from autofix.rules.policy import load_policies
from autofix.symptoms import build_detectors

POLICIES = load_policies(["builtin"])
DETECTORS = lambda: build_detectors("val_loss")  # noqa: E731  (fresh windows per engine)
values = st.one_of(st.floats(0, 20, allow_nan=False), st.just(math.nan), st.just(math.inf))
# the measured digits curves too: random streams are nearly always broken at once (hard symptoms),
# stuck and healthy curves take the soft decisions, the controls and the comparisons
MEASURED = [HEALTHY, STUCK, SGD_SLOW, HEALTHY[:9], STUCK[:9], [2.3, 1.9, 1.5, math.nan]]
streams = st.lists(st.one_of(st.sampled_from(MEASURED), st.lists(values, min_size=1, max_size=18)),
                   min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(streams=streams, max_attempts=st.integers(1, 6), parallel=st.integers(1, 3),
       lr=st.sampled_from([1e-7, 1e-3, 0.05, 1.0]), name=st.sampled_from(["adam", "sgd"]),
       spr=st.sampled_from([None, 5, 23]), min_steps=st.sampled_from([0, 100]))
def test_every_lineage_is_bounded_and_never_repeats_a_config(streams, max_attempts, parallel, lr, name, spr,
                                                              min_steps):
    config = {"optimizer": {"name": name, "lr": lr}, "scheduler": None, "batch_size": 64, "epochs": 16,
              "grad_clip": None}
    plan = Plan(config=config, max_attempts=max_attempts, parallel=parallel, soft_min_steps=min_steps)
    eng = Engine(plan, DETECTORS(), POLICIES)
    trial = 0
    while not eng.done and trial < 50:
        attempt = eng.suggest(f"t{trial}")
        if attempt is None:
            break
        stream = streams[trial % len(streams)]
        start = attempt.history.last_iteration + 1 if attempt.history.last_iteration is not None else 0
        for i, value in enumerate(stream, start=start):
            row = {"val_loss": value, "epoch": i}
            if spr is not None:  # without it a report stands at its iteration
                row.update(step=float(i * spr), planned_steps=float(18 * spr))
            if eng.observe(f"t{trial}", i, row).stop:
                break
        eng.complete(f"t{trial}")
        trial += 1
    eng.finish()
    launched = [a for a in eng.attempts.values() if a.trial_id is not None and a.role != ISOLATION]
    assert len(launched) <= max_attempts  # isolation rungs are experiments, not attempts
    rungs = [a for a in eng.attempts.values() if a.role == ISOLATION]
    assert len(rungs) <= 3 and len({a.parent for a in rungs}) <= 1, "one isolation ladder per run at most"
    controls = [a for a in eng.attempts.values() if a.role == CONTROL and a.id != "a0"]
    assert len(controls) <= 1, "a0 is continued once at most"
    assert all(c.parent == "a0" and c.config == config and c.patch == [] for c in controls)
    keys = [config_key(a.config) for a in eng.attempts.values() if a not in controls and a not in rungs]
    assert len(keys) == len(set(keys)), "a config was queued twice"
    for a in eng.attempts.values():
        seen, node = set(), a
        while node.parent is not None:  # parent chains end at a0: no cycles
            assert node.id not in seen
            seen.add(node.id)
            node = eng.attempts[node.parent]
        assert node.id == "a0"
        for policy in POLICIES.policies:
            assert a.fires.get(policy.name, 0) <= policy.fire_limit
        assert a.outcome not in (Outcome.RUNNING, Outcome.QUEUED)
    verdict = settle.verdict(eng.attempts, "val_loss", "min")
    assert verdict.status in ("healthy", "fixed", "unverified", "unfixed")
    assert verdict.keep is None or verdict.keep in eng.attempts
    assert (verdict.winner is not None) == (verdict.status != "unfixed")
    if verdict.status == "fixed":
        assert eng.attempts[verdict.winner].outcome == Outcome.HEALTHY
    assert config == {"optimizer": {"name": name, "lr": lr}, "scheduler": None, "batch_size": 64, "epochs": 16,
                      "grad_clip": None}, "the user's config is never mutated"
