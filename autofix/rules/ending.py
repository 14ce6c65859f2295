"""Why a run ended, in one line that names what happened (``report.json``'s ``ended_because``).

Read off the engine's lineage as it stands when Tune's loop returns: a settled verdict, a policy
that stopped the run, a spent budget, the user's signal, or the last attempt's own end: its code
raised, its symptom had no policy or no remedy left, or the budget had no attempt left for a
fix (one attempt is kept in reserve to continue the user's run for the comparison,
:meth:`autofix.rules.decisions.Decisions._race_width`). Pure: no torch, no ray.
"""

from __future__ import annotations

from typing import Any

from autofix.rules.lineage import Attempt, Outcome

__all__ = ["ended_because", "interrupted_because"]


def interrupted_because(signal: str, resume: str | None) -> str:
    """The end reason of a run the user interrupted; ``resume``: the command that continues it,
    or None when it was stopped before Ray Tune saved anything."""
    if resume is None:
        return f"interrupted by {signal} before any trial started: nothing to resume, start the run again"
    return f"interrupted by {signal}: the trials were stopped at their last checkpoint; continue with: {resume}"


def ended_because(engine: Any, budget: Any, elapsed: float) -> str:
    """The end reason of a run driven by ``engine`` (:class:`autofix.rules.engine.Engine`) under
    ``budget`` (:class:`autofix.spec.schema.BudgetSpec`), ``elapsed`` seconds into this session."""
    if engine.winner is not None:
        return f"settled: keep {engine.winner}"
    if engine.halted is not None:
        return engine.halted
    if budget.wall_clock_s is not None and elapsed >= budget.wall_clock_s:
        return f"wall-clock budget of {budget.wall_clock_s:g} s spent"
    if engine.queue:
        waiting = ", ".join(engine.queue)
        return f"max_attempts={budget.max_attempts} reached: {waiting} queued but never launched"
    launched = [a for a in engine.attempts.values() if a.trial_id is not None]
    if not launched:
        return "no attempt was launched"
    return _last_attempt(engine, launched[-1], budget.max_attempts)


def _last_attempt(engine: Any, last: Attempt, max_attempts: int) -> str:
    """What ended the lineage at ``last``, the most recently launched attempt."""
    who = f"{last.id} ({last.role})" if last.role != "treatment" else last.id
    if last.outcome == Outcome.ERROR:
        what = last.reason.split("; full traceback")[0]  # the path is in the attempt's own line
        return (f"{who} failed ({what}): an error in the training code is not a training symptom, "
                "so no policy answers it")
    decision = last.decision
    if decision is not None and decision.child is None and decision.action != "stop_run()":
        return (f"max_attempts={max_attempts} reached: {who}'s {decision.finding.symptom} had a remedy "
                f"(policy '{decision.policy}') but no attempt was left to launch it")
    if last.noted:
        return (f"{who} kept training to its end: {_names(last.noted)} had a remedy, but max_attempts="
                f"{max_attempts} left no attempt for a fix beside the one kept in reserve to continue a0 "
                "(the run left alone) for the comparison")
    if last.outcome == Outcome.HEALTHY:
        return f"{who} ended healthy: {last.reason}"
    if last.role == "control":
        return f"{who}, the run left alone, ended {last.outcome}: {last.reason}"
    return _no_remedy(engine, last, who)


def _no_remedy(engine: Any, last: Attempt, who: str) -> str:
    """The attempt ended unhealthy (or sick) and no policy launched anything for it."""
    active = [f.symptom for f in last.findings if f.symptom in last.active]
    if not active:
        return f"{who} ended {last.outcome} with no symptom found: {last.reason}"
    parts = []
    for symptom in dict.fromkeys(active):
        answering = [p for p in engine.policies if p.when and p.when.symptom == symptom]
        if not answering:
            parts.append(f"no enabled policy answers {symptom}")
            continue
        spent = [p.name for p in answering if last.fires.get(p.name, 0) >= p.fire_limit or not p.remaining(
            last.used.get(p.name, []))]
        if spent:
            parts.append(f"{symptom}: {_names(spent)} had no remedy left in this lineage "
                         "(every candidate tried, skipped or fired its limit)")
        else:
            names = _names([p.name for p in answering])
            parts.append(f"{symptom}: {names} did not fire (conditions or patience not met)")
    return f"{who} ended {last.outcome} ({last.reason}); " + "; ".join(parts)


def _names(names: list[str]) -> str:
    """``policy 'a'`` or ``policies 'a', 'b'``."""
    return ("policy " if len(names) == 1 else "policies ") + ", ".join(f"'{n}'" for n in names)
