"""The run left alone, the bar every fix must clear: its reports are measured (a hard symptom
ends it, a recoverable spike does not), each healthy fix is compared with it at the same
optimizer step (:mod:`autofix.rules.settle`), and a run stopped on soft evidence is continued
unpatched when a fix needs its value later. A mixin of :class:`autofix.rules.engine.Engine`.
Pure Python, no torch, no ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autofix.rules import settle
from autofix.rules.decisions import unrecoverable_hard
from autofix.rules.lineage import CONTROL, Attempt, Outcome
from autofix.symptoms import HARD, Finding

if TYPE_CHECKING:
    from autofix.rules.engine import Plan

__all__ = ["CONTINUE", "Control", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """The engine's answer to one report: keep training, or stop (and why)."""

    stop: bool
    reason: str = ""


CONTINUE = Verdict(False)


class Control:
    """The run left alone over the engine's attributes (see the module)."""

    if TYPE_CHECKING:  # the engine's attributes and methods this mixin uses (autofix.rules.engine.Engine)
        plan: Plan
        journal: Callable[..., None]
        attempts: dict[str, Attempt]
        queue: list[str]
        winner: str | None
        halted: str | None

        def _launched_count(self) -> int: ...
        def _end(self, attempt: Attempt, outcome: str, reason: str, stop: bool = False) -> Verdict: ...

    def _measure(self, attempt: Attempt, findings: list[Finding]) -> Verdict:
        """A report of the run left alone: no policy acts on it, but a hard symptom shows it is
        broken, and then it is stopped (a broken run is no bar for a fix to clear). A recoverable
        one (a loss spike) does not: the run left alone may come back, so it trains on."""
        hard = next((f for f in findings if unrecoverable_hard(f.symptom)), None)
        if hard is None or attempt.history.position(attempt.history.last_iteration) <= attempt.start_step:
            return CONTINUE  # before its first step (the loss-at-init check) nothing is shown broken yet
        attempt.stopped_on = HARD
        return self._end(attempt, Outcome.SICK, f"the run left alone is broken: {hard.symptom} ({hard.reason})",
                         stop=True)

    def _reserve(self) -> int:
        """1 while a0 stopped on soft evidence awaits its continuation: kept free in the budget."""
        ref = settle.reference(self.attempts)
        return int(settle.reference_state(ref) == settle.SOFT_STOPPED and ref.id == "a0")

    def _settle(self) -> None:
        """Compare every healthy fix with the run left alone at the fix's step; decide when final.

        Final when the run left alone ended healthy (it is kept unless a fix beat it), when a
        fix beat it (or it is broken), or when a waiting fix can no longer be compared: then the
        fix is "improved, unverified". When a0 was stopped on soft evidence and a fix needs its
        value at a later step, a control attempt continues a0 from its last checkpoint.
        """
        if self.winner is not None or self.halted is not None:
            return
        ref = settle.reference(self.attempts)
        fixes = settle.candidates(self.attempts)
        for fix in fixes:
            if fix.compared is None:
                fix.compared = settle.compare(fix, ref, self.plan.metric, self.plan.mode)
                if fix.compared is not None:
                    self.journal("compared", attempt=fix.id, **fix.compared)
        waiting = [fix for fix in fixes if fix.compared is None]
        if waiting and settle.reference_state(ref) == settle.SOFT_STOPPED:
            self._continue(ref)
            ref = settle.reference(self.attempts)
        state = settle.reference_state(ref)
        beaten = any(fix.compared and fix.compared["beats"] for fix in fixes)
        if state == settle.HEALTHY or beaten or (waiting and not self._can_continue(ref)):
            final = settle.verdict(self.attempts, self.plan.metric, self.plan.mode)
            self.winner = final.winner or final.keep
            self.journal("settled", status=final.status, winner=final.winner, keep=final.keep, reason=final.reason)

    def _can_continue(self, ref: Attempt) -> bool:
        """Can the run left alone still reach a fix's step (running, or continuable in the budget)?"""
        state = settle.reference_state(ref)
        if state == settle.RUNNING:
            return True
        return state == settle.SOFT_STOPPED and self._launched_count() + len(self.queue) < self.plan.max_attempts

    def _continue(self, ref: Attempt) -> None:
        """Queue a control: the run left alone, resumed from its last checkpoint, unpatched."""
        if not self._can_continue(ref) or settle.reference_state(ref) != settle.SOFT_STOPPED:
            return
        last = max(ref.checkpoints) if ref.checkpoints else None
        warm = ref.checkpoints[last] if last is not None else None
        control = Attempt(id=f"a{len(self.attempts)}", parent=ref.id, config=ref.config, role=CONTROL,
                          start="warm" if warm else "cold", warm_from=warm)
        if warm and last is not None:
            control.history.extend((i, m) for i, m in ref.history.rows().items() if i <= last)
            control.start_step = control.history.position(last)
        self.attempts[control.id] = control
        self.queue.insert(0, control.id)  # next: the fix it verifies is waiting for it
        self.journal("control_queued", attempt=control.id, continues=ref.id, start=control.start,
                     from_step=control.start_step, reason=f"{ref.id} was stopped on soft evidence; continuing it "
                     "unpatched to compare the fixes with it at the same step")
