"""The engine's policy state machine: which policy fires on a report, and what it launches.

Per attempt and policy the state machine is Prometheus's (:mod:`autofix.rules.alerts`): *inactive*
(no matching finding), *pending* (matching since ``active_at``, for fewer than ``for_steps``
optimizer steps), *firing* (since ``fired_at``); each transition is journaled
(``policy_pending``, ``policy_firing``, ``policy_resolved``). A firing policy that may act
stops the attempt and queues a child whose config is the parent's with the policy's next
candidate action applied; with ``parallel`` > 1 it launches up to that many
candidates at once as siblings (a *race*). Fire counts and candidate positions are per lineage
(a child inherits its parent's), so a lineage never loops.

**Patience.** A policy that answers a *soft* symptom (one a slow learner shows too: plateau,
chance level, collapse, vanishing or dead units, ...) fires only once the attempt has trained
``max(soft_min_steps, soft_share x planned steps)`` optimizer steps, and only while the attempt
is not healthy (unless its symptom shows on healthy runs: overfitting), or beside a hard symptom
it may explain. Stopped on soft evidence, the user's run is kept as the reference its fixes are
compared with (:mod:`autofix.rules.settle`): kept training beside them when a slot is free, else
continued later to the same step.

A mixin of :class:`autofix.rules.engine.Engine`: it reads and writes the engine's lineage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autofix.actions import Change, KnobMissing, NotApplicable, get_path
from autofix.judge.verdict import Judge, health, planned_steps
from autofix.rules.lineage import CONTROL, Attempt, Decision, config_key
from autofix.rules.policy import Policy, metrics_lookup, step_policies
from autofix.symptoms import HARD, SOFT, SYMPTOMS, Finding

if TYPE_CHECKING:
    from autofix.rules.engine import Plan
    from autofix.rules.policy import PolicySet

__all__ = ["Decisions", "Patched", "gain", "knob_hint", "severity", "unrecoverable_hard"]


@dataclass(frozen=True)
class Patched:
    """A candidate action applied to an attempt's config: the patched config and its changes,
    or (``why_not`` non-empty) the reason it cannot be launched."""

    config: dict
    changes: list[Change]
    why_not: str = ""

    @classmethod
    def refused(cls, why_not: str) -> Patched:
        return cls({}, [], why_not)


def severity(symptom: str) -> str:
    """``hard`` or ``soft`` (:attr:`autofix.symptoms.Detector.severity`)."""
    return getattr(SYMPTOMS.get(symptom), "severity", HARD)


def unrecoverable_hard(symptom: str) -> bool:
    """A hard symptom a run does not come back from by itself (not a loss spike): on a report
    with one, soft policies need not wait for the run's patience."""
    cls = SYMPTOMS.get(symptom)
    return severity(symptom) == HARD and not getattr(cls, "recoverable", False)


