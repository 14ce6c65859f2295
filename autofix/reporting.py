"""``report.json`` and the printed summary: what was seen, what was changed, what worked.

Built from the engine's own attempts and decisions (the objects that were journaled), never
re-derived from logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from autofix.engine import Engine
from autofix.journal import jsonable
from autofix.lineage import Attempt

__all__ = ["AttemptReport", "Report", "build_report"]


class AttemptReport(BaseModel):
    """One attempt as reported."""

    id: str
    parent: str | None
    trial_id: str | None
    config: dict[str, Any]
    patch: list[dict[str, Any]]
    policy: str | None
    start: str
    findings: list[dict[str, Any]]
    decision: dict[str, Any] | None
    outcome: str
    reason: str
    error: str | None
    improvement: float | None
    series: list[tuple[int, Any]]
    last_metrics: dict[str, Any]
    race: list[str] = []  # siblings launched at once with this attempt (parallel candidate fixes)
    reports: int = 0  # reports this attempt produced itself (a warm restart's inherited ones excluded)


class Report(BaseModel):
    """The result of :func:`autofix.run`."""

    status: Literal["healthy", "fixed", "unfixed"]
    winner: str | None
    name: str
    metric: str
    mode: str
    min_drop: float
    output: str
    duration_s: float
    ended_because: str
    attempts: list[AttemptReport]

    def attempt(self, attempt_id: str) -> AttemptReport:
        """An attempt by id; KeyError listing the ids there are."""
        for a in self.attempts:
            if a.id == attempt_id:
                return a
        raise KeyError(f"no attempt {attempt_id!r}; attempts: {', '.join(a.id for a in self.attempts)}")

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(jsonable(self.model_dump()), indent=2, allow_nan=False) + "\n")

    def summary(self) -> str:
        """A short readable account for the terminal."""
        lines = [self._headline()]
        for a in self.attempts:
            arrow = f" <- {a.parent}" if a.parent else ""
            what = a.decision["reason"] if a.decision else a.reason
            lines.append(f"  {a.id}{arrow:7} {a.outcome:<12} {what}")
        lines.append(f"report: {Path(self.output, 'report.json')}   journal: {Path(self.output, 'journal.jsonl')}")
        return "\n".join(lines)

    def _headline(self) -> str:
        n = sum(1 for a in self.attempts if a.trial_id is not None)
        if self.winner is None:
            return f"autofix: UNFIXED after {n} attempt(s) ({self.ended_because})"
        w = self.attempt(self.winner)
        first, last = w.series[0][1], w.series[-1][1]
        verb = "fell" if self.mode == "min" else "rose"
        gain = f"{self.metric} {verb} {w.improvement:.1%} ({first:.4g} -> {last:.4g})"
        acc = w.last_metrics.get("val_accuracy")
        gain += f", val_accuracy {acc:.3f}" if isinstance(acc, float) else ""
        if self.status == "healthy":
            return f"autofix: HEALTHY: the first attempt needed no fix; {gain}"
        diff = "; ".join(f"{path}: {old} -> {new}" for path, (old, new) in self.net_patch(w.id).items())
        return f"autofix: FIXED in {n} attempt(s), winner {w.id}: {gain}; changed {diff}"

    def net_patch(self, attempt_id: str) -> dict[str, tuple[Any, Any]]:
        """Each config path changed between the user's config and this attempt: (original, now)."""
        chain: list[dict[str, Any]] = []
        attempt: AttemptReport | None = self.attempt(attempt_id)
        while attempt is not None:
            chain = attempt.patch + chain
            attempt = self.attempt(attempt.parent) if attempt.parent else None
        net: dict[str, tuple[Any, Any]] = {}
        for change in chain:
            net[change["path"]] = (net.get(change["path"], (change["from"],))[0], change["to"])
        return net


def _attempt_report(engine: Engine, a: Attempt) -> AttemptReport:
    rows = a.history.rows()
    return AttemptReport(
        id=a.id, parent=a.parent, trial_id=a.trial_id, config=a.config,
        patch=[c.to_dict() for c in a.patch], policy=a.policy, start=a.start,
        findings=[f.to_dict() for f in a.findings],
        decision=a.decision.to_dict() if a.decision else None,
        outcome=a.outcome, reason=a.reason, error=a.error, improvement=engine.improvement(a),
        series=[(i, v) for i, v in a.history.series(engine.plan.metric)],
        last_metrics=rows[max(rows)] if rows else {}, race=list(a.race), reports=a.reports,
    )


def build_report(engine: Engine, name: str, output: str, duration_s: float, ended_because: str) -> Report:
    """The report of a finished run."""
    winner = engine.winner
    status = "unfixed" if winner is None else ("healthy" if winner == "a0" else "fixed")
    return Report(
        status=status, winner=winner, name=name, metric=engine.plan.metric, mode=engine.plan.mode,
        min_drop=engine.plan.min_drop, output=output, duration_s=round(duration_s, 3),
        ended_because=ended_because,
        attempts=[_attempt_report(engine, a) for a in engine.attempts.values()],
    )
