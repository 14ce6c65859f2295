"""``report.json`` and the printed summary: what was seen, what was changed, what worked.

Built from the engine's own attempts and decisions (the objects that were journaled), never
re-derived from logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from autofix.reports.journal import jsonable
from autofix.rules import settle
from autofix.rules.engine import Engine
from autofix.rules.ladder import ladder_record
from autofix.rules.lineage import Attempt

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
    role: str = "treatment"  # "control": the user's run left alone, kept or continued to compare with
    stopped_on: str | None = None  # "hard" | "soft": the severity of the symptom that stopped it
    compared: dict[str, Any] | None = None  # a healthy fix against the run left alone, at the same step
    last_step: float | None = None  # optimizer steps at its last report
    hints: list[str] = []  # remedies skipped for want of a knob: the path to map, and what it would do
    rung: dict[str, Any] | None = None  # role "isolation": the rung run and its sizes (autofix.rules.isolation)
    rung_result: dict[str, Any] | None = None  # ... its verdict, evidence and cost in examples and seconds
    steps: list[list[float | None]] = []  # reports between epochs: [step, loss mean, loss max, latest rewind's step]


class Report(BaseModel):
    """The result of :func:`autofix.run`."""

    status: Literal["healthy", "fixed", "unverified", "unfixed", "interrupted"]
    winner: str | None
    keep: str | None = None  # the attempt the user should keep (may be a0, or its continuation)
    keep_reason: str = ""  # why: the comparison at equal steps, or what was healthy
    name: str
    metric: str
    mode: str
    min_drop: float
    output: str
    duration_s: float
    ended_because: str
    attempts: list[AttemptReport]
    judged_by: list[str] = []  # how the run was judged (autofix.judge.judging.judged_by)
    missing_inputs: list[str] = []  # judgement inputs the trainable did not report: what each costs, and the fix
    blind_detectors: list[str] = []  # detectors no report of a0 fed past its epoch 1 (autofix.judge.judging.blind)
    isolation: dict[str, Any] = {}  # the isolation ladder, if one ran: rungs, conclusion, cost (autofix.rules.ladder)

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
        if self.judged_by:
            lines.append("judged by: " + "; ".join(self.judged_by))
        lines += [f"not judged: {line}" for line in self.missing_inputs]
        lines += [f"not detected: {line}" for line in self.blind_detectors]
        for a in self.attempts:
            arrow = f" <- {a.parent}" if a.parent else ""
            what = a.decision["reason"] if a.decision else a.reason
            if a.outcome == "running" and not what:  # an interrupted run: nothing judged it yet
                what = "stopped by the interrupt; resumes from its last checkpoint"
            lines.append(f"  {a.id}{arrow:7} {a.outcome:<12} {what}")
            lines += [f"  {'':7} {'hint':<12} {hint}" for hint in a.hints]
        lines += self._isolation_lines()
        lines.append(f"report: {Path(self.output, 'report.json')}   journal: {Path(self.output, 'journal.jsonl')}")
        return "\n".join(lines)

    def _isolation_lines(self) -> list[str]:
        """The ladder in two lines: what it concluded, and what it cost against one attempt."""
        ladder = self.isolation
        if not ladder.get("attempt"):
            return []
        if ladder.get("not_applicable"):
            return [f"isolation: {ladder['not_applicable']}"]
        cost = ladder.get("cost") or {}
        share = (f" = {cost['share']:.1%} of one attempt's {cost['attempt_examples']:g}"
                 if cost.get("share") is not None else "")
        seconds = (f"; {cost['seconds']:g} s (one attempt: {cost['attempt_seconds']:g} s)"
                   if cost.get("attempt_seconds") else "")
        rungs = len(ladder.get("rungs") or [])
        return [f"isolation of {ladder['attempt']}: {ladder.get('conclusion') or 'not concluded'}",
                f"isolation cost: {rungs} rung(s), {cost.get('examples', 0):g} examples{share}{seconds}"]

    def _headline(self) -> str:
        n = sum(1 for a in self.attempts if a.trial_id is not None and a.role != "isolation")
        if self.status == "interrupted":
            return f"autofix: INTERRUPTED after {n} attempt(s): {self.ended_because}"
        keep = f"; keep {self.keep}: {self.keep_reason}" if self.keep else ""
        if self.winner is None:
            return f"autofix: UNFIXED after {n} attempt(s) ({self.ended_because}){keep}"
        w = self.attempt(self.winner)
        gain = self._gain(w)
        if self.status == "healthy":
            rewinds = w.last_metrics.get("rewinds")
            if isinstance(rewinds, float) and rewinds > 0:  # healed in the trial, not left alone
                return (f"autofix: HEALTHY: no relaunch needed, its spike guard answered {rewinds:g} loss "
                        f"spike(s) in place; {gain}{keep}")
            return f"autofix: HEALTHY: the run left alone needs no fix; {gain}{keep}"
        diff = "; ".join(f"{path}: {old} -> {new}" for path, (old, new) in self.net_patch(w.id).items())
        if self.status == "unverified":
            return (f"autofix: IMPROVED, UNVERIFIED after {n} attempt(s), {w.id}: {gain}; changed {diff}; "
                    f"{self.keep_reason}")
        return f"autofix: FIXED in {n} attempt(s), winner {w.id}: {gain}; changed {diff}; {self.keep_reason}"

    def _gain(self, w: AttemptReport) -> str:
        """The winner's watched metric: a relative fall for a loss; for a max-mode metric (F1,
        accuracy) its values only, never a relative rise from an untrained epoch 0."""
        first, last = w.series[0][1], w.series[-1][1]
        if self.mode == "min" and w.improvement is not None:
            text = f"{self.metric} fell {w.improvement:.1%} ({first:.4g} -> {last:.4g})"
        else:
            text = f"{self.metric} {first:.4g} -> {last:.4g}"
        acc = w.last_metrics.get("val_accuracy")
        return text + (f", val_accuracy {acc:.3f}" if isinstance(acc, float) else "")

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
        role=a.role, stopped_on=a.stopped_on, compared=a.compared,
        last_step=a.history.position(a.history.last_iteration) if rows else None, hints=list(a.hints),
        rung=a.rung, rung_result=a.rung_result, steps=[list(p) for p in a.steps],
    )


def build_report(engine: Engine, name: str, output: str, duration_s: float, ended_because: str,
                 status: str | None = None) -> Report:
    """The report of a finished run; ``status="interrupted"``: of a run stopped to be resumed,
    with no verdict (its attempts as they stood)."""
    verdict = settle.verdict(engine.attempts, engine.plan.metric, engine.plan.mode)
    if status == "interrupted":
        verdict = settle.Verdict("interrupted", None, None, "the run was interrupted before it could be settled")
    return Report(
        status=verdict.status, winner=verdict.winner, keep=verdict.keep, keep_reason=verdict.reason,
        name=name, metric=engine.plan.metric, mode=engine.plan.mode,
        min_drop=engine.plan.min_drop, output=output, duration_s=round(duration_s, 3),
        ended_because=ended_because,
        attempts=[_attempt_report(engine, a) for a in engine.attempts.values()],
        judged_by=list((engine.judgement or {}).get("judged_by", [])),
        missing_inputs=list((engine.judgement or {}).get("missing", [])),
        blind_detectors=list(engine.blind or []),
        isolation=ladder_record(engine.attempts) if any(a.ladder for a in engine.attempts.values()) else {},
    )
