"""Comparing like with like: a fix against the user's run left alone, at the same step count.

The *reference* is the user's run left alone: ``a0``, kept training beside its candidate fixes
(``budget.max_concurrent`` >= 2), or continued from its last checkpoint by a *control* attempt
when it was stopped on soft evidence. A healthy fix is *fixed* only when its metric beats the
reference's at the fix's own last step (:func:`autofix.judge.verdict.value_at`), and a watched loss is
not bought with a worse macro-F1 or accuracy (:data:`SCORES`), or when the reference is broken
(stopped on a hard symptom after it trained, or on a training-code bug, or its code raised): a
broken run has nothing to compare with. Otherwise a healthy fix is *unverified*, and the report
says so.

Pure functions over the lineage: no torch, no ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from autofix.judge.verdict import CHANCE_MARGIN, beats, finite, value_at
from autofix.rules.lineage import CONTROL, TREATMENT, Attempt, Outcome
from autofix.symptoms import SYMPTOMS

__all__ = ["BROKEN", "ENDED", "HEALTHY", "RUNNING", "SCORES", "SOFT_STOPPED", "Verdict", "compare", "ledger_outcomes",
           "reference", "reference_state", "verdict"]

BROKEN = "broken"  # stopped on a hard symptom, or raised: nothing to compare with
HEALTHY = "healthy"  # ran its planned steps and passed the health check
RUNNING = "running"  # still training (or queued): its curve may yet reach a fix's step
SOFT_STOPPED = "soft_stopped"  # stopped on soft evidence, not yet continued
ENDED = "ended"  # ran out (unhealthy, or stopped by the budget) without being broken


@dataclass(frozen=True)
class Verdict:
    """The run's verdict: its status, the attempt the user should keep and why."""

    status: Literal["healthy", "fixed", "unverified", "unfixed", "interrupted"]  # interrupted: no verdict
    winner: str | None
    keep: str | None
    reason: str


def reference(attempts: dict[str, Attempt]) -> Attempt:
    """The latest attempt of the run left alone (a0, or the last control continuing it)."""
    return [a for a in attempts.values() if a.id == "a0" or a.role == CONTROL][-1]


def reference_state(ref: Attempt) -> str:
    """Where the run left alone stands (one of the module's constants)."""
    if ref.outcome in (Outcome.RUNNING, Outcome.QUEUED):
        return RUNNING
    if ref.outcome == Outcome.HEALTHY:
        return HEALTHY
    broken = ref.outcome == Outcome.SICK and ref.stopped_on != "soft" and _shown_broken(ref)
    if ref.outcome == Outcome.ERROR or broken:
        return BROKEN
    if ref.outcome == Outcome.SICK:
        return SOFT_STOPPED
    return ENDED


def _shown_broken(ref: Attempt) -> bool:
    """A hard stop shows the run left alone broken once it has trained. One before its first
    step (the loss-at-init check) only predicts it: an N(0, 1)-initialised CNN that this check
    stops at step 0 reached 0.825 accuracy left alone (benchmarks/zoo custom_normal_init, seed 1),
    so such a run is continued to compare with, as after a soft stop. A bug in the training code
    (a symptom no config cures) is broken wherever it shows."""
    last = ref.history.last_iteration
    if last is not None and ref.history.position(last) > ref.start_step:
        return True
    symptom = ref.decision.finding.symptom if ref.decision is not None else None
    return not getattr(SYMPTOMS.get(symptom or ""), "fixable", True)


def _last(attempt: Attempt, metric: str) -> tuple[float, float | None]:
    """(step, metric value) at the attempt's last report."""
    history = attempt.history
    last = history.last_iteration
    return (history.position(last), history.last(metric)) if last is not None else (0.0, None)


def compare(candidate: Attempt, ref: Attempt, metric: str, mode: str) -> dict[str, Any] | None:
    """The candidate against the run left alone at the candidate's last step; None while the
    reference has not reached that step (and may still)."""
    step, value = _last(candidate, metric)
    entry = {"reference": ref.id, "step": step, "metric": metric, "value": value}
    state = reference_state(ref)
    if state == BROKEN:
        why = ref.reason.split(";")[0].removeprefix("the run left alone is broken: ")
        return {**entry, "reference_value": None, "beats": True,
                "why": f"the run left alone ({ref.id}) is broken: {why}"}
    reference_value = value_at(ref.history, metric, step)
    if reference_value is None:
        return None
    better = beats(value, reference_value, mode)
    how = "beats" if better else "does not beat"
    why = (f"{metric} {_num(value)} {how} {_num(reference_value)} of the run left alone ({ref.id}) "
           f"at the same step {step:g}")
    worse = _worse_score(candidate, ref, metric, step) if better else None
    if worse is not None:  # a lower loss bought with a worse classifier is no fix
        better, why = False, f"{why}, but {worse}"
    return {**entry, "reference_value": reference_value, "beats": better, "why": why}


