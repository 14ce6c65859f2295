"""Parallel candidate fixes through a real Ray Tune run: two learning rates race, one wins."""

from __future__ import annotations

import pytest
import yaml

import autofix

from conftest import EXAMPLES

pytestmark = pytest.mark.ray


def test_two_candidate_lrs_race_and_the_loser_is_stopped(ray_session, tmp_path):
    spec = yaml.safe_load((EXAMPLES / "digits_lr_too_high.yaml").read_text())
    spec["budget"]["max_concurrent"] = 2
    report = autofix.run(spec, tmp_path / "out")
    assert report.status == "fixed"
    a0 = report.attempt("a0")
    race = a0.decision["race"]
    assert [e["child"] for e in race] == ["a1", "a2"]
    lrs = [report.attempt(e["child"]).config["optimizer"]["lr"] for e in race]
    assert lrs == pytest.approx([0.1, 0.01])
    assert report.attempt("a1").race == ["a1", "a2"] == report.attempt("a2").race
    winner = report.attempt(report.winner)
    assert winner.outcome == "healthy" and winner.config["optimizer"]["lr"] == pytest.approx(0.01)
    # nothing keeps training after the win: every other attempt ended sick, stopped or never ran
    others = {a.id: a.outcome for a in report.attempts if a.id != report.winner}
    assert set(others.values()) <= {"sick", "stopped", "not_launched"}, others
    assert "race a1 with optimizer.lr" in a0.decision["reason"]
