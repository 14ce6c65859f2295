"""Reports between epochs: the training loss of the last steps, sent to the driver as they go.

Epoch reports carry what the epoch detectors judge; an epoch of a long run can take hours, and a
person watching it (the live view, the report's chart) wants to see the loss in steps. With
``training.step_reports.enabled`` (the default), the managed harness sends a report once at least
``every_steps`` optimizer steps **and** ``min_interval_s`` seconds have passed since the last
(``ray.tune.report`` costs the trial 1.9-2.3 ms, ``benchmarks/step_report_cost.py``: one every
2 s is at most 0.12% of training time). A step
report is marked ``step_report = 1``; the engine keeps it out of the attempt's history (no epoch
detector reads it) and records it in the attempt's step series (:mod:`autofix.rules.detection`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from autofix.judge.history import PLANNED, STEP, STEP_REPORT
from autofix.spec.training import StepReportSpec

__all__ = ["StepReporter"]


class StepReporter:
    """Collects step losses and emits a report when both thresholds are met."""

    def __init__(self, cfg: dict[str, Any] | None, emit: Callable[[dict[str, float]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        spec = StepReportSpec(**(cfg or {}))
        self.every, self.interval, self.emit, self.clock = spec.every_steps, spec.min_interval_s, emit, clock
        self.losses: list[float] = []
        self.last = clock()
        self.sent = 0

    def stepped(self, step: int, planned: int | None, loss: float,
                extra: Callable[[], dict[str, float]] | None = None) -> None:
        """After optimizer step ``step`` (lineage-wide, 1-based) on ``loss``; ``extra`` gives more
        numbers for the report, asked only when one is sent (not on every step)."""
        self.losses.append(loss)
        if len(self.losses) < self.every or self.clock() - self.last < self.interval:
            return
        finite = [v for v in self.losses if math.isfinite(v)]
        report = {STEP_REPORT: 1.0, STEP: float(step), "step_loss_mean": sum(finite) / len(finite) if finite
                  else math.nan, "step_loss_max": max(finite) if finite else math.nan,
                  "step_nonfinite": float(len(self.losses) - len(finite)), "steps_in_report": float(len(self.losses)),
                  **(extra() if extra is not None else {})}
        if planned is not None:
            report[PLANNED] = float(planned)
        self.losses.clear()
        self.last = self.clock()
        self.sent += 1
        self.emit(report)
