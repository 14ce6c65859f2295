"""What a symptom detector is, and what it finds.

A detector is a small pure function object over an attempt's :class:`~autofix.judge.history.History`
(in the spirit of Ray Tune's ``TrialPlateauStopper``): validated parameters, no state of its
own, so a resumed run re-derives the same findings from the same reports. It imports neither
torch nor ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict

from autofix.judge.history import History
from autofix.judge.verdict import planned_steps

__all__ = ["HARD", "SOFT", "Detector", "Finding", "FixedParams", "Params", "ProbeDetector", "window_steps"]

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
    in_trial: ClassVar[bool] = False
    """Judged inside the trial at every optimizer step (``loss_spike``), by the policies that answer
    it there (:mod:`autofix.rules.intrial`); reports to the driver never carry its stream."""
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


# -- shared by the probe detectors -----------------------------------------------------------

class FixedParams(Params):
    """Parameters of a detector that reads fixed probe streams: ``metric`` does not apply."""

    metric: None = None
    """Always None: this detector reads the probe's own streams, not the run's loss metric."""


class ProbeDetector(Detector):
    """A detector over the probe's named streams; judges the history's last report only."""

    @staticmethod
    def last_values(history: History, *names: str) -> dict[str, float] | None:
        """The last report's values of ``names`` (NaN/Inf included), or None if any is missing."""
        row = history.last_row()
        out: dict[str, float] = {}
        for name in names:
            value = row.get(name)
            if value is None:
                return None
            out[name] = value
        return out

    @classmethod
    def optional(cls, history: History, name: str) -> float | None:
        """The last report's value of ``name``, or None when that report lacks it."""
        return history.last(name)

    @staticmethod
    def row_epoch(row: dict[str, float], position: int) -> float:
        """A report's ``epoch`` (the managed harness reports it), else its position (0-based)."""
        epoch = row.get("epoch")
        return epoch if epoch is not None and math.isfinite(epoch) else float(position)

    @classmethod
    def epoch(cls, history: History) -> float:
        """The epoch of the last report (see :meth:`row_epoch`); -1 for an empty history."""
        iterations = history.iterations
        if not iterations:
            return -1.0
        epoch = cls.optional(history, "epoch")
        if epoch is not None and math.isfinite(epoch):
            return epoch
        return float(len(iterations) - 1)

    @classmethod
    def poor_accuracy(cls, history: History, max_accuracy: float | None) -> tuple[bool, float | None]:
        """AUTOTRAINER's gate: (whether accuracy is poor enough to report, the accuracy seen).

        The gate is open when it is disabled (None) or the last report has no finite
        ``val_accuracy`` (regression, custom trainables).
        """
        accuracy = cls.optional(history, "val_accuracy")
        if accuracy is None or not math.isfinite(accuracy):
            return True, None
        return max_accuracy is None or accuracy < max_accuracy, accuracy

    @staticmethod
    def worst(history: History, prefix: str) -> str | None:
        """The suffix of the ``prefix``-named stream with the largest value in the last report."""
        row = history.last_row()
        named = [(v, k[len(prefix):]) for k, v in row.items() if k.startswith(prefix) and math.isfinite(v)]
        return max(named)[1] if named else None

    def found(self, history: History, metric: str, reason: str, **evidence: float | None) -> Finding:
        """A finding on the stream ``metric``; evidence given as None is left out."""
        return Finding(
            symptom=self.name,
            iteration=history.last_iteration or 0,
            metric=metric,
            reason=reason,
            evidence={k: float(v) for k, v in evidence.items() if v is not None},
        )
