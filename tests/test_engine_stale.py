"""A report whose probe statistics were carried forward (probe_age > 0) is no new evidence.

For a symptom read off probe samples (``sampled``: dying ReLUs, saturation, gradients, input
statistics) such a report neither starts nor resets a pending policy, nor adds to the steps it
held; a policy that already held ``for_steps`` may still fire on it (the patience may only just
have been spent). Loss symptoms are measured on every report, stale probe or not.
"""

from __future__ import annotations

import pytest

from autofix.rules.engine import Engine, Plan
from autofix.rules.policy import load_policies
from autofix.symptoms import build_detectors

CONFIG = {"optimizer": {"name": "adam", "lr": 1e-3, "kwargs": {}}, "init": None,
          "architecture": {"activation": None, "batch_norm": False, "dropout": None}}

HELD_20 = """\
version: 1
policies:
  - name: dead
    when: {symptom: dying_relu}
    for_steps: 20
    then: [{action: scale, path: optimizer.lr, factor: 0.1}]
"""

OK = {"dead_frac_max": 0.05, "probe_age": 0.0}  # a fresh sample: units alive
F = {"dead_frac_max": 0.97, "probe_age": 0.0}  # a fresh sample: units dead
S = {"dead_frac_max": 0.97, "probe_age": 1.0}  # that sample carried forward
S_QUIET = {"dead_frac_max": 0.97, "probe_age": 1.0, "val_accuracy": 0.9}  # carried, but accuracy gates it off


def first_fire(reports: list[dict], policies, min_steps: int = 0, spr: int = 10) -> tuple[int, str] | None:
    """Drive one attempt (report i at step i x spr, val_loss flat at chance); (report, policy) of the stop."""
    plan = Plan(config=CONFIG, max_attempts=3, soft_min_steps=min_steps, soft_share=0.0)
    engine = Engine(plan, build_detectors("val_loss"), policies)
    attempt = engine.suggest("t")
    for i, rep in enumerate(reports):
        # a slightly moving loss, at chance accuracy: an unhealthy run
        row = {"val_loss": 2.30 + i / 1000, "val_accuracy": 0.1, "step": float(i * spr), **rep}
        if engine.observe("t", i, row).stop:
            return i, attempt.decision.policy
    return None


@pytest.mark.parametrize("reports, min_steps, fired", [
    pytest.param([OK, F, F, F], 0, 3, id="fresh-samples-hold-20-steps"),
    pytest.param([OK, F, S, S, F], 0, 4, id="carried-samples-add-no-steps"),
    pytest.param([OK, S, S, F, F, F], 0, 5, id="carried-samples-never-start-it"),
    pytest.param([OK, F, S_QUIET, F], 0, 3, id="a-carried-report-never-resets-it"),
    pytest.param([OK, F, OK, F, F, F], 0, 5, id="a-fresh-break-resets-it"),
    pytest.param([OK, F, F, F, S], 40, 4, id="held-long-enough-fires-on-a-carried-report"),
    pytest.param([OK, F, F, S, S], 40, None, id="held-too-short-never-fires-on-carried-reports"),
])
def test_a_carried_sample_neither_starts_nor_resets_a_pending_policy(tmp_path, reports, min_steps, fired):
    path = tmp_path / "p.yaml"
    path.write_text(HELD_20)
    got = first_fire(reports, load_policies([path]), min_steps)
    assert got == (None if fired is None else (fired, "dead"))


def test_the_shipped_dying_relu_policy_waits_for_fresh_samples():
    """dying-relu holds 32 steps: two reports of 23 steps, three when one of them was carried."""
    fresh = {"dead_frac_max": 0.97, "probe_age": 0.0}
    carried = {"dead_frac_max": 0.97, "probe_age": 1.0}
    policies = load_policies(["builtin"])
    assert first_fire([fresh, fresh, fresh], policies, spr=23) == (2, "dying-relu")
    assert first_fire([fresh, fresh, carried, fresh], policies, spr=23) == (3, "dying-relu")


def test_loss_symptoms_still_count_on_carried_reports():
    rows = [{"val_loss": v, "probe_age": 1.0} for v in (1.2, 0.9, 3.2, 3.4)]  # held 10 steps >= 5
    assert first_fire(rows, load_policies(["builtin"]), min_steps=10_000) == (3, "diverging-lower-lr")


def test_carried_reports_keep_the_pending_state_as_it_was(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(HELD_20.replace("for_steps: 20", "for_steps: 1000"))
    plan = Plan(config=CONFIG, max_attempts=3, soft_min_steps=0, soft_share=0.0)
    engine = Engine(plan, build_detectors("val_loss"), load_policies([path]))
    attempt = engine.suggest("t")
    seen = []
    for i, rep in enumerate([OK, F, F, S, S_QUIET, F]):
        engine.observe("t", i, {"val_loss": 2.3 + i / 1000, "val_accuracy": 0.1, "step": float(i * 10), **rep})
        state = attempt.alerts.get("dead")
        seen.append(None if state is None or state.active_at is None else [state.active_at, state.last_match_at])
    assert seen == [None, [10, 10], [10, 20], [10, 20], [10, 20], [10, 50]]
