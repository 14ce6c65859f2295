"""Symptoms read off the loss curve alone: non-finite, diverging, oscillating, plateau.

Scale: thresholds are relative to the loss's *first* report (with the managed harness, an
evaluation before any training step), so the same defaults hold for a cross-entropy that
starts at ln(10) = 2.30 and for a regression loss that starts at 1e4, and noise around a
converged loss of 0.05 is not mistaken for an oscillation or a divergence.
"""

from __future__ import annotations

import math

from pydantic import Field

from autofix.metrics import History
from autofix.symptoms.base import Detector, Finding, Params

__all__ = ["DivergingLoss", "NonFiniteLoss", "OscillatingLoss", "Plateau"]


class NonFiniteLoss(Detector):
    """The loss is NaN or infinite (Keras ``TerminateOnNaN``; AUTOTRAINER's NaN check).

    ``max_abs`` optionally also treats a huge finite loss as non-finite; AUTOTRAINER uses
    1e3, off by default here because regression losses can be that large when healthy.
    """

    name = "nonfinite_loss"
    summary = "The loss became NaN or infinite."

    class Params(Params):
        max_abs: float | None = Field(default=None, gt=0)

    def check(self, history: History) -> Finding | None:
        value = history.last(self.metric)
        if value is None:
            return None
        limit = self.params.max_abs
        if math.isfinite(value) and (limit is None or abs(value) < limit):
            return None
        return self.finding(history, f"{self.metric} is {value}", value=value)


class DivergingLoss(Detector):
    """The loss climbs far above where it started, or keeps rising for several reports.

    Fires when the last value exceeds ``factor`` x the first reported value (Lightning's
    ``SpikeDetection`` uses a relative tolerance of 2.0), or when the loss rose on each of the
    last ``rising_steps`` reports by a total of at least ``min_rise`` x the first value (a late
    divergence after a healthy start), or when, having fallen by at least ``min_rise`` x the
    first value, it climbed back as much above its best (a late divergence that zigzags up; our
    choice: half of the initial loss is far more than the noise or slow drift of an overfitting
    validation loss).
    """

    name = "diverging_loss"
    summary = "The loss rises instead of falling."

    class Params(Params):
        factor: float = Field(default=2.0, gt=1)
        rising_steps: int = Field(default=3, ge=2)
        min_rise: float = Field(default=0.5, gt=0)

    def check(self, history: History) -> Finding | None:
        values = history.finite(self.metric)
        if len(values) < 2 or not _is_last(history, self.metric):
            return None
        first, last = values[0], values[-1]
        scale = abs(first) or 1.0
        if last > first + (self.params.factor - 1) * scale:
            ratio = last / first if first else math.inf
            return self.finding(
                history, f"{self.metric} {last:.4g} is {ratio:.3g}x its first value {first:.4g}",
                first=first, last=last, ratio=ratio,
            )
        k = self.params.rising_steps
        tail = values[-(k + 1):]
        if len(tail) == k + 1 and all(b > a for a, b in zip(tail, tail[1:])):
            rise = tail[-1] - tail[0]
            if rise >= self.params.min_rise * scale:
                return self.finding(
                    history, f"{self.metric} rose {k} reports in a row, {tail[0]:.4g} -> {tail[-1]:.4g}",
                    first=first, start=tail[0], last=tail[-1], rise=rise,
                )
        best, give_back = min(values), self.params.min_rise * scale
        if first - best >= give_back and last - best >= give_back:  # had made progress, lost it
            return self.finding(
                history, f"{self.metric} {last:.4g} climbed back {last - best:.4g} above its best {best:.4g} "
                f"(>= {self.params.min_rise:g} x the first value {first:.4g})",
                first=first, best=best, last=last, rise=last - best,
            )
        return None


class OscillatingLoss(Detector):
    """The loss swings up and down instead of settling.

    Counts direction reversals in the last ``window`` steps where both moves are at least
    ``min_swing`` x the first value; fires at ``min_reversals`` or more. After AUTOTRAINER's
    rule (>= 20% of epochs with an accuracy swing >= 0.03), restated on the loss.
    """

    name = "oscillating_loss"
    summary = "The loss goes up and down by large amounts."

    class Params(Params):
        window: int = Field(default=6, ge=3)
        min_reversals: int = Field(default=3, ge=1)
        min_swing: float = Field(default=0.1, gt=0)

    def check(self, history: History) -> Finding | None:
        values = history.finite(self.metric)
        if not values or not _is_last(history, self.metric):
            return None
        tail = values[-(self.params.window + 1):]
        moves = [b - a for a, b in zip(tail, tail[1:])]
        floor = self.params.min_swing * (abs(values[0]) or 1.0)
        reversals = sum(
            1 for a, b in zip(moves, moves[1:]) if a * b < 0 and min(abs(a), abs(b)) >= floor
        )
        if reversals < self.params.min_reversals:
            return None
        return self.finding(
            history,
            f"{self.metric} reversed direction {reversals} times in {len(moves)} reports "
            f"by >= {floor:.3g}",
            reversals=reversals, window=len(moves), swing_floor=floor,
            amplitude=max(tail) - min(tail),
        )


class Plateau(Detector):
    """The loss stopped improving before it got anywhere.

    Fires when the best value of the last ``window`` reports improves on the best before them
    by less than ``min_improvement`` (relative), while the loss is still within
    ``converged_drop`` of its first value: a run that already fell that far is converging,
    not stuck. ``window=4`` and a 1% threshold follow Ray Tune's ``TrialPlateauStopper``
    (``num_results=4``, ``std=0.01``); ``converged_drop=0.3`` matches the default success bar.
    """

    name = "plateau"
    summary = "The loss is not decreasing."

    class Params(Params):
        window: int = Field(default=4, ge=2)
        min_improvement: float = Field(default=0.01, ge=0)
        converged_drop: float = Field(default=0.3, gt=0, le=1)

    def check(self, history: History) -> Finding | None:
        values = history.finite(self.metric)
        w = self.params.window
        if len(values) <= w or not _is_last(history, self.metric):
            return None
        first, last = values[0], values[-1]
        scale = abs(first) or 1.0
        drop = (first - last) / scale
        before, recent = min(values[:-w]), min(values[-w:])
        improvement = (before - recent) / (abs(before) or 1.0)
        if improvement >= self.params.min_improvement or drop >= self.params.converged_drop:
            return None
        trend = "better" if improvement >= 0 else "worse"
        return self.finding(
            history,
            f"no progress: best {self.metric} of the last {w} reports is {abs(improvement):.1%} {trend} "
            f"than before them; {first:.4g} -> {last:.4g} since the first report",
            first=first, last=last, best_before=before, best_recent=recent,
            improvement=improvement, total_drop=drop,
        )


def _is_last(history: History, metric: str) -> bool:
    """Only judge a report that carries the metric (a report without it changes nothing)."""
    value = history.last(metric)
    return value is not None and math.isfinite(value)
