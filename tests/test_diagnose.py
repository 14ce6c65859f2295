"""``autofix diagnose``: the detectors and policies replayed on logged metrics, no Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from autofix.diagnose import diagnose, format_diagnosis
from autofix.errors import InputError
from autofix.reporting import Report

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "diagnose"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPERIMENT = FIXTURES / "tune_experiment"


def _trial(result, prefix: str):
    return next(t for t in result.trials if t.name.startswith(prefix))


def _assert_diverging(t) -> None:
    assert t.verdict == "sick" and t.metric == "val_loss"
    assert [(f.symptom, f.iteration) for f in t.findings] == [("diverging_loss", 5), ("nonfinite_loss", 6)]
    assert t.findings[0].evidence == {"first": 2.3, "last": 7.9, "ratio": pytest.approx(7.9 / 2.3)}
    assert [(h.policy, h.iteration, h.at_end) for h in t.policies] == [
        ("diverging-lower-lr", 5, False), ("nonfinite-lower-lr", 6, False)]
    assert t.policies[0].action.startswith("scale(path=optimizer.lr, factor=0.1")


def _assert_healthy(t) -> None:
    assert t.verdict == "healthy" and t.findings == [] and t.policies == []
    assert t.reports == 16 and t.improvement == pytest.approx((2.305 - 0.173) / 2.305)


def test_diverging_csv_names_the_symptoms_and_the_policy():
    result = diagnose(str(FIXTURES / "diverging.csv"))
    assert result.kind == "csv" and result.policies == ["builtin"]
    _assert_diverging(result.trials[0])
    text = format_diagnosis(result, as_json=False)
    assert "diverging_loss" in text and "nonfinite_loss" in text
    assert "would fire at epoch 5: diverging-lower-lr" in text and "what autofix would do first" in text


def test_healthy_csv_finds_nothing():
    result = diagnose(str(FIXTURES / "healthy.csv"))
    _assert_healthy(result.trials[0])
    assert "no symptom found" in format_diagnosis(result, as_json=False)


def test_tune_experiment_two_trials():
    result = diagnose(str(EXPERIMENT))
    assert result.kind == "tune-experiment" and len(result.trials) == 2
    _assert_diverging(_trial(result, "train_fn_5e0a1_00000"))
    _assert_healthy(_trial(result, "train_fn_5e0a1_00001"))
    assert format_diagnosis(result, as_json=False).rstrip().endswith("1 sick, 0 unhealthy, 1 healthy")


def test_single_trial_dir_and_progress_csv_only(tmp_path):
    trial = next(EXPERIMENT.glob("*00000*"))
    result = diagnose(str(trial))
    assert result.kind == "trial"
    _assert_diverging(result.trials[0])
    copy = tmp_path / trial.name
    shutil.copytree(trial, copy)
    (copy / "result.json").unlink()  # Tune's progress.csv alone gives the same diagnosis
    _assert_diverging(diagnose(str(copy)).trials[0])


def test_autofix_run_dir_agrees_with_the_run():
    run = FIXTURES / "digits_run"
    result = diagnose(str(run))
    report = Report.model_validate_json((run / "report.json").read_text())
    assert result.kind == "autofix-run" and [t.name for t in result.trials] == ["a0", "a1", "a2"]
    for attempt in report.attempts:
        t = _trial(result, attempt.id)
        if attempt.decision:  # what the run did is what the diagnosis says it would do first
            first = t.policies[0]
            decided = attempt.decision
            assert (first.policy, first.iteration) == (decided["policy"], decided["finding"]["iteration"])
        else:
            assert t.verdict == "healthy"


def test_autofix_run_without_tune_files_uses_the_report_series():
    result = diagnose(str(FIXTURES / "overfitting_run"))
    assert [t.name for t in result.trials] == ["a0", "a1", "a2"]  # a3 raised before reporting anything
    assert all("report.json (series of val_loss only)" in t.source for t in result.trials)
    assert _trial(result, "a1").reports == 10  # the warm restart's inherited epochs included


def test_metric_fallback_and_choice():
    result = diagnose(str(FIXTURES / "train_loss_only.csv"))
    t = result.trials[0]
    assert t.metric == "loss" and "no val_loss logged" in t.metric_note
    assert diagnose(str(FIXTURES / "diverging.csv"), metric="train_loss").trials[0].metric == "train_loss"
    with pytest.raises(InputError, match="no 'accuracy' logged; metrics: epoch, train_loss, val_accuracy, val_loss"):
        diagnose(str(FIXTURES / "diverging.csv"), metric="accuracy")


def test_for_steps_is_respected(tmp_path):
    csv = tmp_path / "late.csv"
    values = [2.3, 1.9, 1.7, 2.6, 4.1, 7.9, 9.5, 12]  # diverging from epoch 5 on, for 3 reports
    csv.write_text("epoch,val_loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    policy = tmp_path / "mine.yaml"
    policy.write_text("version: 1\npolicies:\n  - {name: diverging-lower-lr, enabled: false}\n"
                      "  - name: patient\n    when: {symptom: diverging_loss}\n    for_steps: 3\n"
                      "    then: [{action: scale, path: optimizer.lr, factor: 0.5}]\n")
    t = diagnose(str(csv), policies=["builtin", str(policy)]).trials[0]
    assert ("diverging_loss", 5) in [(f.symptom, f.iteration) for f in t.findings]
    hit = next(h for h in t.policies if h.policy == "patient")
    assert (hit.iteration, hit.for_steps, hit.at_end) == (7, 3, False)
    assert "diverging-lower-lr" not in [h.policy for h in t.policies]


def test_spec_supplies_the_config_for_where_clauses(tmp_path):
    csv = tmp_path / "stuck.csv"
    csv.write_text("val_loss\n2.305\n2.541\n2.366\n2.336\n2.367\n2.385\n")  # no epoch column: row index
    with_spec = diagnose(str(csv), spec=str(EXAMPLES / "digits_lr_too_high.yaml")).trials[0]
    assert (with_spec.policies[0].policy, with_spec.policies[0].iteration) == ("plateau-high-lr", 5)
    without = diagnose(str(csv)).trials[0]  # no config: the lr conditions cannot hold
    assert "plateau-high-lr" not in [h.policy for h in without.policies]
    assert without.verdict == "unhealthy" and without.policies[0].at_end


def test_json_output_is_strict_json():
    text = format_diagnosis(diagnose(str(FIXTURES / "diverging.csv")), as_json=True)
    data = json.loads(text)
    assert data["trials"][0]["last"] == "NaN" and data["trials"][0]["findings"][1]["evidence"]["value"] == "NaN"
    assert "NaN," not in text  # non-finite numbers are strings, as in report.json


@pytest.mark.parametrize(("path", "message"), [
    ("missing.csv", "no such file or directory"),
    ("empty.csv", "empty CSV: expected a header row of metric names"),
    ("text_only.csv", "no numeric metric column; columns: optimizer, run"),
    ("no_results", "no result.json or progress.csv here nor in any subfolder"),
])
def test_bad_input(path, message):
    with pytest.raises(InputError) as err:
        diagnose(str(FIXTURES / path))
    problem = err.value.problems[0]
    assert problem.file == str(FIXTURES / path) and message in problem.message


def test_bad_input_header_only_and_broken_json(tmp_path):
    (tmp_path / "header.csv").write_text("epoch,val_loss\n")
    with pytest.raises(InputError, match="no reports in the file"):
        diagnose(str(tmp_path / "header.csv"))
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "result.json").write_text('{"epoch": 0, "val_loss": 2.3}\n{"epoch": 1, "val_lo\n')
    with pytest.raises(InputError) as err:
        diagnose(str(trial))
    assert err.value.problems[0].line == 2 and "expected one JSON object per line" in str(err.value)
