"""Declared judgement inputs: the spec's ``judge:`` section, ``autofix.judge_inputs``, and what a
trainable that reports too little is told (autofix/judge/judging.py, autofix/harness/scoring.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

import autofix
from autofix.errors import InputError
from autofix.judge.history import History
from autofix.judge.judging import Inputs, gaps, judged_by
from autofix.judge.verdict import Judge, health
from autofix.reports.reporting import build_report
from autofix.rules.engine import Engine, Plan
from autofix.rules.policy import load_policies
from autofix.spec.schema import load_spec
from autofix.symptoms import build_detectors

# -- Inputs.complete: a report as autofix reads it ---------------------------------------------


@pytest.mark.parametrize("inputs, metrics, first, added", [
    (Inputs({"accuracy": "acc"}), {"val_loss": 2.0, "acc": 0.4}, False, {"val_accuracy": 0.4}),
    (Inputs({"accuracy": "acc"}), {"val_loss": 2.0, "acc": 0.4, "val_accuracy": 0.5}, False, {}),  # yours wins
    (Inputs({"macro_f1": "f1", "balanced_accuracy": "bacc"}), {"val_loss": 2.0, "f1": 0.3, "bacc": 0.2}, False,
     {"val_macro_f1": 0.3, "val_balanced_accuracy": 0.2}),
    (Inputs(num_classes=4), {"val_loss": 2.0}, False,
     {"chance_balanced_accuracy": 0.25, "chance_macro_f1": 0.25, "chance_loss": math.log(4)}),
    (Inputs(num_classes=4, cross_entropy=False), {"val_loss": 2.0}, False,
     {"chance_balanced_accuracy": 0.25, "chance_macro_f1": 0.25}),
    (Inputs(num_classes=4, chance_macro_f1=0.05, chance_accuracy=0.7), {"val_loss": 2.0}, False,
     {"chance_balanced_accuracy": 0.25, "chance_macro_f1": 0.05, "chance_accuracy": 0.7, "chance_loss": math.log(4)}),
    (Inputs(), {"val_loss": 9.0, "step": 0}, True, {"init_loss": 9.0}),  # the untrained first report
    (Inputs(), {"val_loss": 9.0, "step": 0}, False, {}),  # not the attempt's first report
    (Inputs(), {"val_loss": 9.0, "step": 40}, True, {}),  # a warm start's first report: trained
    (Inputs(), {"val_loss": 9.0}, True, {}),  # no step: not known to be untrained
    (Inputs(), {"val_loss": 9.0, "step": 0, "init_loss": 7.0}, True, {}),
    (Inputs(), {"val_loss": math.nan, "step": 0}, True, {}),
])
def test_inputs_complete_a_report(inputs, metrics, first, added):
    out = inputs.complete(metrics, "val_loss", first)
    assert {k: v for k, v in out.items() if k not in metrics} == added
    assert {k: out[k] for k in metrics} == metrics  # nothing reported is changed


def test_declared_chance_makes_a_model_at_chance_unhealthy():
    """The issue's N(0, 1) init: the loss fell 71% while the accuracy stayed at chance."""
    inputs, judge = Inputs({"accuracy": "acc"}, num_classes=10, chance_accuracy=0.1), Judge("val_loss", 0.3)
    history = History({0: inputs.complete({"val_loss": 679.0, "acc": 0.1}, "val_loss", True),
                       1: inputs.complete({"val_loss": 194.0, "acc": 0.12}, "val_loss", False)})
    assert health(History({0: {"val_loss": 679.0}, 1: {"val_loss": 194.0}}), judge).ok  # the loss alone
    verdict = health(history, judge)
    assert not verdict.ok and "at chance" in verdict.reason and "val_macro_f1" not in verdict.reason


# -- what a trainable that reports too little is told -------------------------------------------

MANAGED_LIKE = {"val_loss": 1.0, "val_accuracy": 0.5, "chance_accuracy": 0.1, "init_loss": 2.3, "chance_loss": 2.3,
                "grad_norm_first": 0.1, "update_ratio_global": 0.01, "label_frac_max": 0.1, "pred_frac_max": 0.2,
                "train_loss": 0.9, "step": 10.0, "planned_steps": 100.0}