SCORES = ("val_macro_f1", "val_accuracy")  # guarded when the watched metric is not one of them


def _worse_score(candidate: Attempt, ref: Attempt, metric: str, step: float) -> str | None:
    """Why the candidate's score is worse than the run left alone's at ``step`` (by more than
    CHANCE_MARGIN): macro-F1, else accuracy, when both report it and the watched metric is not a
    score. A fix that lowered the cross-entropy from 61 to 1.3 while its accuracy fell from 0.815
    to 0.635 (an N(0, 1)-initialised CNN, benchmarks/zoo custom_normal_init, seed 1) is not fixed."""
    if metric in SCORES:
        return None
    for name in SCORES:
        mine, theirs = finite(value_at(candidate.history, name, step)), finite(value_at(ref.history, name, step))
        if mine is None or theirs is None:
            continue
        if mine < theirs - CHANCE_MARGIN:
            return f"its {name} {mine:.4g} is below {theirs:.4g} of the run left alone (- {CHANCE_MARGIN:g})"
        return None
    return None


def _num(value: Any) -> str:
    number = finite(value)
    return f"{number:.4g}" if number is not None else str(value)


def _best(attempts: Iterable[Attempt], metric: str, mode: str) -> Attempt | None:
    best: Attempt | None = None
    for attempt in attempts:
        if best is None or beats(_last(attempt, metric)[1], _last(best, metric)[1], mode):
            best = attempt
    return best


def candidates(attempts: dict[str, Attempt]) -> list[Attempt]:
    """Healthy attempts that carry a fix (not the run left alone)."""
    return [a for a in attempts.values()
            if a.role == TREATMENT and a.id != "a0" and a.outcome == Outcome.HEALTHY]


def verdict(attempts: dict[str, Attempt], metric: str, mode: str) -> Verdict:
    """The run's status and the attempt to keep, from the attempts as they ended."""
    ref = reference(attempts)
    state = reference_state(ref)
    healthy = candidates(attempts)
    verified = [a for a in healthy if (a.compared or {}).get("beats")]
    unverified = [a for a in healthy if a.compared is None]
    best = _best(verified, metric, mode)
    if best is not None and best.compared is not None:  # a fix beat the run left alone at the same step
        return Verdict("fixed", best.id, best.id, best.compared["why"])
    if state == HEALTHY:
        return Verdict("healthy", ref.id, ref.id, f"the run left alone ({ref.id}) is healthy: {ref.reason}")
    if unverified:
        pick = _best(unverified, metric, mode)
        assert pick is not None  # _best of a non-empty list
        return Verdict("unverified", pick.id, pick.id,
                       f"{pick.id} is healthy, but the run left alone ({ref.id}) was stopped on soft evidence "
                       "and could not be continued to the same step: improved, unverified")
    worse = [a.compared for a in healthy if a.compared is not None]
    if worse:
        return Verdict("unfixed", None, ref.id, worse[0]["why"] + f": keep {ref.id}")
    if state != BROKEN:
        return Verdict("unfixed", None, ref.id, f"no fix beat the run left alone ({ref.id}): keep it")
    finite_ends = [a for a in attempts.values() if finite(_last(a, metric)[1]) is not None and a.trial_id]
    pick = _best(finite_ends, metric, mode)
    return Verdict("unfixed", None, pick.id if pick else None,
                   "no attempt became healthy" + (f"; {pick.id} has the best {metric}" if pick else ""))


def ledger_outcomes(attempts: dict[str, Attempt], metric: str, mode: str) -> list[tuple[Attempt, bool]]:
    """The answered attempts whose outcome is a verdict worth learning from, and whether the fix
    healed: healthy *and* better than its parent at the same step (the parent broken, its curve
    reaching that step, or, for a0's children, the run left alone compared). Unhealthy and sick
    outcomes did not heal; a healthy one that could not be compared is left out."""
    out: list[tuple[Attempt, bool]] = []
    for attempt in attempts.values():
        if attempt.role != TREATMENT or not attempt.answers:
            continue
        if attempt.outcome in (Outcome.SICK, Outcome.UNHEALTHY):
            out.append((attempt, False))
            continue
        if attempt.outcome != Outcome.HEALTHY:
            continue
        parent = attempts.get(attempt.parent or "")
        judged = compare(attempt, parent, metric, mode) if parent is not None else None
        if parent is not None and parent.id == "a0" and attempt.compared is not None:
            judged = attempt.compared
        if judged is not None:
            out.append((attempt, bool(judged["beats"])))
    return out
