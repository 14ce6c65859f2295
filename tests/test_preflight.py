"""Fail before Ray starts, in one line (exit 2): a model or data factory that raises, a managed
spec's metric the harness never reports, knobs that point at no key of the trainable's config.
And a runtime failure (a cluster that is not there) is one line naming the file with the
traceback (exit 3), with no output folder left behind.

The CLI runs in-process (capfd reads the real file descriptors); ``ray_session`` is replaced by
one that fails the test, so "nothing started" is checked, not assumed. The connection test
runs the CLI in a subprocess against a port where no cluster listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import yaml

import autofix.tune.runner
from autofix.cli import main
from autofix.spec.catalogue import HARNESS_METRICS, PROBE_FAMILIES, PROBE_METRICS, harness_reports

from conftest import FIXTURES

MANAGED = {"name": "pre", "training": {
    "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3, "hidden": [8]}},
    "data": {"factory": "blobs", "args": {"n_samples": 60}}, "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 1}, "python_path": [str(FIXTURES)], "ledger": False}


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started for a spec that should have been refused")
    monkeypatch.setattr(autofix.tune.runner, "ray_session", refuse)


def _write(tmp_path, spec: dict) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _line_of(path: str, text: str) -> int:
    return next(i for i, line in enumerate(open(path).read().splitlines(), 1) if text in line)


def _refused(capfd, argv: list[str]) -> str:
    code = main(argv)
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.out + captured.err
    assert len(lines) == 1 and lines[0].startswith("autofix: error: "), lines
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


@pytest.mark.parametrize("part, factory, says", [
    ("model", "broken_factories:model", "building the model raised ValueError: width 8 does not divide the 3 input"),
    ("data", "broken_factories:data", "building the data raised FileNotFoundError: /data/train.npz: no such file"),
])
def test_a_factory_that_raises_is_one_line_with_its_file_and_line(tmp_path, capfd, no_ray, part, factory, says):
    spec = {**MANAGED, "training": {**MANAGED["training"], part: {"factory": factory}}}
    path = _write(tmp_path, spec)
    line = _refused(capfd, ["run", path, "-o", str(tmp_path / "out")])
    assert line.startswith(f"autofix: error: {path}:{_line_of(path, factory)}: training.{part}.factory: {says}")
    assert "before any trial starts" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, says", [
    ("metric", "val_los", "'val_los' is not a metric the managed harness reports (did you mean 'val_loss'?); "
                          "it reports: chance_accuracy,"),
    ("loss_metric", "train_los",
     "'train_los' is not a metric the managed harness reports (did you mean 'train_loss'?)"),
    ("metric", "grad_norm/", "'grad_norm/' is not a metric the managed harness reports"),
])
def test_a_metric_the_harness_never_reports_is_refused_with_the_list(tmp_path, capfd, no_ray, field, value, says):
    spec = {**MANAGED, field: value, **({"metric": "val_accuracy", "mode": "max"} if field == "loss_metric" else {})}
    path = _write(tmp_path, spec)
    line = _refused(capfd, ["run", path, "-o", str(tmp_path / "out")])
    assert f"{path}:{_line_of(path, f'{field}: {value}')}: {field}: {says}" in line
    assert not (tmp_path / "out").exists()


def test_probe_metrics_are_refused_when_the_probes_are_off(tmp_path, capfd, no_ray):
    spec = {**MANAGED, "metric": "grad_ratio", "training": {**MANAGED["training"], "probes": {"enabled": False}}}
    line = _refused(capfd, ["run", _write(tmp_path, spec), "-o", str(tmp_path / "out")])
    assert "'grad_ratio' is not a metric" in line and "val_recall/" not in line


@pytest.mark.parametrize("knobs, says", [
    ({"optimizer.lr": "learning_rate"}, "'optimizer.lr' -> 'learning_rate': not a key of the trainable's 'config'; "
                                        "its keys are: lr, opt.momentum, epochs"),
    ({"optimizer.lr": "lr", "optimizer.momentum": "opt.beta"}, "'optimizer.momentum' -> 'opt.beta'"),
])
def test_knobs_must_point_at_keys_of_the_config(tmp_path, capfd, no_ray, knobs, says):
    spec = {"name": "k", "trainable": "failing_trainable:train_fn", "python_path": [str(FIXTURES)],
            "config": {"lr": 1.0, "opt": {"momentum": 0.9}, "epochs": 3}, "knobs": knobs, "metric": "loss"}
    path = _write(tmp_path, spec)
    line = _refused(capfd, ["run", path, "-o", str(tmp_path / "out")])
    assert f"{path}:{_line_of(path, 'knobs:')}: knobs: {says}" in line


def test_nested_knob_targets_and_any_custom_metric_are_accepted():
    from autofix.spec.schema import load_spec

    spec = load_spec({"name": "k", "trainable": "os:getcwd", "config": {"opt": {"lr": 1.0}},
                      "knobs": {"optimizer.lr": "opt.lr"}, "metric": "my_own_loss"})
    assert spec.knobs == {"optimizer.lr": "opt.lr"} and spec.metric == "my_own_loss"


def _reported_keys(config: dict) -> set[str]:
    from autofix.harness import run_training
    from autofix.spec.schema import load_spec

    rows: list[dict] = []
    run_training(load_spec({"name": "k", "training": config}).base_config(), lambda m, d: rows.append(m))
    return {key for row in rows for key in row}


def test_the_catalogue_is_what_the_harness_reports():
    """Both ways: every key a real run reports is accepted, and every listed name is reported by
    one of these runs (a ReLU CNN on digits; a sigmoid MLP, for saturation)."""
    cnn = {"model": {"factory": "autofix.harness.models:small_cnn"}, "data": {"factory": "digits"},
           "optimizer": {"name": "adam", "lr": 1e-3}, "epochs": 1}
    sigmoid = {"model": {"factory": "autofix.harness.models:mlp",
                         "args": {"in_features": 2, "num_classes": 3, "hidden": [8], "activation": "sigmoid"}},
               "data": {"factory": "blobs", "args": {"n_samples": 90}}, "optimizer": {"name": "adam", "lr": 1e-2},
               "epochs": 1}
    keys = _reported_keys(cnn) | _reported_keys(sigmoid)
    assert {k for k in keys if not harness_reports(k)} == set()
    families = {k.split("/")[0] + "/" for k in keys if "/" in k}
    assert set(HARNESS_METRICS) | set(PROBE_METRICS) <= keys and set(PROBE_FAMILIES) <= families
    plain = _reported_keys({**cnn, "probes": {"enabled": False}})
    assert {k for k in plain if not harness_reports(k, probes=False)} == set()


def test_a_cluster_that_is_not_there_is_one_line_and_no_output_folder(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    spec = {"name": "x", "trainable": "failing_trainable:train_fn", "python_path": [str(FIXTURES)],
            "config": {"lr": 1.0}, "metric": "loss", "ledger": False}
    path = _write(tmp_path, spec)
    # Ray's connect window: ~5 s instead of ~40 s (one try: 5 s to connect, 5 to subscribe, 30 to wait)
    env = {**os.environ, "RAY_gcs_server_port_wait_time_s": "1", "RAY_py_gcs_connect_timeout_s": "2",
           "RAY_gcs_rpc_server_connect_timeout_s": "1"}
    done = subprocess.run([sys.executable, "-m", "autofix.cli", "run", path, "-o", str(tmp_path / "out"),
                           "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, env=env, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("autofix: error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    log = lines[0].rsplit("full traceback: ", 1)[1]
    assert os.path.isfile(log) and "Traceback" in open(log).read()
    assert not (tmp_path / "out").exists()


def test_the_harness_builds_every_option_the_catalogue_lists_and_no_other():
    """Option lists are declared once (autofix.spec.catalogue); the harness's registries build them."""
    from autofix.harness.builders import OPTIMIZERS
    from autofix.harness.initialize import SCHEMES
    from autofix.harness.models import ACTIVATIONS
    from autofix.harness.schedules import SCHEDULERS
    from autofix.harness.surgery import OUTPUTS
    from autofix.spec import catalogue
    assert sorted(OPTIMIZERS) == sorted(catalogue.OPTIMIZERS)
    assert sorted(SCHEDULERS) == sorted(catalogue.SCHEDULERS)
    assert sorted(ACTIVATIONS) == sorted(catalogue.ACTIVATIONS)
    assert sorted(SCHEMES) == sorted(catalogue.INIT_SCHEMES)
    assert sorted(OUTPUTS) == sorted(catalogue.OUTPUT_ACTIVATIONS)


@pytest.mark.parametrize("name, known", [
    ("val_loss", True), ("dead_frac/features.0", True), ("dead_frac/", False), ("dead_frac", False),
    ("nonfinite_output/3", True), ("train_workers", True), ("dead_frac_maxx", False), ("my_metric", False),
])
def test_is_metric_knows_names_and_family_members(name, known):
    from autofix.spec.catalogue import is_metric
    assert is_metric(name) is known
