"""End to end through a real Ray Tune run (not mocked): the acceptance examples of issue A."""

from __future__ import annotations

import json
import math

import pytest
import yaml

import autofix
from autofix.cli import main
from autofix.reports.diagnose import diagnose
from autofix.reports.journal import read_journal

from conftest import EXAMPLES, FIXTURES

pytestmark = pytest.mark.ray
# A learning rate of 1.0 shows as a stuck/diverging loss or, with probes, as a gradient explosion.
LR_TOO_HIGH = {"plateau", "diverging_loss", "nonfinite_loss", "oscillating_loss", "exploding_gradients"}


def test_digits_lr_too_high_is_fixed_by_the_cli(ray_session, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(EXAMPLES / "digits_lr_too_high.yaml"), "--output", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "fixed"
    first = report["attempts"][0]
    assert first["parent"] is None and first["outcome"] == "sick"
    assert first["decision"]["finding"]["symptom"] in LR_TOO_HIGH
    winner = next(a for a in report["attempts"] if a["id"] == report["winner"])
    assert winner["config"]["optimizer"]["lr"] < first["config"]["optimizer"]["lr"]
    series = [v for _, v in winner["series"]]
    assert series[-1] <= 0.7 * series[0]  # the watched loss fell >= 30%
    assert winner["last_metrics"]["val_accuracy"] >= 0.9
    for a in report["attempts"][1:]:
        assert a["parent"] and a["policy"] and a["patch"]
        assert {"path", "from", "to"} <= set(a["patch"][0])
    events = [r["event"] for r in read_journal(out / "journal.jsonl")]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert "decision" in events and "finding" in events
    assert (out / "tune").is_dir()
    html = (out / "report.html").read_text()
    assert 'id="chart"' in html and 'id="lineage"' in html and "data:image/png;base64," in html
    assert "FIXED" in capsys.readouterr().out


def test_healthy_spec_gives_one_attempt_and_no_alarm(ray_session, tmp_path):
    report = autofix.run(EXAMPLES / "digits_healthy.yaml", tmp_path / "out")
    assert report.status == "healthy"
    assert [a.id for a in report.attempts] == ["a0"]
    assert report.attempts[0].findings == []
    assert report.winner == "a0"
    # every detector is fed: a metric renamed on one side of the catalogue would show here
    assert report.blind_detectors == []
    offline = diagnose(str(tmp_path / "out" / "tune"))  # Ray Tune's own experiment directory
    assert [f for s in offline.trials for f in s.findings] == []


def test_custom_trainable_is_healed_through_its_own_lr_key(ray_session, tmp_path):
    report = autofix.run(EXAMPLES / "custom_trainable" / "spec.yaml", tmp_path / "out")
    assert report.status == "fixed"
    winner = report.attempt(report.winner)
    assert winner.config["lr"] < 20.0
    assert all(c["path"] == "optimizer.lr" for a in report.attempts for c in a.patch)
    offline = diagnose(str(tmp_path / "out" / "tune"), metric="val_loss")  # no relaunch, from the logs
    seen = {f.symptom for s in offline.trials if s.name.startswith(("a0", "a1")) for f in s.findings}
    assert seen & {"nonfinite_loss", "diverging_loss"}, seen


def _custom_spec(fn: str, **extra) -> dict:
    return {"name": "fixture", "trainable": f"failing_trainable:{fn}", "config": {"lr": 0.1},
            "metric": "loss", "python_path": [str(FIXTURES)], **extra}


def test_a_raising_trial_is_an_error_not_a_symptom(ray_session, tmp_path):
    report = autofix.run(_custom_spec("train_fn"), tmp_path / "out")
    assert report.status == "unfixed"
    assert [a.id for a in report.attempts] == ["a0"]  # no remedy launched for a code error
    a0 = report.attempts[0]
    assert a0.outcome == "error" and a0.findings == []
    assert "boom: the data loader fell over" in a0.error
    assert "ValueError" in a0.reason


def test_a_report_without_the_watched_metric_is_rejected_by_name(ray_session, tmp_path):
    report = autofix.run(_custom_spec("typo_fn"), tmp_path / "out")
    a0 = report.attempts[0]
    assert a0.outcome == "error"
    assert "no metric 'loss'" in a0.reason and "los" in a0.reason


def test_python_api_accepts_a_dict_and_the_budget_bounds_attempts(ray_session, tmp_path):
    spec = yaml.safe_load((EXAMPLES / "digits_lr_too_high.yaml").read_text())
    spec["budget"] = {"max_attempts": 1}
    report = autofix.run(spec, tmp_path / "out")
    assert report.status == "unfixed"
    launched = [a for a in report.attempts if a.trial_id is not None]
    assert len(launched) == 1
    assert report.attempts[0].decision is not None  # the sickness was still diagnosed
    assert report.attempts[0].decision["child"] is None
    assert math.isfinite(report.duration_s)
