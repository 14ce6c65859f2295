"""The isolation rungs as the managed harness runs them (in-process, no Ray): each rung's numbers
on the zoo's broken configs lead to the part at fault (benchmarks/zoo/isolation_zoo.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from autofix.harness.isolation import batch_floor, run_rung
from autofix.rules.isolation import DATA, MODEL, TRAINING_STEP, attempt_examples, conclude, rung_budget
from autofix.spec.training import TrainingSpec

ZOO = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo"


@pytest.fixture(autouse=True, scope="module")
def _zoo_on_path():
    sys.path.insert(0, str(ZOO))
    yield
    sys.path.remove(str(ZOO))


def _config(**over):
    base = {"model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
            "data": {"factory": "isolation_zoo:loaded_digits", "args": {"bug": "none"}},
            "optimizer": {"name": "adam", "lr": 1e-3}, "epochs": 15}
    return TrainingSpec.model_validate({**base, **over}).model_dump(mode="json")


WIDTH_ONE = {"model": {"factory": "autofix.harness.models:mlp",
                       "args": {"in_features": 64, "num_classes": 10, "hidden": [1, 1]}},
             "data": {"factory": "isolation_zoo:loaded_digits", "args": {"bug": "none", "flatten": True}}}


@pytest.mark.parametrize("over, rung, conclusive, part", [
    ({}, "overfit_batch", False, None),  # the healthy config: the step works (or is still falling)
    ({"model": {"factory": "isolation_zoo:frozen_cnn", "args": {}}}, "overfit_batch", True, TRAINING_STEP),
    ({"loss": {"name": "isolation_zoo:argmax_loss", "expects": "logits"}}, "overfit_batch", True, TRAINING_STEP),
    (WIDTH_ONE, "overfit_batch", True, MODEL),
    ({"data": {"factory": "isolation_zoo:loaded_digits", "args": {"bug": "permuted_labels"}}}, "shuffled_labels",
     True, DATA),
    ({"data": {"factory": "isolation_zoo:loaded_digits", "args": {"bug": "constant_inputs"}}}, "shuffled_labels",
     True, DATA),
    ({}, "shuffled_labels", False, None),
    ({}, "simple_model", True, MODEL),  # the baselines learn digits; the user's model (0.1 here) did not
])
def test_rung_on_a_zoo_config_names_the_part(over, rung, conclusive, part):
    config = _config(**over)
    examples = attempt_examples(345, config["batch_size"])
    sizes = rung_budget(rung, examples, config["batch_size"])
    rows = []
    run_rung(config, {"rung": rung, **sizes}, lambda metrics, ckpt: rows.append(metrics))
    assert len(rows) == 1 and "error" not in rows[0], rows
    result = conclude(rung, rows[0], {"val_accuracy": 0.1})
    assert (result.conclusive, result.part) == (conclusive, part), result.conclusion
    assert rows[0]["examples"] <= sizes["budget"]  # each rung within its share of the ladder's 10%


@pytest.mark.parametrize("x, y, expected", [
    (torch.eye(4), torch.tensor([0, 1, 2, 3]), 0.0),  # distinct inputs: any labels can be fit
    (torch.ones(4, 3), torch.tensor([0, 1, 0, 1]), math.log(2)),  # one input, two labels half-half
    (torch.ones(4, 3), torch.tensor([2, 2, 2, 2]), 0.0),
    (torch.tensor([[0.0], [0.0], [1.0], [1.0]]), torch.tensor([0, 1, 3, 3]), math.log(2) / 2),
])
def test_batch_floor_is_the_label_entropy_of_identical_inputs(x, y, expected):
    assert batch_floor(x, y, "cross_entropy") == pytest.approx(expected)
    assert batch_floor(x, y.float(), "mse") == 0.0
