"""Detection over the engine's attempts: each report's metric stream checked, the detectors run,
findings journaled once, and, once per run, how it is judged and which detectors no report
feeds. A mixin of :class:`autofix.rules.engine.Engine` (split out to keep one concept per file).
Pure Python, no torch, no ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autofix.judge.history import PLANNED, STEP, History, as_float
from autofix.judge.judging import blind, gaps, judged_by
from autofix.rules.intrial import in_trial_policies
from autofix.rules.lineage import Attempt, Outcome
from autofix.symptoms import HARD, SYMPTOMS, DetachedLoss, Detector, Finding, NanMetric

if TYPE_CHECKING:
    from autofix.judge.verdict import Judge
    from autofix.rules.control import Verdict
    from autofix.rules.engine import Plan
    from autofix.rules.lineage import Decision
    from autofix.rules.policy import PolicySet

__all__ = ["MAX_STEP_POINTS", "Detection"]

MAX_STEP_POINTS = 1000  # points of an attempt's step series kept for its chart


class Detection:
    """Detection over the engine's attributes (see the module)."""

    if TYPE_CHECKING:  # the engine's attributes and methods this mixin uses (autofix.rules.engine.Engine)
        plan: Plan
        detectors: list[Detector]
        policies: PolicySet
        journal: Callable[..., None]
        attempts: dict[str, Attempt]
        judgement: dict[str, list[str]] | None
        blind: list[str] | None

        @property
        def judge(self) -> Judge: ...
        def _unexplained(self, attempt: Attempt, findings: list[Finding]) -> list[Finding]: ...
        def _decide(self, attempt: Attempt, findings: list[Finding], at_end: bool) -> Decision | None: ...
        def _end(self, attempt: Attempt, outcome: str, reason: str, stop: bool = False) -> Verdict: ...

    def _journal_rewinds(self, attempt: Attempt) -> None:
        """A report whose ``rewinds`` grew: the trial's spike guard rewound in place (the latest
        rewind's steps, the policy and candidate that made it; each report carries the run's
        totals)."""
        if "rewinds" not in attempt.history.last_row():  # no guard: no scan of the history per report
            return
        counts = [v for _, v in attempt.history.series("rewinds")]
        if counts[-1] <= (counts[-2] if len(counts) > 1 else 0):
            return
        row = attempt.history.last_row()
        self.journal("rewind", attempt=attempt.id, rewinds=counts[-1], from_step=row.get("last_rewind_from"),
                     to_step=row.get("last_rewind_to"), rewound_steps=row.get("rewound_steps"),
                     skipped_batches=row.get("skipped_batches"), restored=row.get("last_rewind_restored"),
                     lr=row.get("last_rewind_lr"),
                     clip=row.get("last_rewind_clip"), **self._rewind_policy(row))

    def _step_report(self, attempt: Attempt, metrics: dict[str, Any]) -> None:
        """A report between epochs: a point of the attempt's step series (what report.html plots
        in steps, with the step of the latest rewind so far), journaled; at most
        ``MAX_STEP_POINTS``, every other older one dropped when full."""
        point = [as_float(metrics.get(k)) for k in (STEP, "step_loss_mean", "step_loss_max", "last_rewind_from")]
        if point[0] is None:
            return
        attempt.steps.append(point)
        if len(attempt.steps) > MAX_STEP_POINTS:
            del attempt.steps[:MAX_STEP_POINTS // 2:2]  # thin the older half: the recent steps stay dense
        self.journal("step_report", attempt=attempt.id, step=point[0], loss_mean=point[1], loss_max=point[2],
                     steps=as_float(metrics.get("steps_in_report")), planned=as_float(metrics.get(PLANNED)))

    def _rewind_policy(self, row: dict[str, float]) -> dict[str, str]:
        """The in-trial policy and action a report's ``last_rewind_policy/candidate`` name."""
        policies = in_trial_policies(self.policies)  # in the trial's order
        index, candidate = row.get("last_rewind_policy"), row.get("last_rewind_candidate")
        if index is None or candidate is None or not 0 <= index < len(policies):
            return {}
        policy = policies[int(index)]
        if not 0 <= candidate < len(policy.then):
            return {"policy": policy.name}
        return {"policy": policy.name, "action": policy.then[int(candidate)].describe()}

    def _say_inputs(self, attempt: Attempt) -> None:
        """Once per run, from a0's reports: how it is judged (at its first report of training)
        and which detectors none of its reports feeds (past its epoch 1)."""
        if attempt.id != "a0":
            return
        if self.judgement is None and attempt.history.position(attempt.history.last_iteration) > 0:
            self._judged(attempt)
        if self.blind is None and _past_epoch_one(attempt.history):
            self.blind = blind(attempt.history, self.detectors)
            if self.blind:  # said once: a detector no report feeds finds nothing, silently otherwise
                self.journal("detectors_blind", attempt=attempt.id, lines=self.blind)

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
        nan = self._detector("nan_metric")
        if isinstance(nan, NanMetric) and not any(f.symptom == nan.name for f in findings):
            # A generator: only a report with a NaN score reads the other attempts.
            others = (a.history for a in self.attempts.values() if a is not attempt and a.config != attempt.config)
            found = nan.across(attempt.history, others)
            findings += [found] if found is not None else []
        attempt.active = [f.symptom for f in findings]
        seen = {f.symptom for f in attempt.findings}
        for f in findings:
            if f.symptom not in seen:
                attempt.findings.append(f)
                self.journal("finding", attempt=attempt.id, **f.to_dict())
        return findings + (self._unexplained(attempt, findings) if findings else [])

    def _ended(self, attempt: Attempt) -> list[Finding]:
        """Findings of the attempt's end (slow progress of a run that never reported its plan)."""
        found = [f for d in self.detectors if (f := d.check_ended(attempt.history)) is not None
                 and f.symptom not in attempt.active]
        for f in found:
            attempt.active.append(f.symptom)
            attempt.findings.append(f)
            self.journal("finding", attempt=attempt.id, **f.to_dict())
        return found

    def _detector(self, name: str) -> Detector | None:
        return next((d for d in self.detectors if d.name == name), None)

    def _code_error(self, attempt: Attempt, error: str) -> bool:
        """A trial that raised on a known training-loop bug (``detached_loss``): a finding and its
        policy's decision (stop the run), as for a report; False for any other error."""
        detector = self._detector("detached_loss")
        finding = detector.from_error(attempt.history, error) if isinstance(detector, DetachedLoss) else None
        if finding is None:
            return False
        if attempt.history.last_iteration is None:  # raised before its first report: it stood at step 0
            attempt.history.record(0, {"step": 0.0})
        attempt.findings.append(finding)
        attempt.active = [finding.symptom]
        self.journal("finding", attempt=attempt.id, **finding.to_dict())
        decision = self._decide(attempt, [finding], at_end=True)
        if decision is None:
            return False
        attempt.stopped_on = decision.severity
        self._end(attempt, Outcome.SICK, decision.reason)
        return True

    def _judged(self, attempt: Attempt) -> None:
        """Say once, at a0's first report of training, how the run is judged and, one line per
        missing input, what autofix cannot judge without it (:mod:`autofix.judge.judging`)."""
        missing = [gap.line() for gap in gaps(attempt.history)]
        self.judgement = {"judged_by": judged_by(attempt.history, self.judge, self.plan.metric, self.plan.mode),
                          "missing": missing}
        self.journal("judgement_inputs", attempt=attempt.id, **self.judgement)

    @staticmethod
    def _blocking(attempt: Attempt) -> list[str]:
        """Active symptoms that keep an attempt whose loss fell, off chance, from being healthy:
        the hard ones, and soft ones that act on healthy runs (overfitting); advisory ones never."""
        def blocks(name: str) -> bool:
            cls = SYMPTOMS.get(name)
            if cls is None or cls.advisory:
                return False
            return cls.severity == HARD or cls.acts_when_healthy
        return [name for name in attempt.active if blocks(name)]


def _past_epoch_one(history: History) -> bool:
    """A report after epoch 1 (its ``epoch``; without one, the third report)."""
    epoch = history.last_row().get("epoch")
    return epoch >= 2 if epoch is not None else len(history.iterations) >= 3
