"""Build the model and the data once before any trial starts: a factory that raises is bad input.

A model or data factory that raises would otherwise fail inside every trial, after Ray has
started, as a traceback and an attempt ``error``. Built here first, its exception becomes one
line naming the spec's file, line and field and the exception's message (exit 2). Locally this
runs in the driver before Ray starts; with a cluster address it runs as one Ray task with a
trial's resources (``ray.cpus_per_trial``, ``ray.gpus_per_trial``), on a node where trials can
run, since the data may exist only there. Custom trainables build their own model and data
inside the user's function: nothing to build here.
"""

from __future__ import annotations

import sys
from typing import Any

from autofix.errors import InputError, Problem
from autofix.spec.schema import Spec

__all__ = ["build_once", "check", "check_remote"]

_PARTS = (("data", "the data"), ("model", "the model"))  # data first: the harness's own order


def build_once(config: dict[str, Any], sys_path: list[str]) -> list[tuple[str, str]]:
    """Build the data and the model of a managed ``config``; ``[(part, "Type: message")]`` for
    each that raised (empty when both built). Runs in the driver or in a Ray task."""
    for path in reversed(sys_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    from autofix.harness.builders import build_data, build_model, normalize_config

    cfg = normalize_config(config)
    builders = {"data": lambda: build_data(cfg["data"], cfg["seed"]),
                "model": lambda: build_model(cfg["model"], cfg.get("architecture"), cfg.get("init"))}
    failed: list[tuple[str, str]] = []
    for part, _ in _PARTS:
        try:
            builders[part]()
        except Exception as exc:  # noqa: BLE001 - the user's factory: any exception is reported
            text = str(exc).strip().splitlines()
            failed.append((part, f"{type(exc).__name__}: {text[0] if text else '(no message)'}"))
    return failed


def _problems(spec: Spec, failed: list[tuple[str, str]], where: str) -> InputError:
    problems = []
    for part, error in failed:
        file, line = spec.where("training", part, "factory")
        what = dict(_PARTS)[part]
        problems.append(Problem(file, line, f"training.{part}.factory",
                                f"building {what} raised {error} (built once {where} before any trial starts)"))
    return InputError(problems)


def check(spec: Spec) -> None:
    """Build the managed model and data in this process; InputError if either factory raises."""
    if spec.training is None:
        return
    failed = build_once(spec.base_config(), spec.search_path())
    if failed:
        raise _problems(spec, failed, "on the driver")


def check_remote(spec: Spec) -> None:
    """The same, as a Ray task on the cluster (Ray is connected); InputError if a factory raises."""
    if spec.training is None:
        return
    import ray

    task = ray.remote(build_once).options(num_cpus=spec.ray.cpus_per_trial, num_gpus=spec.ray.gpus_per_trial,
                                          max_retries=0)
    failed = ray.get(task.remote(spec.base_config(), spec.search_path()))
    if failed:
        raise _problems(spec, failed, "on the cluster")
