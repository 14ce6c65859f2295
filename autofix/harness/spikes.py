"""The spike guard: rewind a loss spike in place, inside the trial, and skip the batches it ate.

With ``training.spike_guard.enabled``, the managed loop hands each step's loss to
:meth:`SpikeGuard.spiked` before the backward pass, and its gradient norm (before clipping) to
:meth:`SpikeGuard.grad_spiked` after it, before the optimizer steps; the run's in-trial policies
judge both (:mod:`autofix.rules.intrial`: the ``loss_spike`` symptom, answered by ``rewind``,
shipped as ``loss-spike-rewind`` in autofix/policies/spikes.yaml). A spike is not trained on.

Whether the batch or the weights are to blame is measured first: the model as it is is scored on
the batch of the step before its latest (one forward pass, no gradient, batch-norm statistics
and RNG left as they were; not the latest, which the last step just fitted). Judged no spike
there, the weights are fine and the batch alone is skipped: nothing is undone. Otherwise the
steps before did the damage (a rate too high): the model and optimizer go back to the newest
snapshot taken before the spike's step (in memory, every ``snapshot_every_steps`` optimizer
steps, the last ``ring`` kept), and the batches consumed since that snapshot are not replayed:
training goes on with the next batch (PaLM restarted about 100 steps before a spike and skipped
the batches around it; replaying the same batches re-spiked). No snapshot is taken within
``snapshot_every_steps`` of the last rewind's target, so the ring holds weights from before a
spike episode; and a rewind whose action makes the steps smaller (``lr_factor``,
``clip_factor``) restores one whatever the probe batch says: a rate too high damages the weights
between its spikes too (OPT-175B restarted from its last healthy checkpoint with a lower rate).
A batch that still spikes right after a rewind is skipped too, without another rewind, up to
``max_skip_batches`` in a row; past that the new level is trained on and judged afresh. The
rewind action may also cut the learning rate (``lr_factor``) and tighten gradient clipping
(``clip_factor``). Once the policies have spent their fires the guard stands down: a spike
that keeps coming back is the epoch-level symptoms' to answer (``diverging_loss``,
``nonfinite_loss``).

Each epoch's report carries what the guard did (``rewinds``, ``rewound_steps``,
``skipped_batches``, ``last_rewind_*``); the engine journals each new rewind. Snapshots are copies
on the CPU: ``ring`` of them cost ``ring`` x (model + optimizer state) of host memory.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from autofix.rules.intrial import Order, TrialRules
from autofix.spec.training import SpikeGuardSpec

__all__ = ["Rewind", "SpikeGuard", "reference_loss"]

_NEG_INF = -math.inf  # a module constant: read on every step
_ATOMS = (bool, int, float, str)  # immutable: a snapshot may share them


@dataclass(frozen=True)
class Rewind:
    """One rewind: the step of the spike, the step restored, why, and what else changed
    (``restored`` False: the weights were fine, the spiking batch was only skipped)."""

    from_step: int
    to_step: int
    reason: str
    order: Order
    lr: float
    clip: float | None
    restored: bool = True

    @property
    def skipped(self) -> int:
        return self.from_step - self.to_step


def _cpu_state(obj: Any, old: Any = None) -> dict[str, Any]:
    """A copy of ``obj.state_dict()`` on the CPU that later steps cannot change, written into the
    tensors of ``old`` (a snapshot leaving the ring) where their shapes match. Cloning the tensors
    directly is ~5x faster than deep-copying the whole dict (measured on a 256x256 MLP: 31 us
    against 161 us); writing into tensors already there spares the allocation and its page
    faults, and writing them all in one ``torch._foreach_copy_`` spares a call per tensor. A
    module's state is read with ``keep_vars`` and copied under ``no_grad``: a detached view per
    tensor cost a snapshot of the digits CNN with Adam ~20 us of its ~120 (see
    benchmarks/spike_guard_overhead.py)."""
    into: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    state = _copied(obj.state_dict(keep_vars=True) if isinstance(obj, torch.nn.Module) else obj.state_dict(),
                    old, into)
    if into[0]:
        with torch.no_grad():
            torch._foreach_copy_(*into)
    return state


def _copied(value: Any, old: Any = None, into: tuple[list[Any], list[Any]] | None = None) -> Any:
    """``value`` copied: its tensors into new ones on the CPU, or (with ``into``) into those of
    ``old`` at the same place where they match in shape and dtype, listed in ``into``
    (destinations, sources) for the caller to copy at once, under ``no_grad``; the rest
    (hyperparameters) deep-copied."""
    if isinstance(value, torch.Tensor):  # most leaves of a model's or an optimizer's state
        if into is not None and isinstance(old, torch.Tensor) and old.shape == value.shape \
                and old.dtype == value.dtype:
            into[0].append(old)
            into[1].append(value)
            return old
        return value.detach().to("cpu", copy=True)
    if value is None or type(value) in _ATOMS:  # most hyperparameters: nothing to copy
        return value
    if isinstance(value, dict):
        olds = old if isinstance(old, dict) else {}
        return {k: _copied(v, olds.get(k), into) for k, v in value.items()}
    if isinstance(value, list) or type(value) is tuple:
        parts = old if type(old) is type(value) and len(old) == len(value) else [None] * len(value)
        return type(value)(_copied(v, o, into) for v, o in zip(value, parts, strict=True))
    return copy.deepcopy(value)


def reference_loss(model: torch.nn.Module, loss_fn: Callable[[Any, Any], Any], batch: Any) -> float:
    """The loss of ``model`` as it is on ``batch`` (an ``(inputs, targets)`` pair): no gradient,
    and training state left as it was (batch-norm statistics, the RNG a dropout draws from)."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    rng = torch.get_rng_state()
    with torch.no_grad():
        loss = float(loss_fn(model(batch[0]), batch[1]))
    for name, b in model.named_buffers():
        b.copy_(buffers[name])
    torch.set_rng_state(rng)
    return loss


