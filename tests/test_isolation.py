"""The isolation ladder, pure parts (issue 18): when a failure is unexplained, what each rung
concludes from its numbers, that every rung stays inside its share of one attempt, and the
engine's ladder driven with fake rung reports (no Ray, no torch)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from autofix.rules.engine import Engine, Plan
from autofix.rules.isolation import (
    DATA,
    LADDER_SHARE,
    MODEL,
    OPTIMIZER,
    RUNG_SHARES,
    RUNGS,
    TRAINING_STEP,
    attempt_examples,
    conclude,
    margin,
    rung_budget,
)
from autofix.rules.lineage import ISOLATION
from autofix.rules.policy import load_policies
from autofix.symptoms import build_detectors
from autofix.symptoms.isolation import unexplained
from autofix.tune.controller import tune_config

PLATEAU = ("plateau", {})
CHANCE = ("chance_level", {})


@pytest.mark.parametrize("active, answered, expected", [
    ([PLATEAU], [], "only generic findings (plateau)"),
    ([PLATEAU, CHANCE], [None], "only generic findings (plateau, chance_level)"),
    ([("class_collapse", {"label_frac_max": 0.1}), CHANCE], [], "only generic findings"),
    ([("class_collapse", {"label_frac_max": 0.6}), CHANCE], [], None),  # a majority class: the collapse is a cause
    ([("class_collapse", {}), CHANCE], [], None),  # the accuracy/F1 arm names no label share: a cause
    ([PLATEAU, ("dying_relu", {})], [], None),  # a named cause
    ([PLATEAU, ("label_imbalance", {})], [], None),  # advisory, but a cause all the same
    ([("dying_relu", {})], ["dying_relu", "dying_relu"], "dying_relu survived two remedies"),
    ([("dying_relu", {})], ["dying_relu", "plateau"], None),  # one remedy aimed at it so far
    ([("dying_relu", {})], ["plateau", "dying_relu"], None),  # the latest remedy answered something else
    ([], [], None),
    ([("unexplained_failure", {})], [], None),  # its own finding explains nothing either way
])
def test_unexplained_only_when_no_symptom_names_a_cause(active, answered, expected):
    why = unexplained(active, answered)
    assert (why is None) == (expected is None)
    if expected is not None:
        assert expected in why[0]


# -- rung verdicts from their numbers --------------------------------------------------------------
OVERFIT = {"batch": 8.0, "steps": 44.0, "floor": 0.0, "initial_loss": 2.3}


@pytest.mark.parametrize("row, conclusive, part", [
    ({**OVERFIT, "final_loss": 0.1, "tail_gain": 0.01, "param_change": 0.5}, False, None),  # reached: works
    ({**OVERFIT, "final_loss": 0.9, "tail_gain": 0.2, "param_change": 0.5}, False, None),  # still falling
    ({**OVERFIT, "final_loss": 2.3, "tail_gain": 0.0, "param_change": 0.0}, True, TRAINING_STEP),  # nothing moved
    ({**OVERFIT, "final_loss": float("nan"), "tail_gain": 0.0, "param_change": 0.1}, True, TRAINING_STEP),
    ({**OVERFIT, "final_loss": 1.5, "tail_gain": 0.0, "param_change": 0.1, "reference_initial_loss": 2.3,
      "reference_final_loss": 0.05, "reference_tail_gain": 0.01}, True, OPTIMIZER),  # Adam 1e-3 fits it
    ({**OVERFIT, "final_loss": 2.2, "tail_gain": 0.0, "param_change": 0.1, "reference_initial_loss": 2.3,
      "reference_final_loss": 2.2, "reference_tail_gain": 0.0, "mlp_initial_loss": 2.3, "mlp_final_loss": 0.2,
      "mlp_tail_gain": 0.05}, True, MODEL),  # a tiny MLP fits it with the same loss
    ({**OVERFIT, "final_loss": 1.6, "tail_gain": 0.0, "param_change": 0.1, "reference_initial_loss": 2.3,
      "reference_final_loss": 1.6, "reference_tail_gain": 0.0, "mlp_initial_loss": 2.3, "mlp_final_loss": 1.5,
      "mlp_tail_gain": 0.0}, True, TRAINING_STEP),  # nothing fits it: the loss or its targets
    # identical inputs with mixed labels: the batch allows 1.3, reached
    ({**OVERFIT, "floor": 1.3, "final_loss": 1.35, "tail_gain": 0.0, "param_change": 0.1}, False, None),
    ({**OVERFIT, "error": "RuntimeError: boom"}, False, None),
])
def test_overfit_batch_verdicts(row, conclusive, part):
    result = conclude("overfit_batch", row)
    assert (result.conclusive, result.part) == (conclusive, part), result.conclusion


@pytest.mark.parametrize("row, user, conclusive, part", [
    ({"linear_accuracy": 0.85, "knn_accuracy": 0.9, "chance": 0.12, "evaluated": 55},
     {"val_accuracy": 0.1}, True, MODEL),
    ({"linear_accuracy": 0.85, "knn_accuracy": 0.9, "chance": 0.12, "evaluated": 55},
     {"val_accuracy": 0.88}, False, None),
    ({"linear_accuracy": 0.85, "knn_accuracy": 0.9, "chance": 0.12, "evaluated": 55}, {}, True, MODEL),
    ({"linear_accuracy": 0.15, "knn_accuracy": 0.2, "chance": 0.12, "evaluated": 55},
     {"val_accuracy": 0.1}, False, None),
    ({"linear_accuracy": 0.55, "knn_accuracy": 0.6, "chance": 0.5, "evaluated": 200},
     {"val_accuracy": 0.5}, False, None),
    ({"linear_accuracy": 0.55, "knn_accuracy": 0.75, "chance": 0.5, "evaluated": 200},
     {"val_accuracy": 0.5}, True, MODEL),
    ({"chance": 0.5, "evaluated": 200}, {"val_accuracy": 0.5}, False, None),
])
def test_simple_model_verdicts(row, user, conclusive, part):
    result = conclude("simple_model", row, user)
    assert (result.conclusive, result.part) == (conclusive, part), result.conclusion


@pytest.mark.parametrize("gaps, conclusive, part", [
    ((0.02, 0.05), True, DATA),  # no difference for either learner
    ((-0.09, 0.0), True, DATA),
    ((0.02, 0.57), False, None),  # the baselines learn the real labels
    ((0.4, 0.0), False, None),  # the user's model does
])
def test_shuffled_labels_verdicts(gaps, conclusive, part):
    row = {"chance": 0.14, "evaluated": 44, "model_real_accuracy": 0.1 + gaps[0], "model_shuffled_accuracy": 0.1,
           "baseline_real_accuracy": 0.12 + gaps[1], "baseline_shuffled_accuracy": 0.12}
    result = conclude("shuffled_labels", row)
    assert (result.conclusive, result.part) == (conclusive, part), result.conclusion


@pytest.mark.parametrize("chance, n, at_least", [(0.1, 55, 0.12), (0.5, 200, 0.106), (0.1, 100_000, 0.05)])
def test_margin_is_three_binomial_deviations_and_at_least_five_points(chance, n, at_least):
    assert margin(chance, n) == pytest.approx(max(0.05, 3 * math.sqrt(chance * (1 - chance) / n)))
    assert margin(chance, n) >= at_least - 1e-3


def test_evidence_keeps_the_rungs_numbers_not_tunes():
    row = {"linear_accuracy": 0.8, "chance": 0.1, "evaluated": 50, "time_this_iter_s": 0.1, "pid": 7.0,
           "config/batch_size": 64.0}
    assert set(conclude("simple_model", row).evidence) == {"linear_accuracy", "chance", "evaluated"}


# -- bounded cost -----------------------------------------------------------------------------
def _worst_case(rung: str, sizes: dict[str, int]) -> int:
    """Examples a rung processes at most with these sizes (autofix.harness.isolation's counting)."""
    if rung == "overfit_batch":  # three fits of (steps + 1) passes, one width probe
        return 3 * (sizes["steps"] + 1) * sizes["batch"] + sizes["batch"]
    if rung == "simple_model":  # two learners: fit and score
        return 2 * (sizes["fit"] + sizes["evaluate"])
    return 2 * (sizes["steps"] * sizes["batch"] + sizes["evaluate"]) + 4 * (sizes["fit"] + sizes["evaluate"])


@given(steps=st.integers(20, 200_000), batch=st.integers(1, 1024))
def test_the_whole_ladder_stays_within_ten_percent_of_one_attempt(steps, batch):
    examples = attempt_examples(steps, batch)
    if examples < 5_000:  # below that the rungs' minimum sizes (1 step, 1 example) set the cost
        return
    total = sum(_worst_case(rung, rung_budget(rung, examples, batch)) for rung in RUNGS)
    assert total <= LADDER_SHARE * examples
    assert sum(RUNG_SHARES.values()) <= 1.0


# -- the engine's ladder, driven with fake reports -------------------------------------------------
def _engine(managed: bool = True, max_attempts: int = 6) -> Engine:
    from autofix.rules.policytest import _managed_defaults

    plan = Plan(config=_managed_defaults(), max_attempts=max_attempts, managed=managed)
    return Engine(plan, build_detectors("val_loss"), load_policies(["builtin"]))


def _stuck(engine: Engine, trial: str = "t0") -> None:
    """a0 at chance and flat, 23 steps per report of 345: the ladder fires at the patience."""
    attempt = engine.suggest(trial)
    for i in range(16):
        row = {"val_loss": 2.304 + 0.0005 * (i % 3), "val_accuracy": 0.1, "chance_accuracy": 0.1,
               "step": 23.0 * i, "planned_steps": 345.0}
        if engine.observe(trial, i, row).stop:
            return
    assert attempt.decision is not None


RUNG_ROWS = {
    "overfit_batch": {"batch": 8.0, "steps": 44.0, "floor": 0.0, "initial_loss": 2.3, "final_loss": 0.1,
                      "tail_gain": 0.01, "param_change": 0.4, "examples": 360.0, "isolation_seconds": 0.5},
    "simple_model": {"linear_accuracy": 0.13, "knn_accuracy": 0.15, "chance": 0.12, "evaluated": 27.0,
                     "examples": 220.0, "isolation_seconds": 0.1},
    "shuffled_labels": {"chance": 0.14, "evaluated": 44.0, "model_real_accuracy": 0.1, "model_shuffled_accuracy": 0.1,
                        "baseline_real_accuracy": 0.12, "baseline_shuffled_accuracy": 0.12, "examples": 824.0,
                        "isolation_seconds": 0.1},
}


def _run_rungs(engine: Engine, rows: dict[str, dict]) -> list[str]:
    done = []
    for n in range(3):
        rung = engine.suggest(f"r{n}")
        if rung is None or rung.role != ISOLATION:
            break
        assert tune_config(rung, [])["__autofix__"]["isolate"]["rung"] == rung.rung["rung"]
        assert engine.observe(f"r{n}", 0, {"epoch": 0, **rows[rung.rung["rung"]]}).stop
        engine.complete(f"r{n}")
        done.append(rung.rung["rung"])
    return done


def test_a_data_bug_stops_the_run_after_the_ladder_without_relaunching():
    engine = _engine()
    _stuck(engine)
    a0 = engine.attempts["a0"]
    assert a0.decision.policy == "isolation-ladder" and a0.decision.finding.symptom == "unexplained_failure"
    assert _run_rungs(engine, RUNG_ROWS) == list(RUNGS)
    assert a0.ladder["part"] == DATA and engine.halted and "data" in engine.halted
    assert [a.id for a in engine.attempts.values() if a.role != ISOLATION] == ["a0"]  # nothing relaunched
    assert engine.done


def test_a_model_verdict_hands_over_to_the_model_policies():
    engine = _engine()
    _stuck(engine)
    rows = {**RUNG_ROWS, "simple_model": {**RUNG_ROWS["simple_model"], "knn_accuracy": 0.9}}
    assert _run_rungs(engine, rows) == ["overfit_batch", "simple_model"]  # stops at the first conclusive rung
    a0 = engine.attempts["a0"]
    assert a0.decision.policy == "baseline-learns" and a0.decision.finding.symptom == "baseline_learns"
    child = engine.attempts[a0.decision.child]
    assert next(c.path for c in child.patch) == "architecture.activation" and engine.halted is None


def test_an_inconclusive_ladder_falls_back_to_the_generic_policies():
    engine = _engine()
    _stuck(engine)
    rows = {**RUNG_ROWS, "shuffled_labels": {**RUNG_ROWS["shuffled_labels"], "baseline_real_accuracy": 0.7}}
    assert _run_rungs(engine, rows) == list(RUNGS)
    a0 = engine.attempts["a0"]
    assert a0.ladder["part"] is None and a0.decision.policy in ("chance-level", "plateau-fallback", "class-collapse")
    assert engine.attempts[a0.decision.child].role == "treatment"


def test_rungs_do_not_count_against_max_attempts():
    engine = _engine(max_attempts=3)
    _stuck(engine)
    rows = {**RUNG_ROWS, "shuffled_labels": {**RUNG_ROWS["shuffled_labels"], "baseline_real_accuracy": 0.7}}
    assert len(_run_rungs(engine, rows)) == 3
    assert engine._launched_count() == 1 and engine.attempts["a0"].decision.child is not None


def test_a_custom_trainable_says_the_ladder_is_not_applicable_and_the_generic_policies_act():
    events = []
    engine = _engine(managed=False)
    engine.journal = lambda event, **data: events.append((event, data))
    _stuck(engine)
    a0 = engine.attempts["a0"]
    assert [e for e, _ in events].count("isolation_not_applicable") == 1
    assert "custom trainable cannot run" in a0.ladder["not_applicable"]
    assert a0.decision.policy != "isolation-ladder" and all(a.role != ISOLATION for a in engine.attempts.values())


def test_a_rung_that_raises_is_inconclusive_and_the_ladder_goes_on():
    engine = _engine()
    _stuck(engine)
    rung = engine.suggest("r0")
    engine.complete("r0", error="Traceback ...\nValueError: regression targets")
    assert rung.outcome == "inconclusive" and "regression targets" in rung.reason
    assert engine.suggest("r1").rung["rung"] == "simple_model"


def test_a_healthy_run_never_gets_a_ladder():
    engine = _engine()
    engine.suggest("t0")
    for i in range(16):
        loss = 2.3 * 0.85 ** i
        engine.observe("t0", i, {"val_loss": loss, "val_accuracy": min(0.95, 0.1 + 0.08 * i), "chance_accuracy": 0.1,
                                 "step": 23.0 * i, "planned_steps": 345.0})
    engine.complete("t0")
    assert engine.attempts["a0"].outcome == "healthy" and not any(a.ladder for a in engine.attempts.values())


@pytest.mark.parametrize("part, symptoms, expected", [
    (MODEL, ["plateau", "output_loss_mismatch"], TRAINING_STEP),  # the outputs are not what the loss takes
    (MODEL, ["plateau"], MODEL),
    (DATA, ["output_loss_mismatch"], DATA),  # only a model verdict is re-read
])
def test_refine_reads_an_unanswered_output_loss_mismatch_as_the_training_step(part, symptoms, expected):
    from autofix.rules.isolation import RungResult, refine

    assert refine(RungResult("overfit_batch", True, part, "the model is the problem: x"), symptoms).part == expected


def test_a_cause_whose_remedies_are_spent_explains_nothing():
    """output_loss_mismatch found, its remedy skipped (a softmax inside forward() cannot be replaced):
    with a plateau the failure is unexplained and the ladder runs, not plateau-fallback."""
    engine = _engine()
    engine.check_config = lambda c: "surgery cannot" if (c.get("architecture") or {}).get("output_activation") else None
    attempt = engine.suggest("t0")
    for i in range(16):
        row = {"val_loss": 2.303 - 0.01 * min(i, 8), "val_accuracy": 0.25, "chance_accuracy": 0.1,
               "output_min": 0.099, "output_max": 0.101, "output_sum_dev": 2.4e-7, "output_zero_rows": 0.0,
               "output_lse_dev": 2.4, "loss_expects/logits": 1.0, "output_classes": 10.0,
               "step": 23.0 * i, "planned_steps": 345.0}  # a softmax's outputs (the zoo's double softmax)
        if engine.observe("t0", i, row).stop:
            break
    assert "output_loss_mismatch" in [f.symptom for f in attempt.findings]
    assert attempt.decision.policy == "isolation-ladder"
