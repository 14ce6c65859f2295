"""The rule engine: reports in, decisions out. Pure Python, no torch, no ray.

The engine owns a run's lineage: it hands queued attempts to Tune, takes every report, runs
the detectors, advances the policies (:mod:`autofix.rules.decisions`: the Prometheus-style state
machine, counted in optimizer steps, with the patience soft symptoms wait for), and settles
each healthy fix against the user's run left alone at the same step (:mod:`autofix.rules.settle`).
Every policy has a bounded number of fires, no config is launched twice, and the run never
launches more than ``max_attempts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autofix.judge.history import STEP_REPORT, as_float
from autofix.judge.judging import Inputs
from autofix.judge.verdict import Judge, health
from autofix.rules.control import CONTINUE, Control, Verdict
from autofix.rules.decisions import Decisions, gain
from autofix.rules.detection import Detection
from autofix.rules.intrial import in_trial_data
from autofix.rules.ladder import Ladder
from autofix.rules.lineage import CONTROL, ISOLATION, Attempt, Outcome, config_key
from autofix.rules.policy import PolicySet
from autofix.symptoms import SYMPTOMS, Detector

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
    soft_min_steps: int = 100  # patience of soft symptoms: at least this many optimizer steps ...
    soft_share: float = 0.5  # ... and this share of the planned steps (autofix.spec.schema.PatienceSpec)
    accuracy_metric: str = "val_accuracy"  # judged against the best constant predictor
    f1_metric: str = "val_macro_f1"
    inputs: Inputs = field(default_factory=Inputs)  # a custom trainable's declared judgement inputs
    managed: bool = True  # the managed harness runs the trials: the isolation ladder can run (autofix.rules.ladder)
    guard: dict[str, Any] | None = None  # a custom trainable's spike guard settings (spec spike_guard)

    @property
    def judge(self) -> Judge:
        """What health is judged on (:mod:`autofix.judge.verdict`)."""
        return Judge(self.loss_metric, self.min_drop, self.accuracy_metric, self.f1_metric)


class Engine(Detection, Control, Ladder, Decisions):
    """Owns the lineage of a run; the controller feeds it Tune events and obeys its verdicts."""

    def __init__(self, plan: Plan, detectors: list[Detector], policies: PolicySet,
                 journal: Journal | None = None, check_config: Callable[[dict], str | None] | None = None,
                 ranker: Callable[[str, str, list], list] | None = None) -> None:
        self.plan = plan
        self.check_config = check_config
        self.ranker = ranker
        self.observer: Callable[[Attempt], None] | None = None  # live view; never pickled
        self.detectors = detectors
        self.blind: list[str] | None = None  # detectors a0's reports do not feed, once past its epoch 1
        self.policies = policies
        self.journal = journal or (lambda event, **data: None)
        self.attempts: dict[str, Attempt] = {}
        self.queue: list[str] = []
        self.by_trial: dict[str, str] = {}
        self.launched: dict[str, str] = {}  # config key -> attempt id
        self.winner: str | None = None
        self.halted: str | None = None  # set when a policy stops the whole run
        self.deadline: float | None = None  # epoch seconds; set by a resumed run (what is left of wall_clock_s)
        self.judgement: dict[str, list[str]] | None = None  # how the run is judged, what it lacks (a0's reports)
        self._enqueue(Attempt(id="a0", parent=None, config=plan.config))

    @property
    def judge(self) -> Judge:
        return self.plan.judge

    @property
    def in_trial(self) -> dict[str, Any]:
        """The run's in-trial policies and the parameters of the symptoms they answer, as a trial
        with its spike guard on receives them (:mod:`autofix.rules.intrial`)."""
        params = {d.name: d.params.model_dump(exclude={"metric"}) for d in self.detectors if d.in_trial}
        return in_trial_data(self.policies, params, getattr(self.plan, "guard", None))  # a Plan pickled before it: none

    # -- Tune events -------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Attempt | None:
        """The next queued attempt, bound to ``trial_id``; None when none is ready."""
        if self.done or not self.queue or self._launched_count() >= self.plan.max_attempts:
            return None
        attempt = self.attempts[self.queue.pop(0)]
        attempt.trial_id, attempt.outcome = trial_id, Outcome.RUNNING
        self.by_trial[trial_id] = attempt.id
        self.journal("attempt_launched", attempt=attempt.id, parent=attempt.parent, trial_id=trial_id,
                     start=attempt.start, patch=[c.to_dict() for c in attempt.patch], role=attempt.role)
        return attempt

    def observe(self, trial_id: str, iteration: int, metrics: dict[str, Any],
                checkpoint: str | None = None) -> Verdict:
        """Take one report; say whether the trial must stop."""
        attempt = self.attempts[self.by_trial[trial_id]]
        if attempt.outcome != Outcome.RUNNING:
            return Verdict(True, attempt.reason)
        if attempt.role == ISOLATION:  # a rung of the isolation ladder: one report, judged by autofix.rules.ladder
            self._rung_report(attempt, iteration, metrics)
            return Verdict(True, attempt.reason)
        if checkpoint and checkpoint not in attempt.checkpoints.values():
            # Tune shows the scheduler the checkpoint of the *previous* report.
            previous = attempt.history.last_iteration
            if previous is not None:
                attempt.checkpoints[previous] = checkpoint
        if metrics.get(STEP_REPORT):  # between epochs: shown in steps, never judged (autofix.harness.stepreports)
            self._step_report(attempt, metrics)
            return CONTINUE
        judged = attempt.history.last_iteration
        metrics = dict(self.plan.inputs.complete(metrics, self.plan.loss_metric, first=judged is None))
        bad = self._check_stream(metrics)
        if bad:
            return self._end(attempt, Outcome.ERROR, bad, stop=True)
        attempt.history.record(iteration, metrics)
        if judged is not None and iteration <= judged:
            # A restored trial replays reports after its checkpoint: already judged once.
            return CONTINUE
        attempt.reports += 1
        if self.winner is not None:
            return self._end(attempt, Outcome.STOPPED, f"the run is settled: keep {self.winner}", stop=True)
        if self.halted is not None:
            return self._end(attempt, Outcome.STOPPED, self.halted, stop=True)
        findings = self._detect(attempt)
        self._say_inputs(attempt)
        self._journal_rewinds(attempt)
        if attempt.role == CONTROL:
            verdict = self._measure(attempt, findings)
            self._settle()
            if self.observer is not None:
                self.observer(attempt)
            return verdict
        decision = self._decide(attempt, findings, at_end=False)
        if self.observer is not None:
            self.observer(attempt)
        if decision is not None and decision.kept_running:
            attempt.role = CONTROL  # from now on the run left alone, measured for the comparison
            return CONTINUE
        if decision is not None:
            attempt.stopped_on = decision.severity
            return self._end(attempt, Outcome.SICK, decision.reason, stop=True)
        epoch = as_float(metrics.get("epoch", iteration))
        if self.plan.max_epochs is not None and epoch is not None and epoch >= self.plan.max_epochs:
            return Verdict(True, f"reached max_epochs={self.plan.max_epochs}")
        return CONTINUE

    def complete(self, trial_id: str, error: str | None = None, log: str | None = None) -> None:
        """The trial ended (ran out of epochs, was stopped, or raised; ``log``: where the
        error's full traceback is)."""
        attempt = self.attempts.get(self.by_trial.get(trial_id, ""))
        if attempt is None or attempt.outcome != Outcome.RUNNING:
            return
        if attempt.role == ISOLATION:
            self._rung_failed(attempt, error)
            return
        if error is not None:
            attempt.error = error
            if not self._code_error(attempt, error):
                where = f"; full traceback: {log}" if log else ""
                self._end(attempt, Outcome.ERROR,
                          f"the trial raised: {error.strip().splitlines()[-1] if error.strip() else error}{where}")
            self._settle()
            return
        verdict = health(attempt.history, self.judge)
        if verdict.ok and not self._blocking(attempt):
            self._end(attempt, Outcome.HEALTHY, verdict.reason)
            self._settle()
            return
        if attempt.role == CONTROL:  # measured, never acted on
            self._end(attempt, Outcome.UNHEALTHY, self._progress_text(attempt))
            self._settle()
            return
        findings = [f for f in attempt.findings if f.symptom in attempt.active]
        if all(SYMPTOMS[f.symptom].advisory for f in findings if f.symptom in SYMPTOMS):
            findings += self._ended(attempt)  # unhealthy with no symptom: the end is the finding
        findings += self._unexplained(attempt, [f for f in findings if f.symptom != "unexplained_failure"])
        decision = self._decide(attempt, findings, at_end=True)
        if decision is not None:
            attempt.stopped_on = decision.severity
            self._end(attempt, Outcome.SICK, decision.reason)
        else:
            self._end(attempt, Outcome.UNHEALTHY, self._progress_text(attempt))
        self._settle()

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

    # -- outcomes ----------------------------------------------------------------------------
    def improvement(self, attempt: Attempt) -> float | None:
        """Relative improvement of the watched metric, first report -> last report."""
        values = [v for _, v in attempt.history.series(self.plan.metric)]
        return gain(values[0], values[-1], self.plan.mode) if len(values) >= 2 else None

    def _progress_text(self, attempt: Attempt) -> str:
        text = health(attempt.history, self.judge).reason
        return text + (f"; still active: {', '.join(attempt.active)}" if attempt.active else "")

    def _end(self, attempt: Attempt, outcome: str, reason: str, stop: bool = False) -> Verdict:
        if attempt.id == "a0" and self.judgement is None and attempt.history.last_iteration is not None:
            self._judged(attempt)  # a0 ended before its first report of training
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
        # Isolation rungs are experiments, not attempts: they do not count against max_attempts.
        return sum(1 for a in self.attempts.values() if a.trial_id is not None and a.role != ISOLATION)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher (and this engine) into tuner.pkl: terminal views stay out.
        state = dict(self.__dict__)
        state["observer"] = None
        return state

    # -- resumable state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"attempts": [a.to_dict() for a in self.attempts.values()], "queue": list(self.queue),
                "by_trial": dict(self.by_trial), "winner": self.winner, "halted": self.halted,
                "judgement": self.judgement, "blind": self.blind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.attempts = {d["id"]: Attempt.from_dict(d) for d in state["attempts"]}
        self.queue, self.by_trial, self.winner = list(state["queue"]), dict(state["by_trial"]), state["winner"]
        self.halted = state.get("halted")
        self.judgement = state.get("judgement")
        self.blind = state.get("blind")
        self.launched = {config_key(a.config): a.id for a in self.attempts.values()}