@pytest.mark.parametrize("drop, missing", [
    ((), []),
    (("step", "planned_steps"), ["position"]),
    (("val_accuracy",), ["scores"]),
    (("chance_accuracy",), ["chance"]),
    (("val_accuracy", "label_frac_max"), ["scores", "labels"]),  # a chance figure without its score: no gap
    (("init_loss",), ["init_loss"]),
    (("chance_loss",), ["classes"]),
    (("grad_norm_first",), ["gradients"]),
    (("update_ratio_global",), ["updates"]),
    (("label_frac_max",), ["labels"]),
    (("pred_frac_max",), ["predictions"]),
    (("train_loss",), ["train_loss"]),
    (tuple(k for k in MANAGED_LIKE if k != "val_loss"),
     ["position", "scores", "init_loss", "classes", "gradients", "updates", "labels", "predictions",
      "train_loss"]),  # no scores: the chance line would say the same
])
def test_gaps_name_each_missing_input(drop, missing):
    row = {k: v for k, v in MANAGED_LIKE.items() if k not in drop}
    found = gaps(History({1: row}))
    assert [g.name for g in found] == missing
    assert all(" - " in g.line() for g in found)


def test_gaps_of_an_attempt_stopped_before_training_leave_out_what_training_brings():
    row = {"val_loss": 2.3, "step": 0.0, "planned_steps": 100.0}
    assert [g.name for g in gaps(History({0: row}))] == ["scores", "init_loss", "classes", "labels", "predictions"]
    trained = [g.name for g in gaps(History({0: row, 1: {**row, "step": 10.0}}))]
    assert {"gradients", "updates", "train_loss"} <= set(trained)


def test_gaps_read_every_report_so_far():
    history = History({0: {"val_loss": 2.3, "init_loss": 2.3}, 1: {k: v for k, v in MANAGED_LIKE.items()
                                                                  if k != "init_loss"}})
    assert gaps(history) == []


def test_the_gradient_gap_says_what_is_lost_and_how_to_add_it():
    line = next(g.line() for g in gaps(History({1: {"val_loss": 1.0}})) if g.name == "gradients")
    assert line.startswith("no gradient metrics: vanishing/exploding/dying not detectable - add `Probe")


@pytest.mark.parametrize("row, says", [
    ({"val_loss": 1.0, "val_macro_f1": 0.4, "chance_macro_f1": 0.1, "step": 1.0},
     "val_macro_f1 against the best constant predictor (chance_macro_f1)"),
    ({"val_loss": 1.0, "label_entropy": 2.0}, "val_loss against label_entropy"),
    ({"val_loss": 1.0, "val_accuracy": 0.4}, "not compared with chance (no chance figures)"),
])
def test_judged_by_says_what_health_reads(row, says):
    lines = judged_by(History({1: row}), Judge("val_loss", 0.3), "val_loss", "min")
    assert lines[0] == "healthy: val_loss falls >= 30% from its first report"
    assert says in lines[1]
    assert lines[2].endswith("optimizer step" if "step" in row else "report (no step reported)")


def _engine(inputs: Inputs | None = None) -> tuple[Engine, list]:
    inputs = Inputs() if inputs is None else inputs
    events: list = []
    plan = Plan(config={"lr": 0.1}, aliases={"optimizer.lr": "lr"}, inputs=inputs)
    eng = Engine(plan, build_detectors("val_loss"), load_policies(["builtin"]),
                 journal=lambda event, **data: events.append((event, data)))
    return eng, events


