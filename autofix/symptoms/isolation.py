"""Symptoms of the isolation ladder: a failure nothing explains, and its answer about the model.

``unexplained_failure`` is found by the engine, not read off one attempt's reports: it needs the
lineage (which symptoms earlier remedies answered). :func:`unexplained` is the pure rule;
the engine adds its finding beside the detectors' (:mod:`autofix.rules.ladder`). ``baseline_learns`` is
the ladder's conclusion that the model is at fault (:mod:`autofix.rules.isolation`), handed to the model
policies as a finding with the baselines' numbers. Neither reads a report, so :meth:`check` finds
nothing on its own.
"""

from __future__ import annotations

from autofix.judge.history import History
from autofix.rules.isolation import EVIDENCE
from autofix.symptoms.base import Detector, Finding

__all__ = ["COLLAPSE_MAJORITY", "GENERIC", "BaselineLearns", "UnexplainedFailure", "unexplained"]

GENERIC = ("chance_level", "class_collapse", "plateau")
"""Findings that say *that* a run does not learn, never *why*: alone they explain nothing (a
collapse onto one class is generic only without a majority class: :func:`unexplained`).
``slow_progress`` is not one: its loss did fall, steadily, so the training pipeline works and the
learning-rate policies that answer it (policies/progress.yaml) are the remedy in question."""


def unexplained(active: list[tuple[str, dict[str, float]]],
                answered: list[str | None]) -> tuple[str, dict[str, float]] | None:
    """Why a failing attempt is unexplained, with evidence; None when a symptom names a cause.

    ``active``: the attempt's active findings as ``(symptom, evidence)``; ``answered``: the symptom
    each remedy of its lineage answered, newest first (the attempt's own patch, its parent's, ...).
    Unexplained when only :data:`GENERIC` findings are active, or when an active symptom survived
    the two latest remedies that answered it. A collapse onto one class is generic only where no
    class holds more than half of the labels (:data:`COLLAPSE_MAJORITY`): with a majority class,
    the collapse is onto it and reweighting the classes is a cause-named remedy. (The engine also
    asks whether the config names a suspect: :meth:`autofix.rules.ladder.Ladder._named_by_config`.)
    """
    names = [s for s, _ in active if s not in (UnexplainedFailure.name, BaselineLearns.name)]
    if not names:
        return None
    survived = [s for s in names if answered[:2] == [s, s]]
    if survived:
        return (f"{survived[0]} survived two remedies aimed at it", {"remedies": 2.0, "active": float(len(names))})
    if all(_generic(s, e) for s, e in active if s in names):
        return (f"only generic findings ({', '.join(names)}): no symptom names a cause",
                {"remedies": float(sum(1 for s in answered if s is not None)), "active": float(len(names))})
    return None


COLLAPSE_MAJORITY = 0.5  # a largest class above half of the labels makes a collapse onto it a cause


def _generic(symptom: str, evidence: dict[str, float]) -> bool:
    if symptom != "class_collapse":
        return symptom in GENERIC
    share = evidence.get("label_frac_max")
    return share is not None and share <= COLLAPSE_MAJORITY


class UnexplainedFailure(Detector):
    """The attempt is not healthy and no symptom names a cause (:func:`unexplained`).

    **Soft**: it acts after the run's patience, only while the attempt is unhealthy, or at the
    attempt's end; never on a healthy run. Its shipped policy runs the isolation ladder, the
    experiments of Karpathy's "A Recipe for Training Neural Networks" (2019: overfit one batch,
    input-independent baselines). No parameters; :data:`GENERIC` and :data:`COLLAPSE_MAJORITY`
    are our choices, documented where they are defined."""

    name = "unexplained_failure"
    evidence_keys = ("active", "remedies")
    summary = "Unhealthy, and no symptom names a cause (or one survived two remedies)."

    def check(self, history: History) -> Finding | None:
        return None  # found by the engine from the lineage (autofix.rules.ladder)


class BaselineLearns(Detector):
    """A simple model learns the data the user's model does not, or fits the one batch it cannot:
    the model is at fault (the isolation ladder's ``simple_model`` or ``overfit_batch`` rung, after
    Karpathy's "input-independent baseline" and "overfit one batch"); answered by model remedies.
    Its thresholds are the rungs' (:mod:`autofix.rules.isolation`)."""

    name = "baseline_learns"
    evidence_keys = EVIDENCE  # the simple-model rung's numbers (autofix.rules.isolation)
    summary = "A simple model learns this data; the user's model does not."

    def check(self, history: History) -> Finding | None:
        return None  # found by the isolation ladder (autofix.rules.ladder)