class Decisions:
    """Policy evaluation and launching, over the engine's attributes (see the module)."""

    if TYPE_CHECKING:  # the engine's attributes and methods this mixin uses (autofix.rules.engine.Engine)
        plan: Plan
        policies: PolicySet
        journal: Callable[..., None]
        ranker: Callable[[str, str, list], list] | None
        check_config: Callable[[dict], str | None] | None
        attempts: dict[str, Attempt]
        queue: list[str]
        launched: dict[str, str]
        halted: str | None

        @property
        def judge(self) -> Judge: ...
        def _enqueue(self, attempt: Attempt) -> None: ...
        def _launched_count(self) -> int: ...
        def _reserve(self) -> int: ...
        def _isolate(self, attempt: Attempt, policy: Policy, finding: Finding, at_end: bool) -> Decision | None: ...

    def patience(self, attempt: Attempt) -> float:
        """Optimizer steps an attempt trains before a soft symptom may act on it."""
        planned = planned_steps(attempt.history)
        share = self.plan.soft_share * planned if planned is not None else 0.0
        return max(float(self.plan.soft_min_steps), share)

    def _eligible(self, attempt: Attempt, symptom: str, step: float, hard: bool, at_end: bool) -> bool:
        """May a policy answering ``symptom`` act on this report? (hard symptoms: always)"""
        if severity(symptom) != SOFT or at_end or hard:
            return True
        if step - attempt.start_step < self.patience(attempt):
            return False
        acts_healthy = getattr(SYMPTOMS.get(symptom), "acts_when_healthy", False)
        return acts_healthy or not health(attempt.history, self.judge).ok

    def _decide(self, attempt: Attempt, findings: list[Finding], at_end: bool) -> Decision | None:
        """Advance every policy's state; act on the first firing one that has a remedy left."""
        last = attempt.history.last_row()
        step = attempt.history.position(attempt.history.last_iteration)
        lookup = metrics_lookup(attempt.config, self.plan.aliases, last)
        # A recoverable one (a spike) may pass: it waives no patience before its own policy fires.
        hard = any(unrecoverable_hard(f.symptom) for f in findings)
        firing: list[tuple[Policy, Finding, float]] = []
        matching, moved = step_policies(self.policies, attempt.alerts, findings, lookup, last, step, at_end)
        for change in moved:  # pending, firing, resolved: Prometheus's alert states, journaled
            self.journal(change.event, attempt=attempt.id, **change.to_dict())
        for policy, match, held in matching:
            if step < attempt.cooldown.get(policy.name, float("-inf")):
                continue
            if not self._eligible(attempt, match.symptom, step, hard, at_end):
                continue
            if held >= policy.for_steps or at_end:
                firing.append((policy, match, held))
        for policy, finding, held in firing:
            decision = self._act(attempt, policy, finding, at_end, held)
            if decision is not None:
                return decision
        return None

    def _act(self, attempt: Attempt, policy: Policy, finding: Finding, at_end: bool,
             held: float) -> Decision | None:
        """Try the policy's candidates in lineage order; queue the first new, applicable patch(es)."""
        if any(getattr(a, "isolates", False) for a in policy.then):  # a ladder, not a patch (autofix.rules.ladder)
            return self._isolate(attempt, policy, finding, at_end)
        skipped: list[str] = []
        picks: list[tuple[Any, dict, list]] = []
        keys: set[str] = set()
        soft = severity(finding.symptom) == SOFT
        width = self._race_width(attempt, soft, at_end)
        if width == 0:  # no child can be launched: stopping on soft evidence would only do harm
            if policy.name not in attempt.noted:  # said once per attempt, not at every report
                attempt.noted.append(policy.name)
                self.journal("policy_exhausted", attempt=attempt.id, policy=policy.name, symptom=finding.symptom,
                             skipped=["no attempt left in the budget for a fix and the run left alone's "
                                      "continuation: the attempt keeps training"])
            return None
        while attempt.fires.get(policy.name, 0) < policy.fire_limit and len(picks) < width:
            used = attempt.used.setdefault(policy.name, [])
            order = policy.remaining(used)
            if not order:
                break
            if self.ranker is not None:  # measured success rates first (the ledger)
                order = self.ranker(finding.symptom, policy.name, [(i, policy.then[i]) for i in order])
            action = policy.then[order[0]]
            if action.terminal and picks:
                break  # a race of fixes ends before a "stop the run" candidate; it stays unused
            used.append(order[0])
            if action.terminal:
                return self._halt(attempt, policy, finding, action)
            # A repeatable action (``times``) raced against itself is a ladder: lr x0.1, x0.01, ...
            ladder = next((p for p in reversed(picks) if p[0] is action), None)
            patched = self._patched(attempt, action, keys, ladder[1] if ladder else None, (policy, finding))
            if patched.why_not:
                skipped.append(f"{action.describe()}: {patched.why_not}")
                continue
            keys.add(config_key(patched.config))
            picks.append((action, patched.config, patched.changes))
        if picks:
            return self._fire(attempt, policy, finding, picks, skipped, at_end, held)
        if skipped:
            self.journal("policy_exhausted", attempt=attempt.id, policy=policy.name, skipped=skipped)
        return None

    def _patched(self, attempt: Attempt, action: Any, racing: set[str], base: dict | None = None,
                 asked: tuple[Policy, Finding] | None = None) -> Patched:
        """The candidate applied to the attempt's config, or why it cannot be launched (a path no
        knob maps also leaves the attempt a hint naming it: :func:`knob_hint`)."""
        try:
            config, changes = action.apply(base if base is not None else attempt.config, self.plan.aliases)
        except KnobMissing as why:
            hint = knob_hint(why.path, action, *asked) if asked else str(why)
            if hint not in attempt.hints:
                attempt.hints.append(hint)
                self.journal("knob_hint", attempt=attempt.id, path=why.path, hint=hint)
            return Patched.refused(f"{why}: {hint}")
        except NotApplicable as why:
            return Patched.refused(str(why))
        if base is not None:  # a ladder step: its patch is still relative to the parent
            changes = [Change(c.path, get_path(attempt.config, c.path, None), c.new) for c in changes]
        key = config_key(config)
        twin = self.launched.get(key)
        if twin is not None or key in racing:
            return Patched.refused(f"that config already ran as {twin}" if twin else "another racer has that config")
        invalid = self.check_config(config) if self.check_config else None
        return Patched.refused(f"the patched config is invalid: {invalid}") if invalid else Patched(config, changes)

    def _keeps_running(self, attempt: Attempt, soft: bool, at_end: bool) -> bool:
        """A soft decision on the user's own run keeps it training beside its fixes when a slot is
        free (not once it has ended)."""
        return soft and not at_end and attempt.id == "a0" and attempt.role != CONTROL and self.plan.parallel >= 2

    def _race_width(self, attempt: Attempt, soft: bool, at_end: bool) -> int:
        """How many candidates to launch at once: ``parallel`` (less the slot of a parent kept
        running), within what the budget has left; on soft evidence about the user's run one
        attempt stays in reserve to continue it to the fix's step. 0: none can be launched."""
        left = self.plan.max_attempts - self._launched_count() - len(self.queue)
        parallel = self.plan.parallel
        if soft and attempt.id == "a0" and attempt.role != CONTROL:
            if self._keeps_running(attempt, soft, at_end):
                parallel -= 1
            else:
                left -= 1  # the continuation of a0 that verifies a fix
        left -= self._reserve()
        return max(0, min(parallel, left)) if soft else max(1, min(parallel, left))

    def _fire(self, attempt: Attempt, policy: Policy, finding: Finding, picks: list, skipped: list[str],
              at_end: bool, held: float) -> Decision:
        attempt.fires[policy.name] = attempt.fires.get(policy.name, 0) + 1
        soft = severity(finding.symptom) == SOFT
        keep = self._keeps_running(attempt, soft, at_end)
        held_text = "at the end of the attempt" if at_end else f"held {held:g} step(s)"
        race = [self._spawn(attempt, policy, finding, action, config, changes)
                for action, config, changes in picks]
        first = race[0]
        if len(race) > 1:  # _race_width keeps a race inside the budget: every racer has a child
            children = [e["child"] for e in race]
            for child in children:
                self.attempts[child].race = children
            then = "race " + " against ".join(f"{e['child']} with {e['diff']}" for e in race)
        elif first["child"]:
            then = f"launch {first['child']} with {first['diff']}"
        else:
            then = f"no attempt left in the budget for {first['diff']}"
        if keep:
            then += f"; {attempt.id} keeps training beside it as the run left alone, to compare with"
        reason = f"{finding.symptom} {held_text} ({finding.reason}); policy '{policy.name}': {then}"
        decision = Decision(policy.name, finding, first["action"], first["start"], picks[0][2], first["child"],
                            reason, skipped, race=race if len(race) > 1 else [],
                            severity=SOFT if soft else HARD, kept_running=keep)
        attempt.decision = decision
        self.journal("decision", attempt=attempt.id, **decision.to_dict())
        return decision

    def _spawn(self, attempt: Attempt, policy: Policy, finding: Finding, action: Any, config: dict,
               changes: list) -> dict[str, Any]:
        """Queue one patched child of ``attempt`` if the budget allows; describe it for the decision."""
        diff = ", ".join(f"{c.path}: {_short(c.old)} -> {_short(c.new)}" for c in changes)
        entry = {"child": None, "action": action.describe(), "start": action.start, "diff": diff,
                 "patch": [c.to_dict() for c in changes]}
        if self._launched_count() + len(self.queue) >= self.plan.max_attempts:
            return entry
        warm = self._healthy_checkpoint(attempt, finding) if action.start == "warm" else None
        child = Attempt(
            id=f"a{len(self.attempts)}", parent=attempt.id, config=config, patch=changes, policy=policy.name,
            answers=finding.symptom, action=action.describe(), start="warm" if warm else "cold", warm_from=warm,
            used={k: list(v) for k, v in attempt.used.items()}, fires=dict(attempt.fires),
        )
        start = 0.0
        if warm:
            # A warm restart continues its parent's curve: same baseline, same steps.
            resume = max(i for i, p in attempt.checkpoints.items() if p == warm)
            child.history.extend((i, m) for i, m in attempt.history.rows().items() if i <= resume)
            start = child.history.position(resume)
        child.start_step = start
        if policy.cooldown_steps:
            child.cooldown = {policy.name: start + policy.cooldown_steps}
        self._enqueue(child)
        entry.update(child=child.id, start=child.start)
        return entry

    def _halt(self, attempt: Attempt, policy: Policy, finding: Finding, action: Any) -> Decision:
        """A symptom no config can fix (a training-loop bug): stop the run and say what to check."""
        attempt.fires[policy.name] = attempt.fires.get(policy.name, 0) + 1
        advice = getattr(SYMPTOMS.get(finding.symptom), "advice", "") or "check the training code"
        reason = (f"{finding.symptom} ({finding.reason}); policy '{policy.name}': not fixable by "
                  f"configuration, run stopped without relaunching. {advice}")
        decision = Decision(policy.name, finding, action.describe(), "none", [], None, reason,
                            severity=severity(finding.symptom))
        attempt.decision = decision
        self.halted = reason
        self.journal("decision", attempt=attempt.id, **decision.to_dict())
        return decision

    def _healthy_checkpoint(self, attempt: Attempt, finding: Finding) -> str | None:
        """The best checkpoint saved before the symptom's onset while training was healthy.

        Healthy means the watched metric had already improved by ``min_drop`` (the run's own
        success criterion) on its first report: a checkpoint from a run that was broken from
        the start (a too-high LR wrecks the weights in epoch 1) is no place to resume from, so
        such a child starts cold.
        """
        onset = next((f.iteration for f in attempt.findings if f.symptom == finding.symptom), finding.iteration)
        series = dict(attempt.history.series(self.plan.metric))
        first = series.get(min(series)) if series else None
        gains = {i: gain(first, series.get(i), self.plan.mode) for i in attempt.checkpoints if i < onset}
        healthy = [(g, i) for i, g in gains.items() if g is not None and g >= self.plan.min_drop]
        # The best of them: a divergence often starts a report or two before it is flagged.
        return attempt.checkpoints[max(healthy)[1]] if healthy else None


def knob_hint(path: str, action: Any, policy: Policy, finding: Finding) -> str:
    """What mapping ``path`` under ``knobs`` would let autofix do (a skipped remedy, named)."""
    does = action.summary.rstrip(".")
    return (f"map `{path}` in `knobs` to let autofix {does[:1].lower()}{does[1:]} "
            f"({action.describe()}: policy '{policy.name}' on {finding.symptom})")


def gain(first: float | None, last: float | None, mode: str) -> float | None:
    """Relative improvement from ``first`` to ``last`` (a fall for "min", a rise for "max")."""
    if first is None or last is None or not (math.isfinite(first) and math.isfinite(last)):
        return None
    return ((first - last) if mode == "min" else (last - first)) / (abs(first) or 1.0)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, float) else f"{value:g}"
    return text if len(text) <= 60 else text[:57] + "..."
