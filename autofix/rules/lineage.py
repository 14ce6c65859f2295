"""Attempts and decisions: the lineage of a run, as plain data.

Every decision is a value: the finding that triggered it (symptom, iteration, evidence,
reason), the policy, the action, the patch and the child it launched. The same objects are
journaled as they happen and rendered in the report, so the report never re-derives a
decision from logs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from autofix.actions import Change
from autofix.judge.history import History
from autofix.rules.alerts import PolicyState
from autofix.symptoms import Finding

__all__ = ["CONTROL", "ISOLATION", "TREATMENT", "Attempt", "Decision", "Outcome", "config_key"]

TREATMENT = "treatment"  # an attempt with the user's config or a fix: judged and acted on
CONTROL = "control"  # the user's run left alone (a0 kept running, or continued): measured only
ISOLATION = "isolation"  # one rung of the isolation ladder (autofix.rules.ladder): an experiment, not a fix


class Outcome:
    """Where an attempt ended. Plain strings so reports and journals stay readable."""

    QUEUED = "queued"
    RUNNING = "running"
    HEALTHY = "healthy"  # met the success criterion with no symptom active
    SICK = "sick"  # a policy fired on a symptom; the attempt was stopped
    UNHEALTHY = "unhealthy"  # ran its epochs without meeting the success criterion
    ERROR = "error"  # the trial's code raised: not a training symptom
    STOPPED = "stopped"  # stopped by the run (another attempt won, wall-clock budget)
    NOT_LAUNCHED = "not_launched"  # queued when the run ended


@dataclass
class Decision:
    """What the engine did about a finding on one attempt."""

    policy: str
    finding: Finding
    action: str | None
    start: str
    patch: list[Change]
    child: str | None
    reason: str
    skipped: list[str] = field(default_factory=list)
    race: list[dict[str, Any]] = field(default_factory=list)  # every sibling launched at once, if several
    severity: str = "hard"  # of the symptom acted on: "soft" decisions wait for the run's patience
    kept_running: bool = False  # the attempt was kept training beside its fixes (as the control)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["finding"] = self.finding.to_dict()
        d["patch"] = [c.to_dict() for c in self.patch]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(**{**d, "finding": Finding.from_dict(d["finding"]),
                      "patch": [Change.from_dict(c) for c in d["patch"]]})


@dataclass
class Attempt:
    """One trial of the run: its config, how it came to be, what was seen and how it ended."""

    id: str
    parent: str | None
    config: dict[str, Any]
    patch: list[Change] = field(default_factory=list)
    policy: str | None = None
    answers: str | None = None  # the symptom this attempt's patch answers
    action: str | None = None  # the action that made its patch
    start: str = "cold"
    warm_from: str | None = None
    trial_id: str | None = None
    outcome: str = Outcome.QUEUED
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)  # first finding of each symptom
    active: list[str] = field(default_factory=list)  # symptoms found at the last report
    decision: Decision | None = None
    error: str | None = None
    history: History = field(default_factory=History)
    used: dict[str, list[int]] = field(default_factory=dict)  # candidate indexes tried per policy, lineage-wide
    fires: dict[str, int] = field(default_factory=dict)  # fires per policy, lineage-wide
    alerts: dict[str, PolicyState] = field(default_factory=dict)  # policy -> its state (autofix.rules.alerts)
    cooldown: dict[str, float] = field(default_factory=dict)  # policy -> step before which it may not fire
    reports: int = 0  # reports judged in this attempt (a warm restart's seeded history excluded)
    checkpoints: dict[int, str] = field(default_factory=dict)  # iteration -> checkpoint path
    race: list[str] = field(default_factory=list)  # sibling attempts launched with this one (a race)
    start_step: float = 0.0  # the step its own training starts at (a warm start: its checkpoint's)
    role: str = TREATMENT  # CONTROL: the user's run left alone, measured to compare the fixes with
    stopped_on: str | None = None  # "hard" / "soft": the severity of the symptom that stopped it
    compared: dict[str, Any] | None = None  # a healthy fix against the run left alone, same step
    noted: list[str] = field(default_factory=list)  # policies whose "no budget" was journaled
    hints: list[str] = field(default_factory=list)  # skipped remedies: the knob to map (decisions.knob_hint)
    rung: dict[str, Any] | None = None  # ISOLATION: the rung run and its sizes (autofix.rules.isolation.rung_budget)
    rung_result: dict[str, Any] | None = None  # ISOLATION: its verdict (autofix.rules.isolation.RungResult) and cost
    ladder: dict[str, Any] | None = None  # the ladder run on this attempt (rungs, cost, conclusion), if any
    steps: list[list[float | None]] = field(default_factory=list)  # between epochs: [step, loss mean, max, rewound at]

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an attempt pickled by a release before the step series (a resumed run's engine) has none
        self.__dict__.update({"steps": [], **state})

    def to_dict(self) -> dict[str, Any]:
        skip = ("history", "findings", "decision", "patch", "checkpoints", "alerts")
        d = {k: v for k, v in self.__dict__.items() if k not in skip}
        d["alerts"] = {name: state.to_dict() for name, state in self.alerts.items()}
        d["patch"] = [c.to_dict() for c in self.patch]
        d["findings"] = [f.to_dict() for f in self.findings]
        d["decision"] = self.decision.to_dict() if self.decision else None
        d["history"] = {str(k): v for k, v in self.history.rows().items()}
        d["checkpoints"] = {str(k): v for k, v in self.checkpoints.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        d = dict(d)
        d["patch"] = [Change.from_dict(c) for c in d["patch"]]
        d["findings"] = [Finding.from_dict(f) for f in d["findings"]]
        d["decision"] = Decision.from_dict(d["decision"]) if d["decision"] else None
        d["history"] = History({int(k): v for k, v in d["history"].items()})
        d["checkpoints"] = {int(k): v for k, v in d["checkpoints"].items()}
        # A lineage saved before the alert states kept ``pending``: policy -> [match began, latest]
        legacy = {name: {"state": "pending", "active_at": span[0], "last_match_at": span[1]}
                  for name, span in d.pop("pending", {}).items()}
        d["alerts"] = {name: PolicyState.from_dict(v) for name, v in (d.get("alerts") or legacy).items()}
        return cls(**d)


def config_key(config: dict[str, Any]) -> str:
    """Canonical form of a config, to never launch the same one twice."""
    return json.dumps(config, sort_keys=True, default=str)
