"""The spike guard: rewind a loss spike in place, inside the trial, and skip the batches it ate.

With ``training.spike_guard.enabled``, the managed loop hands each step's loss to
:meth:`SpikeGuard.spiked` before the optimizer steps. A spike (:mod:`autofix.symptoms.spike`)
is not trained on: the model and optimizer go back to the newest snapshot taken before its step
(in memory, every ``snapshot_every_steps`` optimizer steps, the last ``ring`` kept), and the batches
consumed since that snapshot are not replayed: training goes on with the next batch (PaLM
restarted about 100 steps before a spike and skipped the batches around it; replaying the same
batches re-spiked). Each rewind is counted in the epoch's report (``rewinds``, ``rewound_steps``,
``last_rewind_from``, ``last_rewind_to``) and journaled by the engine; with ``lr_factor`` each
rewind also cuts the learning rate (OPT-175B lowered it on restart). After ``max_rewinds`` in a
run the guard stands down: a spike that keeps coming back is the epoch-level symptoms' to answer
(``diverging_loss``, ``nonfinite_loss``), with a relaunch.

Snapshots are copies on the CPU of the model's and the optimizer's state: ``ring`` of them cost
``ring`` x (model + optimizer state) of host memory.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from autofix.spec.training import SpikeGuardSpec
from autofix.symptoms.spike import SpikeRule, spike_reason

__all__ = ["Rewind", "SpikeGuard"]


@dataclass(frozen=True)
class Rewind:
    """One rewind: the step of the spike, the step restored, the batches not replayed."""

    from_step: int
    to_step: int
    reason: str

    @property
    def skipped(self) -> int:
        return self.from_step - self.to_step


def _cpu_state(obj: Any) -> dict[str, Any]:
    """A copy of ``obj.state_dict()`` on the CPU that later steps cannot change (``.cpu()`` of a
    CPU tensor is the tensor itself: the deep copy makes it a snapshot)."""
    return copy.deepcopy(_to_cpu(obj.state_dict()))


def _to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


class SpikeGuard:
    """Snapshots, the spike rule and rewinds for one trainer (see the module)."""

    def __init__(self, cfg: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any = None) -> None:
        spec = SpikeGuardSpec(**cfg)  # the spec's defaults for what a config leaves out
        self.rule = SpikeRule(**{k: getattr(spec, k) for k in SpikeRule.model_fields})
        self.every, self.max_rewinds, self.lr_factor = spec.snapshot_every_steps, spec.max_rewinds, spec.lr_factor
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.ring: deque[tuple[int, dict, dict]] = deque(maxlen=spec.ring)  # (step, model, optimizer)
        # (step, loss) of the steps taken, newest last: a window, plus what a rewind may drop
        self.losses: deque[tuple[int, float]] = deque(maxlen=self.rule.window_steps + self.every * spec.ring)
        self.step = 0  # optimizer steps taken on the trajectory kept (rewound ones are given back)
        self.rewinds: list[Rewind] = []
        self.rewound_steps = 0
        self.scale: float | None = None  # the median of the run's first full window (min_rise's unit)
        self._median: float | None = None  # a recent window median, for the cheap test of each step
        self._median_at = 0
        self._snapshot()

    def spiked(self, loss: float) -> Rewind | None:
        """Judge the loss of the step about to be taken; on a spike, rewind and say so."""
        if len(self.rewinds) >= self.max_rewinds or self._plainly_fine(loss):
            return None
        window = [v for _, v in list(self.losses)[-self.rule.window_steps:] if math.isfinite(v)]
        reason = spike_reason(self.rule, window, loss, self.step, self.scale)
        if reason is None:
            return None
        # the newest snapshot from before this step (one taken at it would undo nothing): the
        # weights of the steps just before a spike are suspect too (PaLM went back ~100 steps)
        to_step, model_state, optim_state = next(
            (snap for snap in reversed(self.ring) if snap[0] < self.step), self.ring[-1])
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optim_state)
        self._set_rates(rates)
        rewind = Rewind(from_step=self.step, to_step=to_step, reason=reason)
        while self.losses and self.losses[-1][0] >= to_step:  # the abandoned trajectory leaves the window
            self.losses.pop()
        self.rewound_steps += self.step - to_step
        self.step, self._median = to_step, None
        self.rewinds.append(rewind)
        return rewind

    def _plainly_fine(self, loss: float) -> bool:
        """Most steps: a finite loss under ``min_ratio`` x the window's median of a few steps ago
        (refreshed every 16 steps) cannot be a spike, and is passed without sorting the window."""
        if not math.isfinite(loss) or self.step < self.rule.warmup_steps:
            return False
        if self._median is None or self.step >= self._median_at + 16:
            recent = [v for _, v in list(self.losses)[-self.rule.window_steps:] if math.isfinite(v)]
            self._median, self._median_at = (statistics.median(recent) if recent else None), self.step
        return self._median is not None and loss < self.rule.min_ratio * self._median

    def stepped(self, loss: float) -> None:
        """After an optimizer step on ``loss``: count it and snapshot every N steps."""
        self.losses.append((self.step, loss))
        self.step += 1
        if self.scale is None and len(self.losses) >= self.rule.window_steps:  # the run's own scale
            finite = [v for _, v in self.losses if math.isfinite(v)]
            self.scale = statistics.median(finite) if finite else None
        if self.step % self.every == 0:
            self._snapshot()

    def metrics(self) -> dict[str, float]:
        """What the epoch's report carries (cumulative over the run)."""
        out = {"rewinds": float(len(self.rewinds)), "rewound_steps": float(self.rewound_steps)}
        if self.rewinds:
            out.update(last_rewind_from=float(self.rewinds[-1].from_step),
                       last_rewind_to=float(self.rewinds[-1].to_step))
        return out

    def _set_rates(self, rates: list[float]) -> None:
        """The rates in use before the rewind (a snapshot does not undo an earlier cut), cut by
        ``lr_factor``; a scheduler that recomputes from its base rates gets them cut too."""
        factor = self.lr_factor or 1.0
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate * factor
        if factor != 1.0 and hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [base * factor for base in self.scheduler.base_lrs]

    def _snapshot(self) -> None:
        self.ring.append((self.step, _cpu_state(self.model), _cpu_state(self.optimizer)))