@pytest.mark.parametrize("inputs, missing", [
    (Inputs(), ["position", "scores", "init_loss", "classes"]),
    (Inputs({"accuracy": "acc"}, num_classes=3), ["position", "chance", "init_loss"]),  # no majority share
    (Inputs({"accuracy": "acc"}, num_classes=3, chance_accuracy=0.34), ["position", "init_loss"]),
])
def test_the_first_report_of_training_says_how_the_run_is_judged(inputs, missing):
    eng, events = _engine(inputs)
    eng.suggest("t0")
    for i, loss in enumerate([1.1, 0.7, 0.5]):  # a custom trainable's bare reports: no step
        eng.observe("t0", i, {"val_loss": loss, "acc": 0.3 + 0.2 * i, "train_loss": loss, "grad_norm_first": 1.0,
                              "update_ratio_global": 0.01, "label_frac_max": 0.4, "pred_frac_max": 0.4,
                              "epoch": i})
    eng.complete("t0")
    said = [d for e, d in events if e == "judgement_inputs"]
    assert len(said) == 1  # once, at the first report after training started
    lines = said[0]["missing"]
    prefixes = {"position": "no step/planned_steps", "scores": "no accuracy or macro-F1", "chance": "no chance figures",
                "init_loss": "no loss at initialization", "classes": "no number of classes"}
    assert [next(k for k, p in prefixes.items() if line.startswith(p)) for line in lines] == missing
    report = build_report(eng, "x", "/tmp/x", 1.0, "done")
    assert report.missing_inputs == lines and report.judged_by == said[0]["judged_by"]
    text = report.summary()
    assert text.splitlines()[1].startswith("judged by: healthy: val_loss falls >= 30%")
    assert sum(line.startswith("not judged: ") for line in text.splitlines()) == len(missing)


# -- the spec's judge: section ----------------------------------------------------------------

def _spec(tmp_path, text: str):
    (tmp_path / "train.py").write_text("def train_fn(config):\n    pass\n")
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\n" + text)
    return load_spec(path)


@pytest.mark.parametrize("text, problem", [
    ("trainable: train:train_fn\njudge: {num_classes: 1}\n", "judge.num_classes: expected greater than or equal to 2"),
    ("trainable: train:train_fn\njudge: {metrics: {f1: x}}\n", "judge.metrics.f1: unknown key"),
    ("trainable: train:train_fn\njudge: {chance_accuracy: 1.5}\n", "judge.chance_accuracy: expected less than"),
    ("trainable: train:train_fn\njudge: {metrics: {accuracy: ''}}\n", "judge.metrics.accuracy"),
    ("training: {model: {factory: 'autofix.harness.models:mlp', args: {in_features: 4, num_classes: 3}},"
     " data: {factory: blobs}, optimizer: {name: adam, lr: 0.001}}\njudge: {num_classes: 3}\n",
     "'judge' declares what a custom 'trainable' reports"),
])
def test_a_bad_judge_section_is_named_with_file_and_line(tmp_path, text, problem):
    with pytest.raises(InputError) as info:
        _spec(tmp_path, text)
    assert problem in str(info.value) and "spec.yaml:" in str(info.value)


def test_a_judge_section_becomes_the_engines_inputs(tmp_path):
    spec = _spec(tmp_path, "trainable: train:train_fn\njudge: {metrics: {accuracy: acc, macro_f1: f1},"
                           " num_classes: 5, cross_entropy: false}\n")
    assert spec.judge.inputs() == Inputs({"accuracy": "acc", "macro_f1": "f1"}, 5, False)


# -- autofix.judge_inputs ----------------------------------------------------------------------

