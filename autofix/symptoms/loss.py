"""Symptoms read off the loss curve alone: non-finite, diverging, oscillating, plateau.

Scale: thresholds are relative to the loss's *first* report (with the managed harness, an
evaluation before any training step), so the same defaults hold for a cross-entropy that
starts at ln(10) = 2.30 and for a regression loss that starts at 1e4, and noise around a
converged loss of 0.05 is not mistaken for an oscillation or a divergence.

Time: every window is in optimizer steps (the reports' ``step``), never in reports, so a run of
3 steps per epoch is judged over as much training as one of 300.
"""

from __future__ import annotations

import math
from itertools import pairwise

from pydantic import Field

from autofix.judge.history import History
from autofix.symptoms.base import HARD, Detector, Finding, Params as DetectorParams, window_steps
from autofix.symptoms.outputs import at_init, nonfinite_since_init

__all__ = ["DivergingLoss", "NonFiniteLoss", "OscillatingLoss", "Plateau"]


class NonFiniteLoss(Detector):
    """The loss is NaN or infinite (Keras ``TerminateOnNaN``; AUTOTRAINER's NaN check).

    **Hard**: a NaN loss poisons every weight it touches; no slow learner passes through it.

    ``max_abs`` optionally also treats a huge finite loss as non-finite; AUTOTRAINER uses
    1e3, off by default here because regression losses can be that large when healthy.

    Not on a report made before any step, nor while the loss has been non-finite on every
    report since one: that is the untrained model's own NaN (``nonfinite_at_init``), which no
    learning rate can change.
    """

    name = "nonfinite_loss"
    evidence_keys = ("value",)
    severity = HARD
    summary = "The loss became NaN or infinite."

    class Params(DetectorParams):
        max_abs: float | None = Field(default=None, gt=0)

    def check(self, history: History) -> Finding | None:
        value = history.last(self.metric)
        if value is None or at_init(history.last_row()) or nonfinite_since_init(history, self.metric):
            return None  # the untrained model's own NaN: nonfinite_at_init's finding, no step to blame
        limit = self.params.max_abs
        if math.isfinite(value) and (limit is None or abs(value) < limit):
            return None
        return self.finding(history, f"{self.metric} is {value}", value=value)


