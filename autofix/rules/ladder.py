"""The engine's isolation ladder: run the rungs as trials, act on the first conclusive one.

A mixin of :class:`autofix.rules.engine.Engine` (as :class:`autofix.rules.decisions.Decisions` is). When a
policy whose candidates are ``isolate`` actions fires on an ``unexplained_failure``
(:func:`autofix.symptoms.isolation.unexplained`), the attempt is stopped and its rungs are queued
one at a time as attempts of role ``isolation`` (the reserved ``__autofix__`` key tells the
managed harness to run the rung instead of training: :func:`autofix.tune.controller.tune_config`).
Each rung reports once; :func:`autofix.rules.isolation.conclude` judges it:

* *training_step* or *data*: the run stops without relaunching (no config can fix either);
* *optimizer* (the step works with a reference optimizer): the generic policies answer, as below;
* *model*: a ``baseline_learns`` finding with the baselines' numbers goes to the policies (the
  shipped ones answer it with model remedies);
* nothing conclusive: the generic policies the ladder stood in front of act as before.

The ladder runs at most once per run, never on a custom trainable (it cannot run rungs: said
once), and does not count against ``budget.max_attempts``. Pure Python: no torch, no ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autofix.judge.verdict import finite, planned_steps
from autofix.rules import settle
from autofix.rules.isolation import (
    DATA,
    MODEL,
    TRAINING_STEP,
    RungResult,
    attempt_examples,
    conclude,
    refine,
    rung_budget,
)
from autofix.rules.lineage import ISOLATION, TREATMENT, Attempt, Decision, Outcome
from autofix.rules.policy import metrics_lookup
from autofix.symptoms import SOFT, Finding
from autofix.symptoms.isolation import GENERIC, BaselineLearns, UnexplainedFailure, unexplained

if TYPE_CHECKING:
    from autofix.rules.engine import Plan
    from autofix.rules.policy import PolicySet

__all__ = ["NOT_APPLICABLE", "Ladder", "ladder_record"]

NOT_APPLICABLE = ("isolation ladder not applicable: a custom trainable cannot run its rungs (they need the "
                  "managed harness to build the model, loss and data on their own)")


class Ladder:
    """Isolation over the engine's attributes (see the module)."""

    if TYPE_CHECKING:  # the engine's attributes and methods this mixin uses (autofix.rules.engine.Engine)
        plan: Plan
        policies: PolicySet
        journal: Callable[..., None]
        attempts: dict[str, Attempt]
        queue: list[str]
        halted: str | None

        def _continue(self, ref: Attempt) -> None: ...
        def _decide(self, attempt: Attempt, findings: list[Finding], at_end: bool) -> Decision | None: ...
        def _end(self, attempt: Attempt, outcome: str, reason: str, stop: bool = False) -> Any: ...
        def _race_width(self, attempt: Attempt, soft: bool, at_end: bool) -> int: ...
        def _settle(self) -> None: ...

    def _unexplained(self, attempt: Attempt, findings: list[Finding]) -> list[Finding]:
        """The ``unexplained_failure`` finding of this report, if any (journaled when new)."""
        if attempt.role != TREATMENT or self._ladder_ran():
            return []
        # Advisory findings count as causes too (a lost minority class explains a run at chance);
        # a cause no policy can answer any more (every remedy tried or inapplicable) explains nothing.
        causes = [(f.symptom, f.evidence) for f in findings if f.symptom in GENERIC or self._answerable(attempt, f)]
        why = unexplained(causes, self._answered(attempt))
        if why is None or self._named_by_config(attempt):
            return []
        finding = Finding(UnexplainedFailure.name, attempt.history.last_iteration or 0, self.plan.loss_metric,
                          why[0], why[1])
        if finding.symptom not in attempt.active:
            attempt.active.append(finding.symptom)
        if all(f.symptom != finding.symptom for f in attempt.findings):
            attempt.findings.append(finding)
            self.journal("finding", attempt=attempt.id, **finding.to_dict())
        return [finding]

    def _answerable(self, attempt: Attempt, finding: Finding) -> bool:
        """Some enabled policy that matches ``finding`` (its ``where`` included) has a remedy left."""
        lookup = metrics_lookup(attempt.config, self.plan.aliases, attempt.history.last_row())
        return any(p.matches(finding.symptom, finding.evidence, lookup) and attempt.fires.get(p.name, 0) < p.fire_limit
                   and p.remaining(attempt.used.get(p.name, [])) for p in self.policies)

    def _named_by_config(self, attempt: Attempt) -> bool:
        """The config alone names a suspect: a policy answering a generic finding reads the config
        in its ``where`` and every config condition holds (a learning rate far outside the usual
        range: plateau-low-lr, plateau-high-lr, plateau-high-lr-sgd). That policy answers it once
        its finding shows; the failure is not unexplained."""
        lookup = metrics_lookup(attempt.config, self.plan.aliases, attempt.history.last_row())
        for policy in self.policies:
            if policy.when is None or policy.when.symptom not in GENERIC:
                continue
            config = {p: c for p, c in policy.when.where.items() if not p.startswith(("evidence.", "metrics."))}
            if config and all(c.holds(lookup(p)) for p, c in config.items()):
                return True
        return False

    def _answered(self, attempt: Attempt) -> list[str | None]:
        """The symptom each remedy of the lineage answered, newest first."""
        out: list[str | None] = []
        node: Attempt | None = attempt
        while node is not None and node.parent is not None:
            out.append(node.answers)
            node = self.attempts.get(node.parent)
        return out

    def _ladder_ran(self) -> bool:
        return any(a.ladder is not None for a in self.attempts.values())

    def _isolate(self, attempt: Attempt, policy: Any, finding: Finding, at_end: bool) -> Decision | None:
        """Start the ladder of ``policy`` on ``attempt``; None (other policies act) when it cannot run."""
        if attempt.fires.get(policy.name, 0) >= policy.fire_limit or self._ladder_ran():
            return None
        if self._race_width(attempt, True, at_end) == 0:
            # The ladder stops the attempt; unless it stops the run, a fix and the continuation of
            # the run left alone must still fit in the budget (as for any soft decision).
            if policy.name not in attempt.noted:
                attempt.noted.append(policy.name)
                self.journal("policy_exhausted", attempt=attempt.id, policy=policy.name, symptom=finding.symptom,
                             skipped=["no attempt left in the budget for what the ladder may lead to (a fix and "
                                      "the run left alone's continuation): the attempt keeps training"])
            return None
        attempt.fires[policy.name] = policy.fire_limit  # a ladder runs once per lineage
        rungs = [a.rung for a in policy.then if getattr(a, "isolates", False)]
        examples = attempt_examples(planned_steps(attempt.history), attempt.config.get("batch_size"))
        why_not = NOT_APPLICABLE if not self.plan.managed else (
            None if examples else "isolation ladder not applicable: the attempt's size is unknown (no planned "
            "steps or no batch size), so its rungs have no budget to stay within")
        if why_not is not None:
            attempt.ladder = {"not_applicable": why_not, "rungs": rungs}
            self.journal("isolation_not_applicable", attempt=attempt.id, policy=policy.name, reason=why_not)
            return None
        attempt.ladder = {"policy": policy.name, "rungs": rungs, "attempt_examples": examples, "part": None,
                          "conclusion": None, "answers": finding.symptom}
        reason = (f"{finding.symptom} ({finding.reason}); policy '{policy.name}': isolation ladder "
                  f"{' -> '.join(rungs)} (at most 10% of one attempt's {examples:g} examples)")
        decision = Decision(policy.name, finding, "isolate(" + ", ".join(rungs) + ")", "none", [], None, reason,
                            severity=SOFT)
        attempt.decision = decision
        self.journal("decision", attempt=attempt.id, **decision.to_dict())
        self._queue_rung(attempt, 0)
        return decision

    def _queue_rung(self, examined: Attempt, index: int) -> None:
        name = _ladder(examined)["rungs"][index]
        sizes = rung_budget(name, _ladder(examined)["attempt_examples"], int(examined.config.get("batch_size") or 1))
        rung = Attempt(id=f"a{len(self.attempts)}", parent=examined.id, config=examined.config, role=ISOLATION,
                       rung={"rung": name, "index": index, **sizes}, policy=_ladder(examined)["policy"],
                       action=f"isolate(rung={name})")
        self.attempts[rung.id] = rung
        self.queue.insert(0, rung.id)  # not in self.launched: it shares its config with the attempt examined
        self.journal("rung_queued", attempt=rung.id, examines=examined.id, rung=name, sizes=sizes)

    def _rung_report(self, attempt: Attempt, iteration: int, metrics: dict[str, Any]) -> None:
        """The one report of a rung: judge it, then go on with the ladder."""
        attempt.history.record(iteration, metrics)
        attempt.reports += 1
        examined = self._examined(attempt)
        row = {**attempt.history.last_row(), **({"error": metrics["error"]} if metrics.get("error") else {}),
               **({"note": metrics["note"]} if metrics.get("note") else {})}
        self._rung_done(attempt, examined, conclude(_rung(attempt)["rung"], row, examined.history.last_row()))

    def _rung_failed(self, attempt: Attempt, error: str | None) -> None:
        """A rung trial that raised or ended without its report: an inconclusive rung."""
        text = (error or "it ended without reporting").strip().splitlines()
        result = RungResult(_rung(attempt)["rung"], False, None, f"the rung could not run: {text[-1] if text else ''}")
        attempt.error = error
        self._rung_done(attempt, self._examined(attempt), result)

    def _examined(self, rung: Attempt) -> Attempt:
        """The attempt a rung examines: its parent."""
        assert rung.parent is not None, f"rung {rung.id} has no attempt it examines"
        return self.attempts[rung.parent]

    def _rung_done(self, attempt: Attempt, examined: Attempt, result: RungResult) -> None:
        row = attempt.history.last_row()
        attempt.rung_result = {**result.to_dict(), "examples": finite(row.get("examples")) or 0.0,
                               "seconds": finite(row.get("isolation_seconds"))}
        self.journal("rung", attempt=attempt.id, examines=examined.id, **attempt.rung_result)
        self._end(attempt, "concluded" if result.conclusive else "inconclusive", result.conclusion)
        nxt = _rung(attempt)["index"] + 1
        if not result.conclusive and nxt < len(_ladder(examined)["rungs"]):
            self._queue_rung(examined, nxt)
            return
        result = refine(result, [f.symptom for f in examined.findings])
        _ladder(examined).update(part=result.part, conclusion=result.conclusion, by=attempt.id)
        self.journal("isolation_concluded", attempt=examined.id, part=result.part, conclusion=result.conclusion,
                     **ladder_record(self.attempts)["cost"])
        if result.part in (TRAINING_STEP, DATA):
            where = "the training step" if result.part == TRAINING_STEP else "the data"
            self.halted = (f"isolation ladder on {examined.id}: {result.conclusion}; the fault is in {where}: "
                           "run stopped without relaunching")
        elif result.part == MODEL:
            self._hand_over(examined, result)
        else:  # inconclusive, or the optimizer's settings: the generic policies answer as before
            self._fall_back(examined)
        self._settle()

    def _hand_over(self, examined: Attempt, result: RungResult) -> None:
        """The model is at fault: the policies answer ``baseline_learns`` with the rung's numbers."""
        finding = Finding(BaselineLearns.name, examined.history.last_iteration or 0, self.plan.loss_metric,
                          result.conclusion, result.evidence)
        examined.findings.append(finding)
        examined.active = [finding.symptom]
        self.journal("finding", attempt=examined.id, **finding.to_dict())
        if self._decide_after(examined, [finding]) is None:
            self._fall_back(examined)

    def _fall_back(self, examined: Attempt) -> None:
        """Nothing conclusive: the generic findings go to their own policies, as without a ladder;
        when none can launch a fix, the run left alone is continued (the ladder stopped it)."""
        generic = [f for f in examined.findings if f.symptom in examined.active
                   and f.symptom not in (UnexplainedFailure.name, BaselineLearns.name)]
        examined.active = [f.symptom for f in generic]
        if self._decide_after(examined, generic) is None and examined is settle.reference(self.attempts):
            self._continue(examined)

    def _decide_after(self, examined: Attempt, findings: list[Finding]) -> Decision | None:
        """The policies' decision on the examined attempt as at the report the ladder stopped it on:
        still running, so the budget reserve for continuing the run left alone counts once."""
        outcome, examined.outcome = examined.outcome, Outcome.RUNNING
        try:
            return self._decide(examined, findings, at_end=True)
        finally:
            examined.outcome = outcome


