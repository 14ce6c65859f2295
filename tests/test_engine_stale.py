"""A report whose probe statistics were carried forward (probe_age > 0) is no new evidence."""

from __future__ import annotations

from autofix.engine import Engine, Plan
from autofix.policy import load_policies
from autofix.symptoms import build_detectors

CONFIG = {"optimizer": {"name": "adam", "lr": 1e-3, "kwargs": {}}, "init": None,
          "architecture": {"activation": None, "batch_norm": False, "dropout": None}}


def _first_fire(reports):
    engine = Engine(Plan(config=CONFIG, max_attempts=3), build_detectors("val_loss"), load_policies(["builtin"]))
    attempt = engine.suggest("t")
    for i, row in enumerate(reports):
        # a slightly moving loss: an exactly repeated one would be no_update's finding
        if engine.observe("t", i, {"val_loss": 2.30 + i / 1000, "val_accuracy": 0.1, **row}).stop:
            return i, attempt.decision.policy
    return None


def test_a_carried_sample_does_not_confirm_a_pending_policy():
    fresh = {"dead_frac_max": 0.97, "probe_age": 0.0}
    carried = {"dead_frac_max": 0.97, "probe_age": 1.0}
    assert _first_fire([fresh, fresh]) == (1, "dying-relu")  # for_steps 2, two fresh samples
    assert _first_fire([fresh, carried, carried, fresh]) == (3, "dying-relu")


def test_loss_symptoms_still_count_on_carried_reports():
    rows = [{"val_loss": v, "probe_age": 1.0} for v in (1.2, 0.9, 3.2)]
    assert _first_fire(rows) == (2, "diverging-lower-lr")
