"""`autofix.report` validates the metric stream at the boundary, before anything reaches Tune."""

from __future__ import annotations

import pytest

import autofix


@pytest.mark.parametrize("metrics, error, fragment", [
    ({}, TypeError, "non-empty mapping"),
    ([("loss", 1.0)], TypeError, "non-empty mapping"),
    ({1: 2.0}, TypeError, "metric names must be strings"),
    ({"loss": [1.0, 2.0]}, TypeError, "metric 'loss' must be a number, got list"),
    ({"loss": None}, TypeError, "metric 'loss' must be a number, got NoneType"),
])
def test_bad_metrics_are_rejected_with_the_metric_named(metrics, error, fragment):
    with pytest.raises(error, match=fragment):
        autofix.report(metrics)


def test_a_checkpoint_must_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="checkpoint must be a directory"):
        autofix.report({"loss": 1.0}, checkpoint=tmp_path / "missing")


def test_report_stays_a_function_after_every_module_is_imported():
    import importlib
    import pkgutil

    for mod in pkgutil.walk_packages(autofix.__path__, "autofix."):
        importlib.import_module(mod.name)  # a submodule named like the API would shadow it
    assert callable(autofix.report) and callable(autofix.run) and callable(autofix.get_checkpoint)
