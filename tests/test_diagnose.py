"""``autofix diagnose``: the detectors and policies replayed on logged metrics, no Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from autofix.errors import InputError
from autofix.reports.diagnose import diagnose, format_diagnosis

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "diagnose"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPERIMENT = FIXTURES / "tune_experiment"


def _trial(result, prefix: str):
    return next(t for t in result.trials if t.name.startswith(prefix))


def _assert_diverging_findings(t) -> None:
    assert t.metric == "val_loss"
    assert [(f.symptom, f.iteration) for f in t.findings] == [("diverging_loss", 5), ("nonfinite_loss", 6)]
    assert t.findings[0].evidence == {"first": 2.3, "last": 7.9, "ratio": pytest.approx(7.9 / 2.3), "since_step": 0.0}


def _assert_found_but_not_acted(t) -> None:
    """Logs without a config (a CSV, a Tune trial whose params have no ``optimizer.lr``): the
    engine sees the symptoms, but no candidate action applies, so autofix would not act."""
    _assert_diverging_findings(t)
    assert t.verdict == "unhealthy" and t.policies == [] and t.reports == 7


def _assert_healthy(t) -> None:
    assert t.verdict == "healthy" and t.findings == [] and t.policies == []
    assert t.reports == 16 and t.improvement == pytest.approx((2.305 - 0.173) / 2.305)


def test_diverging_csv_names_the_symptoms():
    result = diagnose(str(FIXTURES / "diverging.csv"))
    assert result.kind == "csv" and result.policies == ["builtin"]
    _assert_found_but_not_acted(result.trials[0])
    text = format_diagnosis(result, as_json=False)
    assert "diverging_loss" in text and "nonfinite_loss" in text and "autofix would act" not in text


@pytest.mark.parametrize("path, spec, metric", [
    pytest.param(FIXTURES / "diverging.csv", EXAMPLES / "digits_lr_too_high.yaml", None, id="csv-spec-config"),
    pytest.param(next(EXPERIMENT.glob("*00000*")), EXAMPLES / "custom_trainable" / "spec.yaml", "val_loss",
                 id="tune-params-spec-knobs"),
])
def test_with_a_config_autofix_acts_once_the_run_is_broken(path, spec, metric):
    result = diagnose(str(path), spec=str(spec), metric=metric)
    t = result.trials[0]
    assert t.verdict == "sick" and t.metric == "val_loss"
    # The divergence at report 5 waits its 5 steps (a spike may pass); the NaN at 6 acts at once.
    assert [(h.policy, h.symptom, h.iteration, h.for_steps, h.at_end) for h in t.policies] == [
        ("nonfinite-lower-lr", "nonfinite_loss", 6, 0, False)]
    assert t.policies[0].action.startswith("scale(path=optimizer.lr, factor=0.1")
    assert [(f.symptom, f.iteration) for f in t.findings] == [("diverging_loss", 5), ("nonfinite_loss", 6)]
    assert t.reports == 7
    assert ("autofix would act at epoch 6: nonfinite-lower-lr (on nonfinite_loss, for 0 steps): "
            "scale(path=optimizer.lr, factor=0.1") in format_diagnosis(result, as_json=False)
    # each policy's state, as Prometheus's alerts: diverging went pending and resolved unfired
    states = [(a["policy"], a["from"], a["to"]) for a in t.alerts]
    assert states == [("diverging-lower-lr", "inactive", "pending"), ("nonfinite-lower-lr", "inactive", "pending"),
                      ("nonfinite-lower-lr", "pending", "firing"), ("diverging-lower-lr", "pending", "inactive")]
    assert "policy nonfinite-lower-lr: pending -> firing at step 6" in format_diagnosis(result, as_json=False)


def test_healthy_csv_finds_nothing():
    result = diagnose(str(FIXTURES / "healthy.csv"))
    _assert_healthy(result.trials[0])
    assert "no symptom found" in format_diagnosis(result, as_json=False)


def test_tune_experiment_two_trials():
    result = diagnose(str(EXPERIMENT))
    assert result.kind == "tune-experiment" and len(result.trials) == 2
    _assert_found_but_not_acted(_trial(result, "train_fn_5e0a1_00000"))
    _assert_healthy(_trial(result, "train_fn_5e0a1_00001"))
    assert format_diagnosis(result, as_json=False).rstrip().endswith("0 sick, 1 unhealthy, 1 healthy")


def test_single_trial_dir_and_progress_csv_only(tmp_path):
    trial = next(EXPERIMENT.glob("*00000*"))
    result = diagnose(str(trial))
    assert result.kind == "trial"
    _assert_found_but_not_acted(result.trials[0])
    copy = tmp_path / trial.name
    shutil.copytree(trial, copy)
    (copy / "result.json").unlink()  # Tune's progress.csv alone gives the same diagnosis
    _assert_found_but_not_acted(diagnose(str(copy)).trials[0])


@pytest.mark.parametrize("attempt, verdict, hits", [
    # hard (exploding gradients): acts at once, as the recorded run did
    pytest.param("a0", "sick", [("exploding-gradients-high-lr", 1, False)], id="a0-hard-at-once"),
    # soft (dying ReLU): 3 reports without `step` are 3 steps, short of the 100-step patience,
    # so the engine acts only when the log ends (the recorded run, older rules, acted at 2)
    pytest.param("a1", "sick", [("dying-relu-high-lr", 2, True)], id="a1-soft-at-the-end"),
    pytest.param("a2", "healthy", [], id="a2-healthy"),
])
def test_autofix_run_dir_replays_each_attempt(attempt, verdict, hits):
    result = diagnose(str(FIXTURES / "digits_run"))
    assert result.kind == "autofix-run" and [t.name for t in result.trials] == ["a0", "a1", "a2"]
    t = _trial(result, attempt)
    assert t.verdict == verdict
    assert [(h.policy, h.iteration, h.at_end) for h in t.policies] == hits


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


def _csv(path: Path, values: list[float], steps_per_report: int | None = None,
         planned: int | None = None) -> Path:
    """A log of val_loss per epoch; with ``step`` (and ``planned_steps``) columns when given."""
    columns = ["epoch", "val_loss"] + (["step"] if steps_per_report else []) + (["planned_steps"] if planned else [])
    rows = [[i, v] + ([i * steps_per_report] if steps_per_report else []) + ([planned] if planned else [])
            for i, v in enumerate(values)]
    path.write_text("\n".join(",".join(str(x) for x in row) for row in [columns, *rows]) + "\n")
    return path


DIVERGING_LATE = [2.3, 1.9, 1.7, 2.6, 4.1, 7.9, 9.5, 12, 15]  # 2x its first value from epoch 5 on


@pytest.mark.parametrize("for_steps, steps_per_report, fired", [
    pytest.param(0, None, (5, False), id="at-once"),
    pytest.param(2, None, (7, False), id="held-2-reports"),
    pytest.param(3, None, (8, False), id="held-3-reports"),
    pytest.param(4, None, (8, True), id="not-held-long-enough-acts-at-the-end"),
    pytest.param(3, 10, (6, False), id="one-report-holds-10-steps"),
    pytest.param(10, 10, (6, False), id="held-exactly-10-steps"),
    pytest.param(11, 10, (7, False), id="held-20-steps"),
])
def test_for_steps_counts_optimizer_steps(tmp_path, for_steps, steps_per_report, fired):
    csv = _csv(tmp_path / "late.csv", DIVERGING_LATE, steps_per_report)
    policy = tmp_path / "mine.yaml"
    policy.write_text("version: 1\npolicies:\n  - {name: diverging-lower-lr, enabled: false}\n"
                      f"  - name: patient\n    when: {{symptom: diverging_loss}}\n    for_steps: {for_steps}\n"
                      "    then: [{action: scale, path: optimizer.lr, factor: 0.5}]\n")
    t = diagnose(str(csv), spec=str(EXAMPLES / "digits_lr_too_high.yaml"),
                 policies=["builtin", str(policy)]).trials[0]
    assert ("diverging_loss", 5) in [(f.symptom, f.iteration) for f in t.findings]
    assert [(h.policy, h.for_steps, (h.iteration, h.at_end)) for h in t.policies] == [("patient", for_steps, fired)]


STUCK = [2.305] + [2.30] * 100  # no progress after the first report


def _spec(tmp_path: Path, optimizer: dict | None = None, patience: dict | None = None) -> Path:
    """examples/digits_lr_too_high.yaml with another optimizer and/or patience."""
    spec = yaml.safe_load((EXAMPLES / "digits_lr_too_high.yaml").read_text())
    if optimizer is not None:
        spec["training"]["optimizer"] = optimizer
    if patience is not None:
        spec["patience"] = patience
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


PLATEAU_ONLY = [("plateau", 2)]
UNEXPLAINED = [("plateau", 2), ("unexplained_failure", 2)]  # nothing names a cause (issue 18)


@pytest.mark.parametrize("optimizer, findings, policy, action", [
    pytest.param({"name": "adam", "lr": 1.0}, PLATEAU_ONLY, "plateau-high-lr",
                 "scale(path=optimizer.lr, factor=0.1,", id="adam-high-lr"),
    pytest.param({"name": "sgd", "lr": 0.1}, PLATEAU_ONLY, "plateau-high-lr-sgd",
                 "scale(path=optimizer.lr, factor=0.1,", id="sgd-high-lr"),
    pytest.param({"name": "adam", "lr": 1.0e-5}, PLATEAU_ONLY, "plateau-low-lr",
                 "scale(path=optimizer.lr, factor=10.0,", id="low-lr"),
    # an unremarkable learning rate names no cause: the isolation ladder, where plateau-fallback guessed before
    pytest.param({"name": "adam", "lr": 1.0e-3}, UNEXPLAINED, "isolation-ladder",
                 "isolate(overfit_batch, simple_model, shuffled_labels)", id="unremarkable-lr"),
])
def test_the_specs_config_decides_the_where_clauses(tmp_path, optimizer, findings, policy, action):
    # 100 steps a report, 600 planned: the plateau shows at step 200 (128-step window), patience
    # is max(100, 0.5 x 600) = 300 steps, by when every plateau policy has held its for_steps
    csv = _csv(tmp_path / "stuck.csv", STUCK[:7], steps_per_report=100, planned=600)
    t = diagnose(str(csv), spec=str(_spec(tmp_path, optimizer))).trials[0]
    assert [(f.symptom, f.iteration) for f in t.findings] == findings
    assert [(h.policy, h.iteration, h.at_end) for h in t.policies] == [(policy, 3, False)]
    assert t.verdict == "sick" and t.policies[0].action.startswith(action)


def test_without_a_config_no_plateau_policy_applies(tmp_path):
    csv = _csv(tmp_path / "stuck.csv", STUCK[:7], steps_per_report=100, planned=600)
    t = diagnose(str(csv)).trials[0]
    # still stuck at its planned end (step 600): slow progress too; no policy can patch no config,
    # and without a batch size the isolation ladder has no attempt size to stay within
    assert [(f.symptom, f.iteration) for f in t.findings] == [("plateau", 2), ("unexplained_failure", 2),
                                                              ("slow_progress", 6)]
    assert t.verdict == "unhealthy" and t.policies == []


@pytest.mark.parametrize("reports, planned, patience, fired", [
    # 10 steps a report: the plateau shows at step 130 (a report before the 128-step window) and
    # plateau-high-lr has held its 32 steps at step 170; soft symptoms also wait for
    # max(patience.min_steps, patience.share x planned) steps
    pytest.param(101, 1000, None, (50, False), id="default-half-of-1000"),
    pytest.param(101, 1000, {"share": 0.3}, (30, False), id="share-0.3"),
    pytest.param(101, 1000, {"min_steps": 0, "share": 0}, (17, False), id="no-patience-for-steps-decides"),
    pytest.param(21, 200, {"min_steps": 180}, (18, False), id="min-steps-above-the-share"),
    pytest.param(41, 1000, None, (40, True), id="log-ends-before-patience"),
])
def test_soft_symptoms_wait_for_patience(tmp_path, reports, planned, patience, fired):
    csv = _csv(tmp_path / "stuck.csv", STUCK[:reports], steps_per_report=10, planned=planned)
    t = diagnose(str(csv), spec=str(_spec(tmp_path, patience=patience))).trials[0]
    assert ("plateau", 13) in [(f.symptom, f.iteration) for f in t.findings]
    assert [(h.policy, (h.iteration, h.at_end)) for h in t.policies] == [("plateau-high-lr", fired)]


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


def test_reports_between_epochs_are_not_read_as_epochs(tmp_path):
    """A managed trial's result.json interleaves reports between epochs (no epoch, step_report 1):
    they are no epoch's, and must not take an epoch's place (training_iteration collides)."""
    from autofix.reports.diagnose import read_metrics_file

    lines = [{"epoch": 0, "val_loss": 2.3, "training_iteration": 1},
             {"step_report": 1.0, "step": 50.0, "step_loss_mean": 1.9, "training_iteration": 2},
             {"epoch": 1, "val_loss": 1.2, "training_iteration": 3},
             {"step_report": 1.0, "step": 100.0, "step_loss_mean": 0.9, "training_iteration": 4},
             {"epoch": 2, "val_loss": 0.7, "training_iteration": 5}]
    path = tmp_path / "result.json"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    rows = read_metrics_file(path)
    assert sorted(rows) == [0, 1, 2] and [rows[k]["val_loss"] for k in sorted(rows)] == [2.3, 1.2, 0.7]
    assert not any("step_loss_mean" in r for r in rows.values())
