"""Slow progress: an attempt reached its end with its loss down less than the run asks for.

Every other detector names *how* a run is sick. A run can also end unhealthy with none of them
active: its loss fell steadily, only too little (a learning rate a few times too small, a
schedule that decays too early). Before this symptom such an attempt ended the run with "no
policy had a remedy left" although learning-rate and schedule remedies were untried; now the
end of the attempt is itself the finding, and policies answer it (``autofix/policies/progress.yaml``).
"""

from __future__ import annotations

import math

from pydantic import Field

from autofix.judge.history import History
from autofix.judge.verdict import Judge, health, planned_steps
from autofix.symptoms.base import Detector, Finding, Params as DetectorParams

__all__ = ["SlowProgress"]


class SlowProgress(Detector):
    """The attempt is at its end and its loss fell less than ``min_drop`` of its first value.

    "At its end" is the last planned step (``planned_steps``, reported by the managed harness
    and by custom trainables that pass it to ``autofix.report``); for a trainable that never
    reports its plan, the engine asks :meth:`check_ended` when the attempt ends. A non-finite
    loss is ``nonfinite_loss``'s, not this one's; a loss that fell enough but sits at chance is
    ``chance_level``'s.

    **Soft**, and acting only at the end: by then the run's patience is spent and a slow learner
    has had its whole plan. ``min_drop`` is the run's success bar (``success.min_drop``, 0.3 by
    default), which the runner passes in, so "slow" means exactly "not healthy by the loss".
    AUTOTRAINER (Zhang et al., ICSE 2021) names the same problem *slow convergence* and answers
    it with the learning rate; judging it once, at the end, against the run's own bar is ours.
    """

    name = "slow_progress"
    evidence_keys = ("drop", "first", "last", "steps")
    summary = "The attempt ended with its loss down less than the success criterion asks."

    class Params(DetectorParams):
        min_drop: float = Field(default=0.3, gt=0, le=1)

    def check(self, history: History) -> Finding | None:
        planned = planned_steps(history)
        last = history.last_iteration
        if planned is None or last is None or history.position(last) < planned:
            return None
        return self.check_ended(history)

    def check_ended(self, history: History) -> Finding | None:
        last = history.last(self.metric)
        if last is None or not math.isfinite(last) or len(history.finite(self.metric)) < 2:
            return None
        verdict = health(history, Judge(loss_metric=self.metric, min_drop=self.params.min_drop))
        if verdict.drop is None or verdict.drop >= self.params.min_drop:
            return None
        first = history.finite(self.metric)[0]
        step = history.position(history.last_iteration)
        return self.finding(
            history, f"{self.metric} fell {verdict.drop:.1%} ({first:.4g} -> {last:.4g}) by the attempt's end at "
            f"step {step:g}; healthy needs {self.params.min_drop:.0%}",
            first=first, last=last, drop=verdict.drop, steps=step,
        )
