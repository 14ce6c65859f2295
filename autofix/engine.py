"""The rule engine: reports in, decisions out. Pure Python, no torch, no ray.

Per attempt and policy the state machine is Prometheus's: *inactive* (no matching finding),
*pending* (matching for fewer than ``for_steps`` consecutive reports), *firing*. A firing
policy stops the attempt and queues a child whose config is the parent's with the policy's
next candidate action applied. Fire counts and candidate positions are per lineage (a child
inherits its parent's), so a lineage never loops: every policy has a bounded number of fires,
no config is launched twice, and the run never launches more than ``max_attempts``.

With ``parallel`` > 1 (the spec's ``budget.max_concurrent``) a firing policy launches up to
that many of its candidate actions at once, as sibling attempts: a *race*. Each sibling
inherits every candidate the race used, so a loser's lineage never retries a rival's patch;
the first sibling confirmed healthy wins and the others are stopped at their next report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from autofix.actions import Change, NotApplicable, get_path
from autofix.lineage import Attempt, Decision, Outcome, config_key
from autofix.metrics import as_float
from autofix.policy import Policy, PolicySet, metrics_lookup, step_policies
from autofix.symptoms import SYMPTOMS, Detector, Finding

__all__ = ["Engine", "Plan", "Verdict"]

Journal = Callable[..., None]


@dataclass(frozen=True)
class Plan:
    """What the engine needs from a spec, as plain values."""

    config: dict[str, Any]
    metric: str = "val_loss"
    mode: str = "min"
    loss_metric: str = "val_loss"
    min_drop: float = 0.3
    max_attempts: int = 6
    max_epochs: int | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    parallel: int = 1  # candidate actions launched at once when a policy fires (a race)


@dataclass(frozen=True)
class Verdict:
    """The engine's answer to one report: keep training, or stop (and why)."""

    stop: bool
    reason: str = ""


CONTINUE = Verdict(False)