class DivergingLoss(Detector):
    """The loss climbs far above where it started, or keeps rising for several reports.

    Fires when the last value exceeds ``factor`` x the first reported value (Lightning's
    ``SpikeDetection`` uses a relative tolerance of 2.0), or when the loss rose on every report
    of the last ``rising_steps`` optimizer steps (and at least the last ``min_reports`` rises,
    however many steps they span) by a total of
    at least ``min_rise`` x the first value (a late divergence after a healthy start), or when,
    having fallen by at least ``min_rise`` x the first value, it climbed back as much above its
    best (a late divergence that zigzags up; our choice: half of the initial loss is far more
    than the noise or slow drift of an overfitting validation loss).

    A validation loss that rises while ``train_metric`` keeps what it gained (below its value
    at the report the rise is measured from, and no more than ``train_slack`` of that fall back
    above its best since) is the model generalising worse, not the optimisation diverging:
    that is ``overfitting``'s. Measured: a healthy Keras-style exponential MLP on blobs (the
    ported-models zoo) whose val_loss jumped from 0.018 to 0.59 while its train_loss fell to
    0.004 and which reached 0.997 accuracy left alone was called broken here, and a worse fix
    "fixed"; on another seed its train_loss, fallen 0.0148 -> 0.0029, sat at 0.0033: 14% above
    its best (the old slack was 5% of the best), 3% of the fall.

    **Hard**: a loss twice its untrained value, or rising without a break for ``rising_steps``,
    is no slow start. ``rising_steps=64`` and ``min_reports=3`` are our choice: the three
    epochs of the old rule on the digits zoo (23 steps each); a run with few steps per epoch
    must then rise on many more reports in a row, which noisy small-batch curves never do.
    ``train_slack=0.25`` is our choice: a training loss that kept three quarters of its fall
    since the rise began is still fitting; a diverging optimisation gives it all back.
    """

    name = "diverging_loss"
    evidence_keys = ("best", "first", "last", "ratio", "rise", "since_step", "start", "steps")
    severity = HARD
    recoverable = True  # a spike that comes back: the ported-models zoo's exponential MLP, 0.997 left alone
    summary = "The loss rises instead of falling."

    class Params(DetectorParams):
        factor: float = Field(default=2.0, gt=1)
        rising_steps: int = Field(default=64, ge=1)
        min_reports: int = Field(default=3, ge=2)
        min_rise: float = Field(default=0.5, gt=0)
        train_metric: str = Field(default="train_loss", min_length=1)
        train_slack: float = Field(default=0.25, ge=0, le=1)

    def check(self, history: History) -> Finding | None:
        finding = self._diverged(history)
        if finding is None or self._still_fitting(history, finding.evidence.get("since_step")):
            return None
        return finding

    def _still_fitting(self, history: History, since: float | None) -> bool:
        """The training loss fell since the report at step ``since`` and is at its best: the
        rise is in generalisation (overfitting), not in the optimisation."""
        if self.metric == self.params.train_metric or since is None:
            return False
        train = [(history.position(i), v) for i, v in history.series(self.params.train_metric) if math.isfinite(v)]
        then = [v for step, v in train if step <= since]
        if not then or len(train) < 2:
            return False
        last, best = train[-1][1], min(v for _, v in train)
        return last < then[-1] and last <= best + self.params.train_slack * (then[-1] - best)

    def _diverged(self, history: History) -> Finding | None:
        values = history.finite(self.metric)
        if len(values) < 2 or not _is_last(history, self.metric):
            return None
        first, last = values[0], values[-1]
        scale = abs(first) or 1.0
        if last > first + (self.params.factor - 1) * scale:
            ratio = last / first if first else math.inf
            return self.finding(
                history, f"{self.metric} {last:.4g} is {ratio:.3g}x its first value {first:.4g}",
                first=first, last=last, ratio=ratio, since_step=self._step_of(history, first),
            )
        rising = self._rising(history, scale)
        if rising is not None:
            return rising
        best, give_back = min(values), self.params.min_rise * scale
        if first - best >= give_back and last - best >= give_back:  # had made progress, lost it
            return self.finding(
                history, f"{self.metric} {last:.4g} climbed back {last - best:.4g} above its best {best:.4g} "
                f"(>= {self.params.min_rise:g} x the first value {first:.4g})",
                first=first, best=best, last=last, rise=last - best,
                since_step=self._step_of(history, best),
            )
        return None

    def _step_of(self, history: History, value: float) -> float:
        """The step of the first report whose metric is ``value`` (read only when a finding is
        made: the positions of every report are not needed on the reports that find nothing)."""
        return next(history.position(i) for i, v in history.series(self.metric) if v == value)

    def _rising(self, history: History, scale: float) -> Finding | None:
        """Every report of the last ``rising_steps`` steps (and the one before them) rose; at
        least ``min_reports`` rises, reaching further back when the window holds fewer."""
        p = self.params
        window = len(history.recent(self.metric, p.rising_steps))
        tail = history.recent(self.metric, p.rising_steps, before=max(1, p.min_reports + 1 - window))
        if len(tail) < p.min_reports + 1 or not all(b > a for (_, a), (_, b) in pairwise(tail)):
            return None
        rise = tail[-1][1] - tail[0][1]
        if rise < p.min_rise * scale:
            return None
        span = tail[-1][0] - tail[0][0]
        return self.finding(
            history, f"{self.metric} rose on each of the last {len(tail) - 1} reports ({span:g} steps), "
            f"{tail[0][1]:.4g} -> {tail[-1][1]:.4g}",
            first=history.finite(self.metric)[0], start=tail[0][1], last=tail[-1][1], rise=rise, steps=span,
            since_step=tail[0][0],
        )


