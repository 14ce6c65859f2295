"""``loss_spike``: one optimizer step's loss, or its gradient norm, far above the steps before it.
Pure Python.

Judged step by step **inside the trial** (``in_trial``): the managed harness's spike guard
(:mod:`autofix.harness.spikes`) hands each step's training loss to the run's in-trial policies
(:mod:`autofix.rules.intrial`) before the optimizer steps, and a policy answering ``loss_spike``
with ``rewind`` puts the weights back instead of training on it. Epoch reports never carry the
per-step stream ``step_loss``, so at the driver this detector finds nothing; ``autofix policies
test`` feeds it a ``step_loss`` series, exactly as the trial does.

A step's loss is a spike when, past ``warmup_steps`` steps, it is non-finite, or it lies at
least ``z`` robust standard deviations above the median of the last ``window_steps`` losses
(1.4826 x the median absolute deviation) **and** at least ``min_ratio`` x that median **and**
at least ``max_ratio`` x the largest loss of the window **and** at least ``min_rise`` x the run's
own scale (the median of its first full window) above it. With ``grad_norm`` each step's gradient
norm, measured after the backward pass and before clipping, is judged the same way against its own
window (OLMo-core's ``SkipStepOptimizer`` judges both): a step whose loss looks ordinary but whose
gradient is far out of line is not taken either. Off by default, measured
(``benchmarks/long_runs.py``, 2026-12-05, the shipped policy): with it on, the norm arm never
caught a spike before the loss arm, rewound one clean run (a DDP twin, once), and spent the
policy's twenty fires within ~70 steps of a lasting rate rise, which then ended at 1.38x and
2.12x the clean run's val_loss instead of 0.97x and 1.03x (commit 9b724c2, before a rewind
restored a copy of the snapshot's optimizer state).

Defaults and sources: OLMo-core's ``SkipStepOptimizer`` skips a step whose loss is more than 6
standard deviations above a 128-step window, after 64 warm-up steps (``z=6``, ``window_steps=128``,
``warmup_steps=64``); llm-foundry's ``KillLossSpike`` counts a loss above 2x the window's mean as
an outlier (``min_ratio=2``); Megatron's ``--check-for-spiky-loss`` flags a loss 10x the largest
seen, and ``max_ratio=2`` takes llm-foundry's factor over Megatron's reference: measured
(``benchmarks/long_runs.py``, every rewind plain), clean small-batch runs trained with SGD and
momentum (one with 10% of the labels flipped and batches of 16) and a digits MLP before its
injected spike were rewound 27 times in 6 runs on losses 1.06-1.92x their window's largest, each
called a spike by the other tests; the injected spikes' first steps were 2.5-1000x above it. The
median and MAD (instead of mean and standard deviation) keep one earlier outlier from hiding the
next; the ratio keeps a run whose losses have converged to almost no spread from calling ordinary
noise a spike (6 MADs of a flat curve can be 1%).
``min_rise=0.1`` over the window's largest loss is our choice, measured
(``benchmarks/spike_guard_overhead.py``): clean digits runs trained far past convergence have
losses near 0.001 whose small batches jump 10x and more when they hold a hard example; judged
against the median alone, an MLP with batches of 16 was rewound 10 times in ~34,000 steps, and
as often with the margin taken over the median; over the window's largest loss, once in ~33,000.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from autofix.judge.history import STEP, History
from autofix.symptoms.base import HARD, Detector, Finding, FixedParams

__all__ = ["STEP_GRAD_NORM", "STEP_LOSS", "LossSpike", "SpikeParams", "spike_evidence", "spike_text"]

STEP_LOSS = "step_loss"  # the per-step training loss the trial judges (autofix.spec.catalogue)
STEP_GRAD_NORM = "step_grad_norm"  # the per-step gradient norm, before clipping (autofix.spec.catalogue)
_NAMES = {STEP_LOSS: "loss", STEP_GRAD_NORM: "grad_norm"}  # each series' value in the evidence
_MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution is 0.6745 sigma


class SpikeParams(FixedParams):
    """The thresholds (spec: ``symptoms: {loss_spike: {...}}``)."""

    window_steps: int = Field(default=128, ge=8, le=100_000)  # trailing losses compared with
    warmup_steps: int = Field(default=64, ge=0, le=10_000_000)  # steps before anything is judged
    z: float = Field(default=6.0, gt=0)  # robust standard deviations above the window's median
    min_ratio: float = Field(default=2.0, ge=1)  # and at least this many times that median
    min_rise: float = Field(default=0.1, ge=0)  # and this far above the window's largest loss, in run scale
    max_ratio: float = Field(default=2.0, ge=1)  # and at least this many times the window's largest loss
    grad_norm: bool = False  # judge each step's gradient norm too, by the same thresholds (OLMo-core; see the module)


def spike_evidence(params: SpikeParams, window: Sequence[float], loss: float, step: int,
                   scale: float | None = None, series: str = STEP_LOSS) -> dict[str, float] | None:
    """The numbers that make ``loss`` at optimizer step ``step`` a spike against the trailing
    ``window`` of earlier (finite) values, or None. Judged only past the warm-up and with at
    least half a window of history; ``scale``: the run's first-window median (None: no
    ``min_rise`` test); ``series``: what is judged (the evidence names the value after it:
    ``loss`` or ``grad_norm``)."""
    if step < params.warmup_steps or len(window) < params.window_steps // 2:
        return None
    recent = list(window)[-params.window_steps:]
    median = statistics.median(recent)
    key = _NAMES[series]
    if not math.isfinite(loss):
        return {key: loss, "median": median, "step": float(step)}
    if median <= 0 or loss < params.min_ratio * median:
        return None
    largest = max(recent)
    if loss < params.max_ratio * largest or (scale is not None and loss - largest < params.min_rise * scale):
        return None  # a heavy tail the window already holds (a small batch's hard examples) is no spike
    sigma = _MAD_TO_SIGMA * statistics.median(abs(v - median) for v in recent)
    z = (loss - median) / sigma if sigma > 0 else math.inf
    if z < params.z:
        return None
    return {key: loss, "median": median, "ratio": loss / median, "robust_z": z, "over_max": loss / largest,
            "step": float(step)}


def spike_text(evidence: dict[str, float], window: int) -> str:
    """The one-line reason of a spike's evidence."""
    step = int(evidence["step"])
    name, value = ("gradient norm", evidence["grad_norm"]) if "grad_norm" in evidence else ("loss", evidence["loss"])
    if "ratio" not in evidence:
        return f"{name} {value} at step {step}"
    z = evidence["robust_z"]
    return (f"{name} {value:.4g} at step {step} is {evidence['ratio']:.3g}x the median "
            f"{evidence['median']:.4g} of the last {window} steps ({z:.3g} robust sigmas)")


