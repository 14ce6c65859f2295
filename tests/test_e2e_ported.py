"""End to end through Ray Tune: a Keras-style model that is NaN before any step is healed by
replacing the kind of activation that overflows, with its matching init; the output head and
the learning rate are left alone."""

from __future__ import annotations

import pytest

import autofix

from conftest import FIXTURES

pytestmark = pytest.mark.ray


def test_exponential_activations_nan_at_init_are_swapped_never_the_learning_rate(ray_session, tmp_path):
    spec = {
        "name": "ported-exp",
        "training": {"model": {"factory": "ported_models:exp_mlp"},
                     "data": {"factory": "blobs", "args": {"n_samples": 300}},
                     "loss": {"name": "categorical_crossentropy"},
                     "optimizer": {"name": "adam", "lr": 0.01, "kwargs": {"eps": 1.0e-7}},
                     "batch_size": 32, "epochs": 8},
        "python_path": [str(FIXTURES)], "ledger": False, "budget": {"max_attempts": 3},
    }
    report = autofix.run(spec, tmp_path / "out")
    a0 = report.attempt("a0")
    assert a0.decision["finding"]["symptom"] == "nonfinite_at_init" and a0.decision["finding"]["iteration"] == 0
    assert "(Exponential, an activation" in a0.decision["finding"]["reason"]
    a1 = report.attempt("a1")
    assert {c["path"]: c["to"] for c in a1.patch} == {
        "architecture.activation": "selu", "architecture.activation_scope": "nonfinite",
        "init": {"scheme": "lecun_normal", "pattern": None, "types": ["Conv1d", "Conv2d", "Linear"], "head": False}}
    assert a1.config["optimizer"] == a0.config["optimizer"]  # the learning rate was not the remedy
    assert report.status == "fixed" and report.winner == "a1"
