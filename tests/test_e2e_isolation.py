"""End to end through Ray Tune (issue 18): digits whose training labels a loader permuted
independently of the images. No symptom names a cause, so the isolation ladder runs as rung
trials after the user's one attempt, localises the fault to the data, and nothing is relaunched."""

from __future__ import annotations

from pathlib import Path

import pytest

import autofix

pytestmark = pytest.mark.ray

ZOO = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo"


def test_permuted_labels_are_localised_to_the_data_with_no_relaunch(ray_session, tmp_path):
    spec = {
        "name": "iso-permuted",
        "training": {"model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
                     "data": {"factory": "isolation_zoo:loaded_digits", "args": {"bug": "permuted_labels"}},
                     "optimizer": {"name": "adam", "lr": 1e-3}, "epochs": 15},
        "python_path": [str(ZOO)], "ledger": False, "budget": {"max_attempts": 6},
    }
    report = autofix.run(spec, tmp_path / "out")
    users = [a for a in report.attempts if a.trial_id is not None and a.role != "isolation"]
    rungs = [a for a in report.attempts if a.role == "isolation"]
    assert [a.id for a in users] == ["a0"] and report.status == "unfixed"
    assert report.attempt("a0").decision["policy"] == "isolation-ladder"
    assert report.isolation["part"] == "data" and rungs[-1].rung_result["rung"] == "shuffled_labels"
    assert 0 < report.isolation["cost"]["share"] <= 0.1
    assert "data" in report.ended_because and "isolation" in (tmp_path / "out" / "report.html").read_text()
