"""A loss spike, judged step by step inside a trial: the rule the managed harness's spike guard
(:mod:`autofix.harness.spikes`) applies before each optimizer step. Pure Python.

A step's loss is a spike when, past ``warmup_steps`` steps, it is non-finite, or it lies at
least ``z`` robust standard deviations above the median of the last ``window_steps`` losses
(1.4826 x the median absolute deviation) **and** at least ``min_ratio`` x that median **and**
at least ``min_rise`` x the run's own scale (the median of its first full window) above the
largest loss of the window.

Defaults and sources: OLMo-core's ``SkipStepOptimizer`` skips a step whose loss is more than 6
standard deviations above a 128-step window, after 64 warm-up steps (``z=6``, ``window_steps=128``,
``warmup_steps=64``); llm-foundry's ``KillLossSpike`` counts a loss above 2x the window's mean as
an outlier (``min_ratio=2``). The median and MAD (instead of mean and standard deviation) keep
one earlier outlier from hiding the next; the ratio keeps a run whose losses have converged to
almost no spread from calling ordinary noise a spike (6 MADs of a flat curve can be 1%).
``min_rise=0.1`` over the window's largest loss is our choice, measured
(``benchmarks/spike_guard_overhead.py``): clean digits runs trained far past convergence have
losses near 0.001 whose small batches jump 10x and more when they hold a hard example; judged
against the median alone, an MLP with batches of 16 was rewound 10 times (``max_rewinds``, the
cap) in ~34,000 steps, and as often with the margin taken over the median; over the window's
largest loss, once in ~33,000.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SpikeRule", "spike_reason"]

_MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution is 0.6745 sigma


class SpikeRule(BaseModel):
    """The thresholds (``training.spike_guard``'s detection half)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    window_steps: int = Field(default=128, ge=8, le=100_000)  # trailing losses compared with
    warmup_steps: int = Field(default=64, ge=0, le=10_000_000)  # steps before anything is judged
    z: float = Field(default=6.0, gt=0)  # robust standard deviations above the window's median
    min_ratio: float = Field(default=2.0, ge=1)  # and at least this many times that median
    min_rise: float = Field(default=0.1, ge=0)  # and this far above the window's largest loss, in run scale


def spike_reason(rule: SpikeRule, window: Sequence[float], loss: float, step: int,
                 scale: float | None = None) -> str | None:
    """Why ``loss`` at optimizer step ``step`` is a spike against the trailing ``window`` of
    earlier losses (finite ones), or None. Judged only past the warm-up and with at least half
    a window of history; ``scale``: the run's first-window median (None: no ``min_rise`` test)."""
    if step < rule.warmup_steps or len(window) < rule.window_steps // 2:
        return None
    if not math.isfinite(loss):
        return f"loss {loss} at step {step}"
    recent = list(window)[-rule.window_steps:]
    median = statistics.median(recent)
    if median <= 0 or loss < rule.min_ratio * median:
        return None
    if scale is not None and loss - max(recent) < rule.min_rise * scale:
        return None  # a heavy tail the window already holds (a small batch's hard examples) is no spike
    sigma = _MAD_TO_SIGMA * statistics.median(abs(v - median) for v in recent)
    z = (loss - median) / sigma if sigma > 0 else math.inf
    if z < rule.z:
        return None
    return (f"loss {loss:.4g} at step {step} is {loss / median:.3g}x the median {median:.4g} of the last "
            f"{len(recent)} steps ({z:.3g} robust sigmas)")