class SpikeGuard:
    """Snapshots, the in-trial policies and rewinds for one trainer (see the module).

    ``config``: the trainer's normalized config (its ``spike_guard`` and ``grad_clip``, which a
    rewind may tighten in place); ``rules``: :func:`autofix.rules.intrial.in_trial_data` from the
    driver, None for the shipped policies."""

    def __init__(self, config: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any = None, rules: dict[str, Any] | None = None) -> None:
        spec = SpikeGuardSpec(**(config.get("spike_guard") or {}))
        self.config, self.every, self.max_skip = config, spec.snapshot_every_steps, spec.max_skip_batches
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.rules = TrialRules.from_data(rules, keep_steps=self.every * spec.ring)
        self.ring: deque[tuple[int, dict, dict]] = deque(maxlen=spec.ring)  # (step, model, optimizer)
        self.rewinds: list[Rewind] = []
        self.rewound_steps = self.skipped_batches = self._in_a_row = 0
        # The loss of the model as it is on a batch it already trained on well, set by the loop;
        # with it a spike caused by its batch alone (the weights are fine) is skipped, not rewound.
        self.reference: Callable[[Any], float] | None = None
        # the batches of the last two steps taken: the older one is the probe (the latest was just
        # fitted: a step far too large can lower its loss and raise every other batch's)
        self._older: Any = None
        self._newer: Any = None
        self._rewinds_before = 0  # rewinds of the run before a restore (state_dict)
        # Snapshots are of a healthy trajectory only: none within ``every`` steps of the last
        # rewind's target, so the ring keeps what came before a spike episode (a rate too high
        # spikes again and again, damaging the weights in between) for the rewind that cuts.
        self._quiet_from = 0
        self._snapshot()

    @property
    def step(self) -> int:
        """Optimizer steps on the trajectory kept (rewound ones given back)."""
        return self.rules.step

    @property
    def max_grad_norm(self) -> float | None:
        """The norm-clipping bound in force (a rewind's ``clip_factor`` tightens it), None when the
        run does not clip: a custom loop passes it to ``clip_grad_norm_``."""
        clip = self.config.get("grad_clip")
        return float(clip["max"]) if clip is not None and clip.get("kind", "norm") == "norm" else None

    @property
    def judges_norms(self) -> bool:
        """Are gradient norms judged (``loss_spike.grad_norm``)? When not, :meth:`grad_spiked`
        answers None whatever the norm: a loop may leave the call out."""
        return self.rules.params.grad_norm

    def spiked(self, loss: float) -> Rewind | None:
        """Judge the loss of the step about to be taken: the latest rewind when its batch is not
        to be trained on, else None."""
        rules, window = self.rules, self.rules.losses
        # most steps: under the window's cheap test, no spike (a NaN or infinity fails it)
        if _NEG_INF < loss < window.bar and rules.step < window.bar_until:
            rules.spiking = False
            return None
        return self._answered(rules.judge(loss))

    def grad_spiked(self, grad_norm: float) -> Rewind | None:
        """Judge the gradient norm (before clipping) of the step about to be taken, once its loss
        passed :meth:`spiked`: the latest rewind when the step is not to be taken, else None.
        Under DDP the norm of the averaged gradients is the same on every rank."""
        return self._answered(self.rules.judge_norm(grad_norm))

    def _answered(self, order: Order | None) -> Rewind | None:
        if order is None:
            return None
        self.skipped_batches += 1
        if not order.fresh:  # the spike goes on right after its rewind: the weights are the snapshot's
            self._in_a_row += 1
            if self._in_a_row > self.max_skip:
                self.rules.rewarm()  # a level that lasts is no spike: train on it, judge afresh
                self._in_a_row = 0
                return None
            return self.rewinds[-1]
        return self._rewind(order)

    def _weights_fine(self) -> bool:
        """Is the model as it is still sound? Its loss on the batch of the step before the latest
        is judged by the same rule against the same window: a spike there too means the steps
        before did the damage (a rate too high), not this batch (bad data)."""
        if self.reference is None or self._older is None:
            return False
        loss = self.reference(self._older)
        return math.isfinite(loss) and not self.rules.is_spike(loss)

    def _rewind(self, order: Order) -> Rewind:
        # An order that makes the steps smaller (lr_factor, clip_factor) says the steps were too
        # large: the weights they made are not trusted, whatever the probe batch says (OPT-175B
        # restarted from the last healthy checkpoint with a lower rate). A rate rise that lasts
        # damages the weights slowly, between spikes the probe sees as the batch's alone.
        if not (order.action.lr_factor or order.action.clip_factor) and self._weights_fine():
            return self._record(order, self.step, restored=False)  # the batch alone: skip it, nothing to undo
        # the newest snapshot from before this step (one taken at it would undo nothing): the
        # weights of the steps just before a spike are suspect too (PaLM went back ~100 steps)
        to_step, model_state, optim_state = next(
            (snap for snap in reversed(self.ring) if snap[0] < self.step), self.ring[0])
        while self.ring[-1][0] > to_step:  # snapshots of the abandoned trajectory
            self.ring.pop()
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.model.load_state_dict(model_state)  # copied into the parameters
        # a copy: the optimizer adopts the tensors it is given, and its steps would rewrite the snapshot
        self.optimizer.load_state_dict(_copied(optim_state))
        self._set_rates(rates, None)
        return self._record(order, to_step, restored=True)

    def _record(self, order: Order, to_step: int, restored: bool) -> Rewind:
        self._set_rates([group["lr"] for group in self.optimizer.param_groups], order.action.lr_factor)
        clip = self._tighten(order.action.clip_factor)
        rewind = Rewind(self.step, to_step, order.finding.reason, order, self.optimizer.param_groups[0]["lr"], clip,
                        restored)
        self.rewound_steps += self.step - to_step
        self.rules.rewound(to_step)
        self._quiet_from = to_step + self.every  # no snapshot until the run has been quiet that long
        self.rewinds.append(rewind)
        self._in_a_row = 0
        return rewind

    def stepped(self, loss: float, grad_norm: float | None = None, batch: Any = None) -> None:
        """After an optimizer step on ``loss`` (its ``batch``): count it and snapshot every N steps."""
        rules = self.rules
        rules.stepped(loss, grad_norm)
        if batch is not None:
            self._older, self._newer = self._newer, batch
        self._in_a_row = 0
        if rules.step % self.every == 0 and rules.step >= self._quiet_from:
            self._snapshot()

    def metrics(self) -> dict[str, float]:
        """What the epoch's report carries (cumulative over the run)."""
        out = {"rewinds": float(self._rewinds_before + len(self.rewinds)), "rewound_steps": float(self.rewound_steps),
               "skipped_batches": float(self.skipped_batches)}
        if self.rewinds:
            last = self.rewinds[-1]
            out.update(last_rewind_from=float(last.from_step), last_rewind_to=float(last.to_step),
                       last_rewind_policy=float(last.order.policy_index),
                       last_rewind_candidate=float(last.order.candidate), last_rewind_lr=float(last.lr),
                       last_rewind_restored=float(last.restored))
            if last.clip is not None:
                out["last_rewind_clip"] = float(last.clip)
        return out

    def state_dict(self) -> dict[str, Any]:
        """What the trial's checkpoint keeps of the guard, so that a retried trial goes on as
        the run was: the rules (step, fires, windows), the totals its reports carry, and the
        clipping bound a rewind tightened. Not the snapshots: a restored run's first snapshot is
        the restored state. (The learning rate a rewind cut is in the optimizer's own state.)"""
        return {"rules": self.rules.state_dict(), "rewinds": self._rewinds_before + len(self.rewinds),
                "rewound_steps": self.rewound_steps, "skipped_batches": self.skipped_batches,
                "grad_clip": self.config.get("grad_clip"), "quiet_from": self._quiet_from}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state_dict`, the model and optimizer restored as they were then."""
        self.rules.load_state_dict(state["rules"])
        self._rewinds_before = int(state["rewinds"]) - len(self.rewinds)
        self.rewound_steps, self.skipped_batches = int(state["rewound_steps"]), int(state["skipped_batches"])
        self.config["grad_clip"] = state["grad_clip"]
        self._quiet_from = int(state.get("quiet_from", 0))  # (absent from checkpoints written before it)
        self.ring.clear()
        self._snapshot()  # at the restored step

    def _set_rates(self, rates: list[float], factor: float | None) -> None:
        """The rates in use before the rewind (a snapshot does not undo an earlier cut), cut by
        ``lr_factor``; a scheduler that recomputes from its base rates gets them cut too."""
        factor = factor or 1.0
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate * factor
        if factor != 1.0 and hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [base * factor for base in self.scheduler.base_lrs]

    def _tighten(self, factor: float | None) -> float | None:
        """Clipping after the rewind: its bound x ``clip_factor`` (OPT-175B tightened the bound it
        had); a run that does not clip is left so. The bound in use, None when there is none."""
        clip = self.config.get("grad_clip")
        if factor is not None and clip is not None:
            clip = self.config["grad_clip"] = {**clip, "max": clip["max"] * factor}
        return clip["max"] if clip is not None else None

    def _snapshot(self) -> None:
        # the oldest snapshot's tensors, about to leave the ring, take the new one's values
        _, old_model, old_optim = self.ring.popleft() if len(self.ring) == self.ring.maxlen else (None, None, None)
        self.ring.append((self.step, _cpu_state(self.model, old_model), _cpu_state(self.optimizer, old_optim)))