def ladder_record(attempts: dict[str, Attempt]) -> dict[str, Any]:
    """The ladder of a run for reports: where it ran, its rungs with their verdicts, what it
    concluded and what it cost against one attempt; ``{}`` when no ladder was started."""
    examined = next((a for a in attempts.values() if a.ladder is not None), None)
    if examined is None:
        return {"cost": {}}
    rungs = [a for a in attempts.values() if a.role == ISOLATION and a.parent == examined.id]
    examples = sum((a.rung_result or {}).get("examples") or 0.0 for a in rungs)
    seconds = sum((a.rung_result or {}).get("seconds") or 0.0 for a in rungs)
    whole = _ladder(examined).get("attempt_examples")
    cost = {"examples": examples, "attempt_examples": whole, "share": examples / whole if whole else None,
            "seconds": round(seconds, 3), "attempt_seconds": _attempt_seconds(examined)}
    return {"attempt": examined.id, **{k: v for k, v in _ladder(examined).items() if k != "attempt_examples"},
            "rungs": [{"attempt": a.id, **(a.rung_result or {"rung": _rung(a)["rung"], "conclusion": a.reason})}
                      for a in rungs], "cost": cost}


def _attempt_seconds(attempt: Attempt) -> float | None:
    """Seconds one whole attempt takes: the examined attempt's trial seconds, scaled from the
    steps it trained to its planned steps (None when Tune reported no timings)."""
    rows = attempt.history.rows()
    seconds = sum(finite(r.get("time_this_iter_s")) or 0.0 for r in rows.values())
    planned = planned_steps(attempt.history)
    done = attempt.history.position(attempt.history.last_iteration) if rows else 0.0
    if not seconds or not planned or not done:
        return None
    return round(seconds * planned / done, 3)


def _ladder(attempt: Attempt) -> dict[str, Any]:
    """The ladder started on ``attempt`` (only called where one was)."""
    assert attempt.ladder is not None, f"{attempt.id} has no isolation ladder"
    return attempt.ladder


def _rung(attempt: Attempt) -> dict[str, Any]:
    """The rung ``attempt`` runs (only called on isolation attempts)."""
    assert attempt.rung is not None, f"{attempt.id} is no isolation rung"
    return attempt.rung