class LossSpike(Detector):
    """One step's training loss, or gradient norm, far above the trailing window: judged inside the trial.

    Past ``warmup_steps`` steps, a loss is a spike when non-finite, or at least ``z`` robust
    sigmas above the median of the last ``window_steps`` losses, ``min_ratio`` x that median,
    ``max_ratio`` x the window's largest loss and ``min_rise`` x the run's first-window median
    above it; with ``grad_norm`` (off by default), a gradient norm likewise against the window of norms. Thresholds
    after OLMo-core's ``SkipStepOptimizer`` (6 sigmas over 128 steps, after 64, on the loss and the
    gradient norm), llm-foundry's ``KillLossSpike`` (2x the window) and Megatron's spiky-loss check
    (a multiple of the largest loss); ``min_rise`` and ``max_ratio``'s value are ours, measured (see
    the module). Recoverable and hard: a spike is answered at once (in place, by ``rewind``), and
    one that passes declares nothing about the run. Its policies run in the trial, at every
    optimizer step (:mod:`autofix.rules.intrial`); reports to the driver carry what they did
    (``rewinds``)."""

    name = "loss_spike"
    summary = "A step's loss (or, with grad_norm, its gradient norm) jumps far above the last steps' (in the trial)."
    Params = SpikeParams
    severity = HARD
    recoverable = True
    in_trial: ClassVar[bool] = True
    inputs = (STEP_LOSS, STEP_GRAD_NORM)
    evidence_keys = ("grad_norm", "loss", "median", "over_max", "ratio", "robust_z", "step")

    def check(self, history: History) -> Finding | None:
        row = history.last_row()
        for series in (STEP_LOSS, STEP_GRAD_NORM) if self.params.grad_norm else (STEP_LOSS,):
            if series in row:  # epoch reports never carry them: no scan per report
                found = self._check(history, series)
                if found is not None:
                    return found
        return None

    def _check(self, history: History, name: str) -> Finding | None:
        series = history.series(name)
        if not series or series[-1][0] != history.last_iteration:
            return None
        finite = [v for _, v in series[:-1] if math.isfinite(v)]
        scale = statistics.median(finite[:self.params.window_steps]) \
            if len(finite) >= self.params.window_steps else None
        step = history.last(STEP)
        at = int(step) if step is not None else len(series) - 1
        found = spike_evidence(self.params, finite[-self.params.window_steps:], series[-1][1], at, scale, name)
        if found is None:
            return None
        return Finding(self.name, history.last_iteration or 0, name,
                       spike_text(found, min(len(finite), self.params.window_steps)), found)
