"""Spec validation at the boundary: every problem at once, with file, line and field."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from autofix.errors import InputError
from autofix.spec.schema import BUILTIN_DATASETS, load_spec

from conftest import EXAMPLES, FIXTURES, ROOT


def test_bad_spec_lists_each_problem_with_its_line():
    with pytest.raises(InputError) as err:
        load_spec(FIXTURES / "bad_spec.yaml")
    lines = [str(p) for p in err.value.problems]
    path = str(FIXTURES / "bad_spec.yaml")
    assert lines == [
        f"{path}:4: training.model.factory: cannot import module 'no_such_module' (No module named "
        "'no_such_module'); it is looked up in the spec's folder and 'python_path'",
        f"{path}:6: training.optimizer.lr: expected a valid number, unable to parse string as a number, got 'fast'",
        f"{path}:8: training.colour: unknown key; expected one of: architecture, batch_size, checkpoint_every, "
        "data, epochs, grad_clip, init, loss, min_epoch_s, model, optimizer, probes, scheduler, seed, spike_guard, "
        "step_reports",
    ]


@pytest.mark.parametrize(
    "patch, field, fragment",
    [
        ({"metric": 3}, "metric", "expected a valid string"),
        ({"budget": {"max_attempts": 0}}, "budget.max_attempts", "greater than or equal to 1"),
        ({"training": {"optimizer": {"name": "adamm", "lr": 0.1}}}, "training.optimizer.name", "available: adagrad"),
        ({"training": {"data": {"factory": "digitz"}}}, "training.data.factory", "builtin dataset"),
        ({"training": {"model": {"args": {"num_class": 3}}}}, "training.model.args", "it accepts: num_classes"),
        ({"training": {"epochs": "many"}}, "training.epochs", "valid integer"),
        ({"symptoms": {"plateu": {}}}, "symptoms.plateu", "unknown key; expected one of:"),
        ({"symptoms": {"plateau": {"window_steps": 0}}}, "symptoms.plateau.window_steps", "greater than or equal to 1"),
        ({"symptoms": {"plateau": {"window_share": 1.5}}}, "symptoms.plateau.window_share", "less than or equal to 1"),
        ({"symptoms": {"plateau": {"window": 5}}}, "symptoms.plateau.window", "unknown key; expected one of: "
         "converged_drop, metric, min_improvement, window_share, window_steps"),
        ({"symptoms": {"overfitting": {"patience": 3}}}, "symptoms.overfitting.patience", "unknown key"),
        ({"symptoms": {"class_collapse": {"min_epochs": 2}}}, "symptoms.class_collapse.min_epochs", "unknown key"),
        ({"patience": {"min_steps": -1}}, "patience.min_steps", "greater than or equal to 0"),
        ({"patience": {"share": 1.5}}, "patience.share", "less than or equal to 1"),
        ({"patience": {"steps": 100}}, "patience.steps", "unknown key; expected one of: min_steps, share"),
        ({"trainable": "autofix.harness.models:mlp"}, "", "exactly one of 'training'"),
        ({"mode": "max"}, "", "loss_metric"),
        ({"success": {"min_drop": float("nan")}}, "success.min_drop", "got nan"),
    ],
)
def test_field_errors_name_the_field(tmp_path, patch, field, fragment):
    spec = yaml.safe_load((EXAMPLES / "digits_healthy.yaml").read_text())
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            for k, v in value.items():
                merge = isinstance(v, dict) and isinstance(spec[key].get(k), dict)
                spec[key][k] = {**spec[key][k], **v} if merge else v
        else:
            spec[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError) as err:
        load_spec(path)
    problems = err.value.problems
    assert any(p.field == field and fragment in p.message and p.line for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize("patience, expected", [
    pytest.param(None, (100, 0.5), id="defaults"),
    pytest.param({"min_steps": 0}, (0, 0.5), id="no-floor"),
    pytest.param({"share": 0.25}, (100, 0.25), id="own-share"),
    pytest.param({"min_steps": 500, "share": 1.0}, (500, 1.0), id="both"),
])
def test_patience_section_sets_the_soft_symptoms_wait(tmp_path, patience, expected):
    spec = yaml.safe_load((EXAMPLES / "digits_healthy.yaml").read_text())
    if patience is not None:
        spec["patience"] = patience
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path).patience
    assert (loaded.min_steps, loaded.share) == expected


@pytest.mark.parametrize("text, fragment", [
    ("", "file is empty"),
    ("name: [unclosed", "invalid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("name: a\nname: b\n", "duplicate key"),
    ("\x00\x01binary", "invalid YAML"),
])
def test_unreadable_specs_are_input_errors(tmp_path, text, fragment):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_spec(path)
    assert fragment in str(err.value)


def test_builtin_dataset_names_match_the_harness():
    from autofix.harness import DATASETS

    assert tuple(sorted(DATASETS)) == BUILTIN_DATASETS


def test_every_shipped_example_validates():
    for path in [*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*/spec.yaml")]:
        assert load_spec(path).name


def test_cli_bad_spec_exits_2_without_traceback_or_output(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "autofix.cli", "run", str(FIXTURES / "bad_spec.yaml"), "--output", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("autofix: error:")]) == 3
    assert "bad_spec.yaml:4: training.model.factory" in proc.stderr
    assert not out.exists()  # nothing started, nothing written


def test_cli_refuses_to_overwrite_a_run_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "autofix.cli", "run", str(EXAMPLES / "digits_healthy.yaml"), "--output", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (out / "report.json").read_text() == "{}"


def test_infinite_and_nan_numbers_are_rejected_everywhere(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text('version: 1\nname: x\ntrainable: "os:getcwd"\nray: {cpus_per_trial: .inf}\n'
                    "symptoms:\n  diverging_loss: {factor: .nan}\n")
    with pytest.raises(InputError) as err:
        load_spec(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}:4: ray.cpus_per_trial: expected a finite number, got inf",
        f"{path}:6: symptoms.diverging_loss.factor: expected a finite number, got nan",
    ]


@pytest.mark.parametrize("config, says", [
    ("{lr: {'': 1, 0: 2}}", "config: config.lr: keys must be strings, got 0 (int); quote it"),  # found by the fuzzer
    ("{1: 0.1}", "config[1]: expected a valid string, got 1"),
    ("{layers: [{2: 3}]}", "config: config.layers[0]: keys must be strings, got 2 (int); quote it"),
])
def test_a_custom_config_with_a_non_string_key_is_refused(tmp_path, config, says):
    path = tmp_path / "spec.yaml"
    path.write_text(f'version: 1\nname: x\ntrainable: "os:getcwd"\nconfig: {config}\n')
    with pytest.raises(InputError) as err:
        load_spec(path)
    assert [str(p) for p in err.value.problems] == [f"{path}:4: {says}"]