class Engine:
    """Owns the lineage of a run; the controller feeds it Tune events and obeys its verdicts."""

    def __init__(self, plan: Plan, detectors: list[Detector], policies: PolicySet,
                 journal: Journal | None = None, check_config: Callable[[dict], str | None] | None = None,
                 ranker: Callable[[str, list], list] | None = None) -> None:
        self.plan = plan
        self.check_config = check_config
        self.ranker = ranker
        self.observer: Callable[[Attempt], None] | None = None  # live view; never pickled
        self.detectors = detectors
        self.policies = policies
        self.journal = journal or (lambda event, **data: None)
        self.attempts: dict[str, Attempt] = {}
        self.queue: list[str] = []
        self.by_trial: dict[str, str] = {}
        self.launched: dict[str, str] = {}  # config key -> attempt id
        self.winner: str | None = None
        self.halted: str | None = None  # set when a policy stops the whole run
        self.deadline: float | None = None  # epoch seconds; set by a resumed run (what is left of wall_clock_s)
        self._enqueue(Attempt(id="a0", parent=None, config=plan.config))

    # -- Tune events -------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Attempt | None:
        """The next queued attempt, bound to ``trial_id``; None when none is ready."""
        if self.done or not self.queue or self._launched_count() >= self.plan.max_attempts:
            return None
        attempt = self.attempts[self.queue.pop(0)]
        attempt.trial_id, attempt.outcome = trial_id, Outcome.RUNNING
        self.by_trial[trial_id] = attempt.id
        self.journal("attempt_launched", attempt=attempt.id, parent=attempt.parent, trial_id=trial_id,
                     start=attempt.start, patch=[c.to_dict() for c in attempt.patch])
        return attempt

    def observe(self, trial_id: str, iteration: int, metrics: dict[str, Any],
                checkpoint: str | None = None) -> Verdict:
        """Take one report; say whether the trial must stop."""
        attempt = self.attempts[self.by_trial[trial_id]]
        if attempt.outcome != Outcome.RUNNING:
            return Verdict(True, attempt.reason)
        if checkpoint and checkpoint not in attempt.checkpoints.values():
            # Tune shows the scheduler the checkpoint of the *previous* report.
            previous = attempt.history.last_iteration
            if previous is not None:
                attempt.checkpoints[previous] = checkpoint
        bad = self._check_stream(metrics)
        if bad:
            return self._end(attempt, Outcome.ERROR, bad, stop=True)
        judged = attempt.history.last_iteration
        attempt.history.record(iteration, metrics)
        if judged is not None and iteration <= judged:
            # A restored trial replays reports after its checkpoint: already judged once.
            return CONTINUE
        attempt.reports += 1
        if self.winner is not None:
            return self._end(attempt, Outcome.STOPPED, f"attempt {self.winner} already healthy", stop=True)
        if self.halted is not None:
            return self._end(attempt, Outcome.STOPPED, self.halted, stop=True)
        findings = self._detect(attempt)
        decision = self._decide(attempt, findings, at_end=False)
        if self.observer is not None:
            self.observer(attempt)
        if decision is not None:
            return self._end(attempt, Outcome.SICK, decision.reason, stop=True)
        epoch = as_float(metrics.get("epoch", iteration))
        if self.plan.max_epochs is not None and epoch is not None and epoch >= self.plan.max_epochs:
            return Verdict(True, f"reached max_epochs={self.plan.max_epochs}")
        return CONTINUE

    def complete(self, trial_id: str, error: str | None = None) -> None:
        """The trial ended (ran out of epochs, was stopped, or raised)."""
        attempt = self.attempts.get(self.by_trial.get(trial_id, ""))
        if attempt is None or attempt.outcome != Outcome.RUNNING:
            return
        if error is not None:
            attempt.error = error
            self._end(attempt, Outcome.ERROR, f"the trial raised: {error.strip().splitlines()[-1] if error.strip() else error}")
            return
        if self._healthy(attempt):
            return
        findings = [f for f in attempt.findings if f.symptom in attempt.active]
        decision = self._decide(attempt, findings, at_end=True)
        if decision is not None:
            self._end(attempt, Outcome.SICK, decision.reason)
        else:
            self._end(attempt, Outcome.UNHEALTHY, self._progress_text(attempt))

    def expire(self, reason: str) -> None:
        """The run's budget is spent: no new attempt starts; running ones are stopped at their next report."""
        if self.halted is None and self.winner is None:
            self.halted = reason
            self.journal("budget_spent", reason=reason)

    def finish(self, reason: str = "") -> None:
        """The run ended: running attempts were stopped, queued ones were never launched."""
        for attempt in self.attempts.values():
            if attempt.outcome == Outcome.RUNNING:
                self._end(attempt, Outcome.STOPPED, reason or "the run ended")
            elif attempt.outcome == Outcome.QUEUED:
                self._end(attempt, Outcome.NOT_LAUNCHED, reason or "the run ended first")
        self.queue.clear()

    @property
    def done(self) -> bool:
        """Nothing left to do: a winner, or no queued attempt that the budget still allows."""
        if self.winner is not None or self.halted is not None:
            return True
        can_launch = bool(self.queue) and self._launched_count() < self.plan.max_attempts
        return not can_launch and not self.running

    @property
    def running(self) -> list[str]:
        return [a.id for a in self.attempts.values() if a.outcome == Outcome.RUNNING]

    # -- detection and decisions -------------------------------------------------------------
    def _check_stream(self, metrics: dict[str, Any]) -> str | None:
        """A report must carry the watched metrics as numbers (the metric stream is user input)."""
        for name in dict.fromkeys((self.plan.metric, self.plan.loss_metric)):
            if name not in metrics:
                keys = ", ".join(sorted(k for k in metrics if not k.startswith(("config", "time", "date"))))
                return f"report has no metric '{name}'; it reported: {keys or 'nothing'}"
            if as_float(metrics[name]) is None:
                return f"metric '{name}' must be a number, got {metrics[name]!r}"
        return None

    def _detect(self, attempt: Attempt) -> list[Finding]:
        findings = [f for d in self.detectors if (f := d.check(attempt.history)) is not None]
        attempt.active = [f.symptom for f in findings]
        seen = {f.symptom for f in attempt.findings}
        for f in findings:
            if f.symptom not in seen:
                attempt.findings.append(f)
                self.journal("finding", attempt=attempt.id, **f.to_dict())
        return findings

    def _decide(self, attempt: Attempt, findings: list[Finding], at_end: bool) -> Decision | None:
        """Advance every policy's state; act on the first firing one that has a remedy left."""
        last = attempt.history.last_row()
        lookup = metrics_lookup(attempt.config, self.plan.aliases, last)
        firing: list[tuple[Policy, Finding]] = []
        for policy, match, streak in step_policies(self.policies, attempt.streaks, findings, lookup, last, at_end):
            if attempt.cooldown.get(policy.name, 0) >= attempt.reports:
                continue
            if streak >= policy.for_steps or at_end:
                firing.append((policy, match))
        for policy, finding in firing:
            decision = self._act(attempt, policy, finding, at_end)
            if decision is not None:
                return decision
        return None

    def _act(self, attempt: Attempt, policy: Policy, finding: Finding, at_end: bool) -> Decision | None:
        """Try the policy's candidates in lineage order; queue the first new, applicable patch(es)."""
        skipped: list[str] = []
        picks: list[tuple[Any, dict, list]] = []
        keys: set[str] = set()
        while attempt.fires.get(policy.name, 0) < policy.fire_limit and len(picks) < self._race_width():
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
            why_not = self._why_not(attempt, action, keys, ladder[1] if ladder else None)
            if isinstance(why_not, str):
                skipped.append(f"{action.describe()}: {why_not}")
                continue
            keys.add(config_key(why_not[0]))
            picks.append((action, *why_not))
        if picks:
            return self._fire(attempt, policy, finding, picks, skipped, at_end)
        if skipped:
            self.journal("policy_exhausted", attempt=attempt.id, policy=policy.name, skipped=skipped)
        return None

    def _why_not(self, attempt: Attempt, action: Any, racing: set[str],
                 base: dict | None = None) -> str | tuple[dict, list]:
        """The patched config and its changes, or why this candidate cannot be launched."""
        try:
            config, changes = action.apply(base if base is not None else attempt.config, self.plan.aliases)
        except NotApplicable as why:
            return str(why)
        if base is not None:  # a ladder step: its patch is still relative to the parent
            changes = [Change(c.path, get_path(attempt.config, c.path, None), c.new) for c in changes]
        key = config_key(config)
        twin = self.launched.get(key)
        if twin is not None or key in racing:
            return f"that config already ran as {twin}" if twin else "another racer has that config"
        invalid = self.check_config(config) if self.check_config else None
        return f"the patched config is invalid: {invalid}" if invalid else (config, changes)

    def _race_width(self) -> int:
        """How many candidates to launch at once: ``parallel``, within what the budget has left."""
        left = self.plan.max_attempts - self._launched_count() - len(self.queue)
        return max(1, min(self.plan.parallel, left))

    def _fire(self, attempt, policy, finding, picks, skipped, at_end) -> Decision:
        attempt.fires[policy.name] = attempt.fires.get(policy.name, 0) + 1
        held = "at the end of the attempt" if at_end else f"held {attempt.streaks[policy.name]} report(s)"
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
        reason = f"{finding.symptom} {held} ({finding.reason}); policy '{policy.name}': {then}"
        decision = Decision(policy.name, finding, first["action"], first["start"], picks[0][2], first["child"],
                            reason, skipped, race=race if len(race) > 1 else [])
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
            cooldown={policy.name: policy.cooldown_steps} if policy.cooldown_steps else {},
        )
        if warm:
            # A warm restart continues its parent's curve: same baseline, same epochs.
            resume = max(i for i, p in attempt.checkpoints.items() if p == warm)
            child.history.extend((i, m) for i, m in attempt.history.rows().items() if i <= resume)
        self._enqueue(child)
        entry.update(child=child.id, start=child.start)
        return entry

    def _halt(self, attempt: Attempt, policy: Policy, finding: Finding, action: Any) -> Decision:
        """A symptom no config can fix (a training-loop bug): stop the run and say what to check."""
        attempt.fires[policy.name] = attempt.fires.get(policy.name, 0) + 1
        advice = getattr(SYMPTOMS.get(finding.symptom), "advice", "") or "check the training code"
        reason = (f"{finding.symptom} ({finding.reason}); policy '{policy.name}': not fixable by "
                  f"configuration, run stopped without relaunching. {advice}")
        decision = Decision(policy.name, finding, action.describe(), "none", [], None, reason)
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
        gains = {i: _gain(first, series.get(i), self.plan.mode) for i in attempt.checkpoints if i < onset}
        healthy = [(g, i) for i, g in gains.items() if g is not None and g >= self.plan.min_drop]
        # The best of them: a divergence often starts a report or two before it is flagged.
        return attempt.checkpoints[max(healthy)[1]] if healthy else None

    # -- outcomes ----------------------------------------------------------------------------
    def improvement(self, attempt: Attempt) -> float | None:
        """Relative improvement of the watched metric, first report -> last report."""
        values = [v for _, v in attempt.history.series(self.plan.metric)]
        return _gain(values[0], values[-1], self.plan.mode) if len(values) >= 2 else None

    def _healthy(self, attempt: Attempt) -> bool:
        gain = self.improvement(attempt)
        sick = [s for s in attempt.active if not getattr(SYMPTOMS.get(s), "advisory", False)]
        if gain is None or gain < self.plan.min_drop or sick:
            return False
        self._end(attempt, Outcome.HEALTHY, self._progress_text(attempt))
        if self.winner is None:
            self.winner = attempt.id
        return True

    def _progress_text(self, attempt: Attempt) -> str:
        gain = self.improvement(attempt)
        verb = "fell" if self.plan.mode == "min" else "rose"
        text = (f"{self.plan.metric} {verb} {gain:.1%} from its first report (needed {self.plan.min_drop:.0%})"
                if gain is not None else f"{self.plan.metric} has no finite first and last value")
        return text + (f"; still active: {', '.join(attempt.active)}" if attempt.active else "")

    def _end(self, attempt: Attempt, outcome: str, reason: str, stop: bool = False) -> Verdict:
        attempt.outcome, attempt.reason = outcome, reason
        self.journal("attempt_finished", attempt=attempt.id, outcome=outcome, reason=reason,
                     improvement=self.improvement(attempt), answers=attempt.answers,
                     policy=attempt.policy, action=attempt.action)
        return Verdict(stop, reason)

    def _enqueue(self, attempt: Attempt) -> None:
        self.attempts[attempt.id] = attempt
        self.queue.append(attempt.id)
        self.launched[config_key(attempt.config)] = attempt.id

    def _launched_count(self) -> int:
        return sum(1 for a in self.attempts.values() if a.trial_id is not None)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher (and this engine) into tuner.pkl: terminal views stay out.
        state = dict(self.__dict__)
        state["observer"] = None
        return state

    # -- resumable state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"attempts": [a.to_dict() for a in self.attempts.values()], "queue": list(self.queue),
                "by_trial": dict(self.by_trial), "winner": self.winner, "halted": self.halted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.attempts = {d["id"]: Attempt.from_dict(d) for d in state["attempts"]}
        self.queue, self.by_trial, self.winner = list(state["queue"]), dict(state["by_trial"]), state["winner"]
        self.halted = state.get("halted")
        self.launched = {config_key(a.config): a.id for a in self.attempts.values()}


def _gain(first: float | None, last: float | None, mode: str) -> float | None:
    """Relative improvement from ``first`` to ``last`` (a fall for "min", a rise for "max")."""
    if first is None or last is None or not (math.isfinite(first) and math.isfinite(last)):
        return None
    return ((first - last) if mode == "min" else (last - first)) / (abs(first) or 1.0)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, float) else f"{value:g}"
    return text if len(text) <= 60 else text[:57] + "..."
