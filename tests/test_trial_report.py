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


@pytest.fixture
def tune_reports(monkeypatch):
    """What reaches Ray Tune (no Tune session needed)."""
    import ray.tune

    sent = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, checkpoint=None: sent.append(metrics))
    return sent


@pytest.mark.parametrize("kwargs, fragment", [
    pytest.param({"step": -1}, "step must be a finite number >= 0, got -1", id="negative-step"),
    pytest.param({"step": float("nan")}, "step must be a finite number >= 0, got nan", id="nan-step"),
    pytest.param({"step": float("inf")}, "step must be a finite number >= 0, got inf", id="inf-step"),
    pytest.param({"step": "10"}, "step must be a finite number >= 0", id="string-step"),
    pytest.param({"step": True}, "step must be a finite number >= 0", id="bool-step"),
    pytest.param({"planned_steps": -5}, "planned_steps must be a finite number >= 0", id="negative-planned"),
    pytest.param({"planned_steps": float("nan")}, "planned_steps must be a finite number >= 0", id="nan-planned"),
    pytest.param({"step": 11, "planned_steps": 10}, "step 11 is beyond planned_steps 10", id="step-beyond-planned"),
])
def test_a_bad_position_is_rejected_before_tune(kwargs, fragment, tune_reports):
    with pytest.raises(ValueError, match=fragment):
        autofix.report({"loss": 1.0}, **kwargs)
    assert tune_reports == []


@pytest.mark.parametrize("kwargs, sent", [
    pytest.param({}, {"loss": 1.0}, id="no-position"),
    pytest.param({"step": 0, "planned_steps": 0}, {"loss": 1.0, "step": 0.0, "planned_steps": 0.0}, id="zero"),
    pytest.param({"step": 10, "planned_steps": 10}, {"loss": 1.0, "step": 10.0, "planned_steps": 10.0},
                 id="step-at-planned"),
    pytest.param({"step": 7}, {"loss": 1.0, "step": 7.0}, id="step-only"),
    pytest.param({"planned_steps": 300}, {"loss": 1.0, "planned_steps": 300.0}, id="planned-only"),
])
def test_a_valid_position_is_reported_with_the_metrics(kwargs, sent, tune_reports):
    autofix.report({"loss": 1.0}, **kwargs)
    assert tune_reports == [sent]


class _Queue:
    """Stands for the relay's one-slot ``ray.util.queue.Queue``: raises ``error`` or keeps the item."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error, self.items = error, []

    def put_nowait(self, item: dict) -> None:
        if self.error is not None:
            raise self.error
        self.items.append(item)


def _actor_died() -> BaseException:
    from ray.exceptions import RayActorError

    return RayActorError()


@pytest.mark.parametrize("error, kept", [
    pytest.param(None, 1, id="relayed"),
    pytest.param("full", 0, id="slot-holds-an-epoch-report-dropped"),
    pytest.param("dead", 0, id="trial-being-stopped-dropped"),
])
def test_rank_zero_step_reports_are_best_effort(error, kept):
    from ray.util.queue import Full

    from autofix.tune.ddp import _step_report

    queue = _Queue({"full": Full(), "dead": _actor_died(), None: None}[error])
    _step_report(queue, {"step_report": 1.0, "step": 50.0})  # never raises into the training loop
    assert len(queue.items) == kept
    if kept:  # no controller: the relay keeps the one it got from the last epoch report
        assert queue.items[0] == {"metrics": {"step_report": 1.0, "step": 50.0}, "checkpoint": None,
                                  "controller": None}
