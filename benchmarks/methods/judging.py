"""The independent judge inside a Tune experiment: every result of every trial, first healthy wins.

:class:`JudgingStopper` is a Tune ``Stopper``: it applies :class:`common.Judge` to
each result against that trial's lineage baseline (its epoch-0 ``val_loss``; a PBT clone
inherits its donor's), counts the training epochs and trial-seconds consumed by all trials,
and stops the whole experiment at the first healthy report or when the epoch budget is spent.
It runs in the driver, so the method reads its record after ``Tuner.fit()`` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Stopper

from common import REFERENCE_SCORES, Budget, Case, Judge, finite, judge_for

__all__ = ["HealthyFind", "JudgingStopper", "case_judge"]


def case_judge(case: Case, seed: int, reference: float | None = None) -> Judge:
    """The judge of ``case`` at ``seed``: ``reference`` (a score the driver measured) if given,
    else the per-process cache of :func:`common.judge_for` (trains the reference once)."""
    if reference is not None:
        REFERENCE_SCORES[(case.name, int(seed))] = float(reference)
    return judge_for(case, seed)


@dataclass
class HealthyFind:
    """The first independently healthy report of an experiment."""

    trial_id: str
    epoch: int
    config: dict[str, Any]
    epochs: int
    """Training epochs of all trials up to and including this report."""
    trial_s: float
    """Trial-seconds of all trials' reports up to and including this report."""


@dataclass
class _Trial:
    baseline: float | None = None
    reports: int = 0
    last_epoch: int = -1


@dataclass
class JudgingStopper(Stopper):
    """Judge every result; stop everything at the first healthy one or at the epoch budget."""

    judge: Judge
    budget: Budget
    epochs: int = 0
    trial_s: float = 0.0
    exploits: int = 0
    """PBT clones (warm restarts from another trial's checkpoint)."""
    found: HealthyFind | None = None
    trials: dict[str, _Trial] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def observe(self, trial_id: str, result: dict[str, Any], config: dict[str, Any] | None = None) -> bool:
        """Record one result; True when it is the first healthy one."""
        state = self.trials.setdefault(trial_id, _Trial())
        if config is not None:
            self.configs[trial_id] = config
        epoch = _epoch(result)
        if epoch == 0:  # a (re)start from scratch: a new lineage, a new baseline
            state.baseline = finite(result.get("val_loss"))
        else:
            self.epochs += 1
        state.reports += 1
        state.last_epoch = epoch
        self.trial_s += float(result.get("time_this_iter_s") or 0.0)
        if self.found is not None or epoch < 1 or state.baseline is None:
            return False
        if not self.judge.healthy(result, state.baseline):
            return False
        self.found = HealthyFind(trial_id, epoch, self.configs.get(trial_id) or result.get("config") or {},
                                 self.epochs, round(self.trial_s, 3))
        return True

    def inherit(self, trial_id: str, donor_id: str) -> None:
        """PBT exploit: the trial continues the donor's lineage, so it takes its baseline."""
        self.exploits += 1
        donor = self.trials.get(donor_id)
        if donor is not None and donor.baseline is not None:
            self.trials.setdefault(trial_id, _Trial()).baseline = donor.baseline

    @property
    def spent(self) -> bool:
        return self.epochs >= self.budget.max_epochs_total

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.observe(trial_id, result, result.get("config"))
        return self.found is not None or self.spent

    def stop_all(self) -> bool:
        return self.found is not None or self.spent


def _epoch(result: dict[str, Any]) -> int:
    epoch = result.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and math.isfinite(epoch):
        return int(epoch)
    return int(result.get("training_iteration", 1))