class OscillatingLoss(Detector):
    """The loss swings up and down instead of settling.

    Counts direction reversals over the reports of the last ``window_steps`` optimizer steps
    (or ``window_share`` of the planned steps, when longer) where both moves are at least
    ``min_swing`` x the first value; fires at ``min_reversals`` or more that are also at least
    ``min_reversal_share`` of the moves in the window. After AUTOTRAINER's rule (>= 20% of
    epochs with an accuracy swing >= 0.03; Zhang et al., ICSE 2021), restated on the loss.

    **Soft**: a noisy curve with few steps per epoch swings too while it learns.
    ``window_steps=128`` is our choice (OLMo-core's spike window is 128 steps), ``window_share``
    0.1 of the run.
    """

    name = "oscillating_loss"
    evidence_keys = ("amplitude", "reversals", "swing_floor", "window", "window_steps")
    summary = "The loss goes up and down by large amounts."

    class Params(DetectorParams):
        window_steps: int = Field(default=128, ge=1)
        window_share: float = Field(default=0.1, ge=0, le=1)
        min_reversals: int = Field(default=3, ge=1)
        min_reversal_share: float = Field(default=0.2, ge=0, le=1)
        min_swing: float = Field(default=0.1, gt=0)

    def check(self, history: History) -> Finding | None:
        if not _is_last(history, self.metric):
            return None
        p = self.params
        span = window_steps(history, p.window_steps, p.window_share)
        tail = [v for _, v in history.recent(self.metric, span, before=1)]
        moves = [b - a for a, b in pairwise(tail)]
        floor = p.min_swing * (abs(history.finite(self.metric)[0]) or 1.0)
        reversals = sum(1 for a, b in pairwise(moves) if a * b < 0 and min(abs(a), abs(b)) >= floor)
        if reversals < max(p.min_reversals, p.min_reversal_share * len(moves)):
            return None
        return self.finding(
            history,
            f"{self.metric} reversed direction {reversals} times in {len(moves)} reports ({span:g} steps) "
            f"by >= {floor:.3g}",
            reversals=reversals, window=len(moves), window_steps=span, swing_floor=floor,
            amplitude=max(tail) - min(tail),
        )


class Plateau(Detector):
    """The loss stopped improving before it got anywhere.

    Fires when the best value of the reports of the last ``window_steps`` optimizer steps (or
    ``window_share`` of the planned steps, when longer) improves on the best before them by
    less than ``min_improvement`` (relative), while the loss is still within ``converged_drop``
    of its first value: a run that already fell that far is converging, not stuck.
    ``min_improvement`` 1% follows Ray Tune's ``TrialPlateauStopper`` (``std=0.01``);
    ``converged_drop=0.3`` matches the default success bar; the window (128 steps, a tenth of
    the run) is our choice, in steps so a run of 3 steps per epoch is judged over as much
    training as one of 100.

    **Soft**: a slow learner sits on a plateau before it learns.
    """

    name = "plateau"
    evidence_keys = ("best_before", "best_recent", "first", "improvement", "last", "total_drop", "window_steps")
    summary = "The loss is not decreasing."

    class Params(DetectorParams):
        window_steps: int = Field(default=128, ge=1)
        window_share: float = Field(default=0.1, ge=0, le=1)
        min_improvement: float = Field(default=0.01, ge=0)
        converged_drop: float = Field(default=0.3, gt=0, le=1)

    def check(self, history: History) -> Finding | None:
        if not _is_last(history, self.metric):
            return None
        p = self.params
        span = window_steps(history, p.window_steps, p.window_share)
        values = history.finite(self.metric)
        w = len(history.recent(self.metric, span))
        if len(values) <= w:
            return None  # nothing before the window yet
        first, last = values[0], values[-1]
        drop = (first - last) / (abs(first) or 1.0)
        before, recent = min(values[:-w]), min(values[-w:])
        improvement = (before - recent) / (abs(before) or 1.0)
        if improvement >= p.min_improvement or drop >= p.converged_drop:
            return None
        trend = "better" if improvement >= 0 else "worse"
        return self.finding(
            history,
            f"no progress: best {self.metric} of the last {span:g} steps is {abs(improvement):.1%} {trend} "
            f"than before them; {first:.4g} -> {last:.4g} since the first report",
            first=first, last=last, best_before=before, best_recent=recent,
            improvement=improvement, total_drop=drop, window_steps=span,
        )


def _is_last(history: History, metric: str) -> bool:
    """Only judge a report that carries the metric (a report without it changes nothing)."""
    value = history.last(metric)
    return value is not None and math.isfinite(value)
