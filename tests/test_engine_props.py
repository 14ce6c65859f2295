"""Invariants of any lineage, whatever the metric stream: bounded, no loops, no config twice."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from autofix.engine import Engine, Plan
from autofix.lineage import Outcome, config_key
from autofix.policy import load_policies
from autofix.symptoms import build_detectors

POLICIES = load_policies(["builtin"])
DETECTORS = lambda: build_detectors("val_loss")  # noqa: E731  (fresh windows per engine)
values = st.one_of(st.floats(0, 20, allow_nan=False), st.just(math.nan), st.just(math.inf))
streams = st.lists(st.lists(values, min_size=1, max_size=18), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(streams=streams, max_attempts=st.integers(1, 6), parallel=st.integers(1, 3),
       lr=st.sampled_from([1e-7, 1e-3, 0.05, 1.0]), name=st.sampled_from(["adam", "sgd"]))
def test_every_lineage_is_bounded_and_never_repeats_a_config(streams, max_attempts, parallel, lr, name):
    config = {"optimizer": {"name": name, "lr": lr}, "scheduler": None, "batch_size": 64, "epochs": 16,
              "grad_clip": None}
    eng = Engine(Plan(config=config, max_attempts=max_attempts, parallel=parallel), DETECTORS(), POLICIES)
    trial = 0
    while not eng.done and trial < 50:
        attempt = eng.suggest(f"t{trial}")
        if attempt is None:
            break
        for i, value in enumerate(streams[trial % len(streams)]):
            if eng.observe(f"t{trial}", i, {"val_loss": value, "epoch": i}).stop:
                break
        eng.complete(f"t{trial}")
        trial += 1
    eng.finish()
    launched = [a for a in eng.attempts.values() if a.trial_id is not None]
    assert len(launched) <= max_attempts
    keys = [config_key(a.config) for a in eng.attempts.values()]
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
    assert config == {"optimizer": {"name": name, "lr": lr}, "scheduler": None, "batch_size": 64, "epochs": 16,
                      "grad_clip": None}, "the user's config is never mutated"
