"""Each policy's state on an attempt, in the manner of a Prometheus alert.

A policy is *inactive* while no finding matches it, *pending* from the report its match begins
(``active_at``, an optimizer step) for as long as it holds, and *firing* once it has held
``for_steps`` (``fired_at``); a report without a match *resolves* it back to inactive. Firing is
the rule's condition being met, not the engine acting: a soft symptom's policy may fire and
still wait for the run's patience (:mod:`autofix.rules.decisions`). Transitions are returned as data
so the engine journals them and ``autofix diagnose`` shows them. Pure Python, no torch or ray.

After Prometheus ``rules/alerting.go`` (``StateInactive``/``StatePending``/``StateFiring``,
``ActiveAt``, ``FiredAt``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

__all__ = ["AlertState", "PolicyState", "Transition"]


class AlertState(str, Enum):
    """Where a policy stands on an attempt."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True)
class Transition:
    """One policy's change of state at a report (``to`` inactive: it resolved)."""

    policy: str
    old: AlertState
    new: AlertState
    step: float
    active_at: float | None
    fired_at: float | None

    @property
    def event(self) -> str:
        """The journal event: ``policy_pending``, ``policy_firing`` or ``policy_resolved``."""
        return "policy_resolved" if self.new is AlertState.INACTIVE else f"policy_{self.new.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "from": self.old.value, "to": self.new.value, "step": self.step,
                "active_at": self.active_at, "fired_at": self.fired_at}


@dataclass
class PolicyState:
    """One policy's state on one attempt; steps are optimizer steps of that attempt's run."""

    state: AlertState = AlertState.INACTIVE
    active_at: float | None = None  # the step its current match began
    last_match_at: float | None = None  # the step of its latest fresh match
    fired_at: float | None = None  # the step it first held for_steps, in the current match

    @property
    def held(self) -> float:
        """How long the current match has held, in steps (0 when inactive)."""
        if self.active_at is None or self.last_match_at is None:
            return 0.0
        return self.last_match_at - self.active_at

    def match(self, name: str, step: float, for_steps: float) -> list[Transition]:
        """A fresh match at ``step``: start pending, or hold on; fire once held ``for_steps``."""
        out: list[Transition] = []
        if self.state is AlertState.INACTIVE:
            self.state, self.active_at, self.fired_at = AlertState.PENDING, step, None
            out.append(self._moved(name, AlertState.INACTIVE, step))
        self.last_match_at = step
        if self.state is AlertState.PENDING and self.held >= for_steps:
            self.state, self.fired_at = AlertState.FIRING, step
            out.append(self._moved(name, AlertState.PENDING, step))
        return out

    def resolve(self, name: str, step: float) -> list[Transition]:
        """No match at ``step``: back to inactive (nothing to say when it already was)."""
        if self.state is AlertState.INACTIVE:
            return []
        old = self.state
        done = self._moved(name, old, step, new=AlertState.INACTIVE)
        self.state, self.active_at, self.last_match_at, self.fired_at = AlertState.INACTIVE, None, None, None
        return [done]

    def _moved(self, name: str, old: AlertState, step: float, new: AlertState | None = None) -> Transition:
        return Transition(name, old, new or self.state, step, self.active_at, self.fired_at)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyState:
        return cls(**{**d, "state": AlertState(d["state"])})