def _labels(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y_val = torch.randint(0, 4, (200,), generator=gen)
    y_train = torch.cat([torch.zeros(700, dtype=torch.long), torch.randint(1, 4, (300,), generator=gen)])
    logits = torch.randn(200, 4, generator=gen)
    return y_val, y_train, logits


def test_judge_inputs_match_scikit_learn_and_the_constant_predictor():
    y_val, y_train, logits = _labels()
    out = autofix.judge_inputs(y_val, logits, train_labels=y_train)
    pred = logits.argmax(1).numpy()
    true = y_val.numpy()
    assert out["val_accuracy"] == pytest.approx(float((pred == true).mean()))
    assert out["val_macro_f1"] == pytest.approx(f1_score(true, pred, average="macro", zero_division=0))
    assert out["val_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, pred))
    constant = np.zeros_like(true)  # the training majority, class 0
    assert out["chance_accuracy"] == pytest.approx(float((true == 0).mean()))
    assert out["chance_macro_f1"] == pytest.approx(f1_score(true, constant, labels=[0, 1, 2, 3], average="macro",
                                                            zero_division=0))
    assert out["chance_balanced_accuracy"] == pytest.approx(0.25)
    shares = np.bincount(y_train.numpy()) / len(y_train)
    assert out["label_entropy"] == pytest.approx(float(-(shares * np.log(shares)).sum()))
    assert out["label_frac_max"] == pytest.approx(shares.max()) and out["label_classes"] == 4
    assert out["chance_loss"] == pytest.approx(math.log(4))


@pytest.mark.parametrize("outputs, train, cross_entropy, present, absent", [
    ("logits", True, True, ["chance_loss", "label_entropy", "label_frac_max"], ["val_nonfinite_outputs"]),
    ("logits", False, True, ["chance_loss", "label_entropy"], ["label_frac_max"]),
    ("logits", True, False, ["label_frac_max"], ["chance_loss", "label_entropy"]),
    ("ids", True, True, ["chance_loss", "val_accuracy"], []),
    ("nan", True, True, ["val_nonfinite_outputs", "chance_accuracy"], ["val_balanced_accuracy"]),
])
def test_judge_inputs_by_kind_of_output(outputs, train, cross_entropy, present, absent):
    y_val, y_train, logits = _labels(1)
    given: Any = {"logits": logits, "ids": logits.argmax(1), "nan": logits.clone().fill_(math.nan)}[outputs]
    out = autofix.judge_inputs(y_val, given, train_labels=y_train if train else None, cross_entropy=cross_entropy)
    assert all(k in out for k in present) and not any(k in out for k in absent)
    if outputs == "nan":
        assert math.isnan(out["val_accuracy"]) and math.isnan(out["val_macro_f1"])


@pytest.mark.parametrize("y_true, outputs, message", [
    ([0.5, 0.2], torch.randn(2, 3), "integer class ids"),
    ([0, 1, 2], torch.randn(2, 3), "2 predictions for 3 labels"),
])
def test_judge_inputs_rejects_what_it_cannot_judge(y_true, outputs, message):
    with pytest.raises(ValueError, match=message):
        autofix.judge_inputs(y_true, outputs)


PROBED = {"dead_frac/conv1": 0.1, "dead_frac_max": 0.1, "saturated_frac_max": 0.0, "grad_norm": 1.0,
          "grad_ratio": 1.0, "update_ratio_global": 0.01, "input_mean": 0.1, "input_std": 1.0,
          "input_abs_max": 3.0, "label_frac_max": 0.1, "pred_frac_max": 0.2, "val_macro_f1": 0.5,
          "chance_accuracy": 0.1, "stale_grad_checks": 4.0, "optimizer_steps": 10.0, "val_accuracy": 0.5}


@pytest.mark.parametrize("extra, blind_ones", [
    # bare loss reports: every detector fed by the probes or the harness's scores is blind
    ({}, ["vanishing_gradients", "exploding_gradients", "no_update", "dying_relu", "saturated_activations",
          "label_imbalance", "unnormalized_input", "constant_inputs", "class_collapse", "chance_level",
          "missing_zero_grad", "detached_loss", "nan_metric"]),
    # the probes' streams: only input_spread (the managed harness's epoch-0 check) is missing
    (PROBED, ["constant_inputs"]),
])
def test_a_detector_no_report_feeds_is_said_once_after_epoch_1(extra, blind_ones):
    eng, events = _engine()
    eng.suggest("t0")
    for i, loss in enumerate([1.1, 0.9, 0.7, 0.6]):
        eng.observe("t0", i, {"val_loss": loss, "train_loss": loss, "epoch": i, **extra})
        if i < 2:
            assert not [e for e, _ in events if e == "detectors_blind"], "not before epoch 2"
    eng.complete("t0")
    said = [d["lines"] for e, d in events if e == "detectors_blind"]
    assert len(said) <= 1
    names = [line.split(":", 1)[0] for line in (said[0] if said else [])]
    assert names == blind_ones
    report = build_report(eng, "x", "/tmp/x", 1.0, "done")
    assert report.blind_detectors == (said[0] if said else [])
    assert sum(line.startswith("not detected: dying_relu: no dead_frac_max, dead_frac/* reported - the managed "
                               "harness reports it with training.probes on") for line in report.summary().splitlines()
               ) == ("dying_relu" in names)
