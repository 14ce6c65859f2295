"""What a symptom detector is, and what it finds.

A detector is a small pure function object over an attempt's :class:`~autofix.judge.history.History`
(in the spirit of Ray Tune's ``TrialPlateauStopper``): validated parameters, no state of its
own, so a resumed run re-derives the same findings from the same reports. It imports neither
torch nor ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict

from autofix.judge.history import History
from autofix.judge.verdict import planned_steps

__all__ = ["HARD", "SOFT", "Detector", "Finding", "Params", "window_steps"]

HARD: Final = "hard"
SOFT: Final = "soft"


def window_steps(history: History, steps: int, share: float = 0.0) -> float:
    """A window in optimizer steps: ``steps``, or ``share`` of the planned steps when longer."""
    planned = planned_steps(history)
    return max(float(steps), share * planned) if planned is not None else float(steps)


@dataclass(frozen=True)
class Finding:
    """One symptom seen at one iteration: the numbers behind it and a one-line reason."""

    symptom: str
    iteration: int
    metric: str
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies field by field, ~20x slower, and the engine
        # journals every finding and decision (the evidence holds floats only).
        return {"symptom": self.symptom, "iteration": self.iteration, "metric": self.metric,
                "reason": self.reason, "evidence": dict(self.evidence)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**data)


class Params(BaseModel):
    """Base of every detector's parameters: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    metric: str | None = None
    """Metric stream the detector reads; None means the run's loss metric."""


class Detector:
    """Base class: subclasses set ``name``, ``summary``, ``Params`` and implement :meth:`check`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    severity: ClassVar[Literal["hard", "soft"]] = SOFT
    """``hard``: the run is broken beyond doubt (non-finite loss, divergence, exploding gradients,
    exact-zero updates); its policies may act at once. ``soft``: a slow learner can look the same
    for a while; its policies act only after the run's patience (``patience.min_steps`` and
    ``patience.share`` of the planned steps) and only while the attempt is not healthy."""
    acts_when_healthy: ClassVar[bool] = False
    """A soft symptom that shows on a run whose loss did fall (overfitting): the "not healthy"
    gate does not apply to it."""
    recoverable: ClassVar[bool] = False
    """A hard symptom that a transient spike shows too (a loss or gradient that jumps and comes
    back): its policies act once it has held their ``for_steps``, it waives no soft symptom's
    patience, and the run left alone, continued as a control, is not declared broken on it; it
    trains on and is compared at the same step."""
    fixable: ClassVar[bool] = True
    """False for a symptom no change of hyperparameters can cure (a bug in the training code)."""
    sampled: ClassVar[bool] = False
    """Reads probe statistics that may be carried forward from an earlier sample (``probe_age``
    > 0): such a report is no new evidence, so it neither confirms nor clears a pending policy."""
    advisory: ClassVar[bool] = False
    """A property of the data, not a sickness: reported, answerable by policies, but it does not
    keep an attempt from being judged healthy."""
    advice: ClassVar[str] = ""
    """What a person should check when the symptom is found (mainly for ``fixable = False``)."""
    inputs: ClassVar[tuple[str, ...]] = ()
    """The catalogued metrics (:mod:`autofix.spec.catalogue`; a family ends in ``/``) it needs besides
    the run's loss metric: with none of them reported it can find nothing, and the run journals
    that once (``detectors_blind``)."""
    evidence_keys: ClassVar[tuple[str, ...]] = ()
    """The keys its findings' evidence may hold: what a policy's ``where: {evidence.KEY: ...}``
    can read (``autofix policies check`` refuses any other)."""

    def __init__(self, default_metric: str, **params: Any) -> None:
        # Any: each detector reads its own Params subclass (typing it would make Detector generic).
        self.params: Any = self.Params(**params)
        self.metric = self.params.metric or default_metric

    def check(self, history: History) -> Finding | None:
        """The finding at the history's last iteration, or None when the symptom is absent."""
        raise NotImplementedError

    def check_ended(self, history: History) -> Finding | None:
        """The finding once the attempt has ended (its last report is its last): only symptoms
        of an end, such as ``slow_progress``, say more here than :meth:`check`."""
        return None

    def finding(self, history: History, reason: str, **evidence: float) -> Finding:
        return Finding(
            symptom=self.name,
            iteration=history.last_iteration or 0,
            metric=self.metric,
            reason=reason,
            evidence={k: float(v) for k, v in evidence.items()},
        )
