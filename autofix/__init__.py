"""autofix: watches training trials on Ray Tune and heals runs whose loss is not decreasing.

The Python API mirrors ``autofix run``: :func:`run` takes a spec (a YAML path, a dict or a
:class:`~autofix.spec.schema.Spec`) and returns the :class:`~autofix.reports.reporting.Report`. Custom Tune
trainables call :func:`report` (and :func:`get_checkpoint`) instead of ``ray.tune.report``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["InputError", "Report", "Spec", "get_checkpoint", "judge_inputs", "load_spec", "report", "run",
           "spike_guard", "step_reporter"]
__version__ = "0.1.0"

from autofix._moved import install as _install_moved
from autofix.errors import InputError
from autofix.spec.schema import Spec, load_spec

_install_moved()  # module paths from before the sub-package layout (a pickled run of an earlier autofix)
if TYPE_CHECKING:  # at run time it is imported lazily, by the module __getattr__ below
    from autofix.reports.reporting import Report


def run(spec: Any, output: Any = None, **kwargs: Any) -> Report:
    """Heal ``spec``; see :func:`autofix.tune.runner.run`."""
    from autofix.tune.runner import run as _run

    return _run(spec, output, **kwargs)


def report(metrics: Any, checkpoint: Any = None, *, step: Any = None, planned_steps: Any = None) -> None:
    """Report metrics from a custom trainable (with ``step`` / ``planned_steps``, the optimizer
    steps done and planned); see :func:`autofix.tune.trial.report`."""
    from autofix.tune.trial import report as _report

    _report(metrics, checkpoint, step=step, planned_steps=planned_steps)


def get_checkpoint(config: Any = None) -> str | None:
    """Directory to resume from inside a custom trainable; see :func:`autofix.tune.trial.get_checkpoint`."""
    from autofix.tune.trial import get_checkpoint as _get

    return _get(config)


def spike_guard(config: Any, model: Any, optimizer: Any, *, loss_fn: Any = None, scheduler: Any = None) -> Any:
    """A custom trainable's in-trial spike guard, None when the spec's is off; see
    :func:`autofix.tune.trial.spike_guard`."""
    from autofix.tune.trial import spike_guard as _guard

    return _guard(config, model, optimizer, loss_fn=loss_fn, scheduler=scheduler)


def step_reporter(every_steps: int = 50, min_interval_s: float = 2.0) -> Any:
    """Reports between epochs from a custom trainable; see :func:`autofix.tune.trial.step_reporter`."""
    from autofix.tune.trial import step_reporter as _reporter

    return _reporter(every_steps, min_interval_s)


def judge_inputs(y_true: Any, outputs: Any, train_labels: Any = None, *, cross_entropy: bool = True) -> dict:
    """Scores and chance figures of a classifier's evaluation, to report with its loss; see
    :func:`autofix.harness.scoring.judge_inputs`."""
    from autofix.harness.scoring import judge_inputs as _judge_inputs

    return _judge_inputs(y_true, outputs, train_labels, cross_entropy=cross_entropy)


def __getattr__(name: str) -> Any:
    if name == "Report":
        from autofix.reports.reporting import Report

        return Report
    raise AttributeError(f"module 'autofix' has no attribute {name!r}")
