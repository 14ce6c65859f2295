"""Policies that run inside the trial: a step-level symptom answered in place, at every step.

The managed harness's spike guard (:mod:`autofix.harness.spikes`) hands each optimizer step's
training loss to :meth:`TrialRules.judge` before the backward pass, and its gradient norm to
:meth:`TrialRules.judge_norm` after it, before the step is taken. The rules are the run's own
policies, loaded and validated at the driver from its policy files (those whose ``then`` is
``rewind``), shipped to the trial as data (:func:`in_trial_data`), and driven the way the engine
drives every policy at a report: the symptom's detector rule makes a finding
(:func:`autofix.symptoms.spike.spike_evidence`), a matching policy is pending from the step its
match began and fires once it has held ``for_steps`` steps (:class:`~autofix.rules.alerts.PolicyState`),
and each fire takes the next candidate of its ``then`` (``times`` each). Only the answer differs:
an :class:`Order` to rewind in place instead of a relaunch. ``autofix policies test`` drives the
same object with a ``step_loss`` series (and a ``step_grad_norm`` one). Pure Python: no torch, no ray.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from autofix.actions.rewind import Rewind
from autofix.rules.alerts import AlertState, PolicyState
from autofix.rules.policy import BUILTIN, Policy, load_policies
from autofix.symptoms.base import Finding
from autofix.symptoms.spike import STEP_GRAD_NORM, STEP_LOSS, LossSpike, SpikeParams, spike_evidence, spike_text

__all__ = ["Order", "TrialRules", "in_trial_data", "in_trial_policies"]

_REFRESH_STEPS = 16  # steps between refreshes of the cached median of the cheap test
_isfinite = math.isfinite  # read at every step


class _Window:
    """One judged series (the losses or the gradient norms) of the steps kept: its trailing
    window, the run's own scale, and the cheap test of most steps as one number (``bar``).

    Steps and values are kept in two deques of plain numbers: the window is read at every
    refresh of the bar, and a deque of (step, value) tuples cost ~36 us to copy and filter in a
    training loop (``benchmarks/spike_guard_overhead.py``, a 0.6 ms step)."""

    __slots__ = ("_nonfinite", "bar", "bar_until", "name", "params", "scale", "steps", "vals")

    def __init__(self, name: str, params: SpikeParams, keep_steps: int) -> None:
        self.name, self.params = name, params
        # the steps taken and their values, newest last: the window, plus what a rewind may drop
        self.steps: deque[int] = deque(maxlen=params.window_steps + keep_steps)
        self.vals: deque[float] = deque(maxlen=params.window_steps + keep_steps)
        self._nonfinite = 0  # non-finite values added since the last clear (none: no filtering)
        self.scale: float | None = None  # the median of the run's first full window (min_rise's unit)
        # the cheap test of most steps as one number: a value under ``bar`` at a step before
        # ``bar_until`` is no spike (+inf in the warm-up; -inf: no history yet, judge in full)
        self.bar, self.bar_until = -math.inf, 0

    @property
    def values(self) -> list[tuple[int, float]]:
        """(step, value) of the steps kept, oldest first."""
        return list(zip(self.steps, self.vals, strict=True))

    def __len__(self) -> int:
        return len(self.vals)

    def recent(self, last: int | None = None) -> list[float]:
        """The finite values of the last ``last`` (default ``window_steps``) steps kept, oldest first."""
        last = self.params.window_steps if last is None else last
        vals = self.vals
        out = list(islice(vals, len(vals) - last, None)) if len(vals) > last else list(vals)
        return [v for v in out if math.isfinite(v)] if self._nonfinite else out

    def evidence(self, value: float, step: int) -> dict[str, float] | None:
        """The spike rule on ``value`` at ``step``: its evidence, or None. Most steps pass the
        cheap test (``bar``, refreshed every 16 steps) without the window being sorted."""
        if step < self.params.warmup_steps:  # nothing is judged before it
            self.bar, self.bar_until = math.inf, self.params.warmup_steps
            return None
        if self.bar == -math.inf or step >= self.bar_until:
            self._refresh(step)
        if -math.inf < value < self.bar:  # False for a NaN or an infinity: those are judged in full
            return None
        return spike_evidence(self.params, self.recent(), value, step, self.scale, self.name)

    def _refresh(self, step: int) -> None:
        """The bar for the next 16 steps: a value under it fails one of the rule's tests. Under
        ``min_ratio`` x the median (of now: a few steps stale, as measured); under ``max_ratio``
        x, or ``min_rise`` x the scale above, the largest of the values that stay in the window
        for those 16 steps (whatever joins, the window's largest is no smaller), so no noisy
        small batch is judged in full merely for being twice the median."""
        params, recent = self.params, self.recent()
        self.bar_until = step + _REFRESH_STEPS
        if not recent:
            self.bar = -math.inf
            return
        bar = params.min_ratio * statistics.median(recent)
        staying = self.recent(max(0, params.window_steps - _REFRESH_STEPS))
        if staying:
            largest = max(staying)
            bar = max(bar, params.max_ratio * largest)
            if self.scale is not None:
                bar = max(bar, largest + params.min_rise * self.scale)
        self.bar = bar

    def add(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.vals.append(value)
        if not _isfinite(value):
            self._nonfinite += 1
        if self.scale is None and len(self.vals) >= self.params.window_steps:  # the run's own scale
            finite = self.recent(len(self.vals))
            self.scale = statistics.median(finite) if finite else None

    def _forget(self) -> None:
        self.bar = -math.inf

    def drop_from(self, step: int) -> None:
        """The steps from ``step`` on were abandoned (a rewind)."""
        while self.steps and self.steps[-1] >= step:
            self.steps.pop()
            self.vals.pop()
        self._forget()

    def clear(self) -> None:
        self.steps.clear()
        self.vals.clear()
        self._nonfinite = 0
        self._forget()

    def state_dict(self) -> dict[str, Any]:
        return {"values": [[step, value] for step, value in self.values], "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clear()
        for step, value in state.get("values", []):
            self.steps.append(int(step))
            self.vals.append(float(value))
            self._nonfinite += not math.isfinite(float(value))
        self.scale = state.get("scale")


@dataclass(frozen=True)
class Order:
    """What an in-trial policy decided at a step: rewind (``fresh``: a new fire of the policy; not
    fresh: the same spike still going on right after its rewind, whose batch is only skipped)."""

    policy: str
    policy_index: int  # its place among the in-trial policies (reports carry numbers only)
    candidate: int  # its place in the policy's ``then``
    action: Rewind
    finding: Finding
    fresh: bool = True


def in_trial_policies(policies: Iterable[Policy]) -> list[Policy]:
    """The enabled in-trial policies, in the order they are considered (priority, highest first)."""
    return sorted((p for p in policies if p.enabled and p.in_trial), key=lambda p: -p.priority)


def in_trial_data(policies: Iterable[Policy], symptoms: dict[str, dict[str, Any]] | None = None,
                  guard: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a trial needs to run the in-trial policies: the enabled ones, as data, the spec's
    parameters for ``loss_spike`` (the driver validated both) and, for a custom trainable, its
    spike guard's settings (``guard``; a managed run's are in its config)."""
    chosen = [p.model_dump(mode="json") for p in in_trial_policies(policies)]
    data = {"policies": chosen, "params": dict((symptoms or {}).get(LossSpike.name, {}))}
    if guard is not None:
        data["guard"] = dict(guard)
    return data


def _rewind(policy: Policy, candidate: int) -> Rewind:
    action = policy.then[candidate]
    assert isinstance(action, Rewind)  # an in-trial policy lists only rewind (Policy's validation)
    return action


class TrialRules:
    """The in-trial policies of one trial and the trailing windows of step losses and gradient
    norms they judge."""

    def __init__(self, policies: Iterable[Policy], params: SpikeParams | None = None, keep_steps: int = 0) -> None:
        self.policies = in_trial_policies(policies)
        self.params = params or SpikeParams()
        self.states = {p.name: PolicyState() for p in self.policies}
        self.fires = {p.name: 0 for p in self.policies}
        self.losses = _Window(STEP_LOSS, self.params, keep_steps)
        self.norms = _Window(STEP_GRAD_NORM, self.params, keep_steps)
        self.step = 0  # optimizer steps taken on the trajectory kept (rewound ones are given back)
        self.rewound_at: int | None = None  # the step restored by the latest rewind, until a step is taken
        self.spiking = False  # the step about to be taken was judged a spike (a pending policy trains on it)
        self._pending = False  # some policy's state is not inactive

    @classmethod
    def from_data(cls, data: dict[str, Any] | None, keep_steps: int = 0) -> TrialRules:
        """From :func:`in_trial_data`; None: the shipped policies with default parameters (the
        harness run without a driver, as in tests)."""
        if data is None:
            return cls(load_policies([BUILTIN]), keep_steps=keep_steps)
        policies = [Policy.model_validate(p) for p in data["policies"]]
        return cls(policies, SpikeParams(**data.get("params", {})), keep_steps)  # "guard" is the harness's

    @property
    def spent(self) -> bool:
        """Every policy has used all its fires: nothing more is answered in the trial."""
        return all(self.fires[p.name] >= p.fire_limit for p in self.policies)

    def judge(self, loss: float) -> Order | None:
        """The order for the loss of the step about to be taken, if a policy fires on it."""
        self.spiking = False
        return self._judge(self.losses, loss)

    def judge_norm(self, norm: float) -> Order | None:
        """The order for the gradient norm of the step about to be taken (after its loss passed
        :meth:`judge`), if a policy fires on it; None when ``grad_norm`` judging is off, or when
        the loss already spiked (a policy pending on it trains on the step: its state stays)."""
        if not self.params.grad_norm or self.spiking:
            return None
        return self._judge(self.norms, norm)

    def _judge(self, window: _Window, value: float) -> Order | None:
        evidence = window.evidence(value, self.step)  # most steps end here, with None
        if evidence is not None and self.spent and self.rewound_at != self.step:
            evidence = None  # the policies are spent; a burst right after the last fire is still skipped
        if evidence is None:  # pending policies resolve once the step is taken with neither arm spiking
            return None
        self.spiking = True
        finding = Finding(LossSpike.name, self.step, window.name,
                          spike_text(evidence, min(len(window), self.params.window_steps)), evidence)
        return self._answer(finding)

    def is_spike(self, loss: float) -> bool:
        """Would ``loss`` at the current step be a spike against the window (no policy involved)?"""
        return spike_evidence(self.params, self.losses.recent(), loss, self.step, self.losses.scale) is not None
    def _answer(self, finding: Finding) -> Order | None:
        no_config = lambda path: None  # noqa: E731  # in-trial policies read evidence only
        for index, policy in enumerate(self.policies):
            state = self.states[policy.name]
            if not policy.matches(finding.symptom, finding.evidence, no_config):
                state.resolve(policy.name, self.step)
                continue
            if self.rewound_at == self.step and self.fires[policy.name]:  # nothing trained since its rewind
                last = policy.schedule()[self.fires[policy.name] - 1]
                return Order(policy.name, index, last, _rewind(policy, last), finding, fresh=False)
            state.match(policy.name, self.step, policy.for_steps)
            self._pending = True
            if state.state is AlertState.FIRING and self.fires[policy.name] < policy.fire_limit:
                candidate = policy.schedule()[self.fires[policy.name]]
                self.fires[policy.name] += 1
                state.resolve(policy.name, self.step)  # answered: the next spike pends anew
                return Order(policy.name, index, candidate, _rewind(policy, candidate), finding)
        return None

    def _resolve(self) -> None:
        for policy in self.policies:
            self.states[policy.name].resolve(policy.name, self.step)
        self._pending = False

    def stepped(self, loss: float, norm: float | None = None) -> None:
        """After an optimizer step on ``loss`` (its gradient norm ``norm``): they join their windows,
        unless the step was judged a spike (a policy pending for ``for_steps`` trains on it): a
        spike that lasts must not hide itself."""
        if not self.spiking:
            self.losses.add(self.step, loss)
            if norm is not None and self.params.grad_norm:  # kept only to be judged
                self.norms.add(self.step, norm)
            if self._pending:  # no arm spiked at this step: a pending policy's condition ended
                self._resolve()
        self.spiking = False
        self.step += 1
        self.rewound_at = None

    def rewound(self, to_step: int) -> None:
        """The weights went back to ``to_step``: the abandoned trajectory leaves the windows."""
        self.losses.drop_from(to_step)
        self.norms.drop_from(to_step)
        self.step, self.rewound_at = to_step, to_step

    def state_dict(self) -> dict[str, Any]:
        """What a retried trial needs to judge on as before: the step, each policy's fires and the
        windows. Plain data (a checkpoint loads it with ``weights_only``). A policy pending for
        ``for_steps`` is not kept: the checkpoint is taken between epochs."""
        return {"step": self.step, "fires": dict(self.fires),
                "windows": {window.name: window.state_dict() for window in (self.losses, self.norms)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state_dict` (a policy no longer among the run's is dropped)."""
        self.step = int(state["step"])
        for name, fires in state["fires"].items():
            if name in self.fires:
                self.fires[name] = int(fires)
        for window in (self.losses, self.norms):
            window.load_state_dict(state["windows"].get(window.name, {}))

    def rewarm(self) -> None:
        """The run's level moved (a "spike" that lasts): judge again once half a new window is in."""
        self.losses.clear()
        self.norms.clear()
        self.rewound_at = None
