"""What a run is judged on, declared up front, and what a trainable that reports too little loses.

The verdict (:mod:`autofix.judge.verdict`) and the detectors read fixed names: the loss, accuracy,
macro-F1 and balanced accuracy (``val_accuracy``, ...), the chance figures of the best
constant predictor, ``init_loss``/``chance_loss``, ``step``/``planned_steps`` and the probe's
streams. The managed harness reports them all. A custom trainable reports them through
``autofix.judge_inputs`` (scores and chance figures from its labels) and ``Probe``, or declares
them in the spec's ``judge:`` section (:class:`Inputs`): which of its metrics plays which role,
and the number of classes. :meth:`Inputs.complete` puts each report into those names as it
arrives; :func:`gaps` says, at the first report of training, one line per missing input, what
autofix cannot judge without it; :func:`judged_by` says how the run was judged (the report
keeps both). Pure Python: no torch, no ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autofix.judge.history import PLANNED, STEP, History
from autofix.judge.verdict import BALANCED_ACCURACY, CHANCE_ACCURACY, CHANCE_BALANCED, CHANCE_F1, LABEL_ENTROPY, Judge
from autofix.spec.catalogue import METRICS, metric_entry

__all__ = ["ROLES", "Gap", "Inputs", "blind", "gaps", "judged_by"]

ROLES = {"accuracy": "val_accuracy", "macro_f1": "val_macro_f1", "balanced_accuracy": BALANCED_ACCURACY}
"""The score roles a spec's ``judge.metrics`` maps, and the names autofix reads them under."""
INIT_LOSS, CHANCE_LOSS = "init_loss", "chance_loss"


@dataclass(frozen=True)
class Inputs:
    """The spec's ``judge:`` section as plain values (:class:`autofix.spec.schema.JudgeSpec`)."""

    metrics: dict[str, str] = field(default_factory=dict)  # role -> the trainable's metric name
    num_classes: int | None = None
    cross_entropy: bool = True  # the loss metric is a cross-entropy: ln(classes) is its chance value
    chance_accuracy: float | None = None  # the majority class's share of the validation labels
    chance_macro_f1: float | None = None

    def complete(self, metrics: Mapping[str, Any], loss_metric: str, first: bool) -> Mapping[str, Any]:
        """One report as autofix reads it: a declared role copied under autofix's name, the
        spec's chance figures, and ``init_loss`` (the loss) on an attempt's first report when
        it stands at step 0 (the untrained model). What the trainable reported always wins."""
        if not first and self == _NOTHING:  # the managed harness: every report, unchanged (hot path)
            return metrics
        out = dict(metrics)
        for role, name in self.metrics.items():
            if name in metrics and ROLES[role] not in metrics:
                out[ROLES[role]] = metrics[name]
        for key, value in self._declared().items():
            out.setdefault(key, value)
        loss = metrics.get(loss_metric)
        if first and INIT_LOSS not in metrics and metrics.get(STEP) == 0 and loss is not None and _finite(loss):
            out[INIT_LOSS] = float(loss)
        return out

    def _declared(self) -> dict[str, float]:
        """Chance figures from the spec: 1/K balanced accuracy, ln K for a cross-entropy, and
        macro-F1 <= 1/K (a constant predictor scores 2p/(1+p)/K <= 1/K) unless given exactly."""
        out: dict[str, float] = {}
        k = self.num_classes
        if k:
            out[CHANCE_BALANCED] = 1.0 / k
            out[CHANCE_F1] = 1.0 / k
            if self.cross_entropy:
                out[CHANCE_LOSS] = math.log(k)
        if self.chance_macro_f1 is not None:
            out[CHANCE_F1] = self.chance_macro_f1
        if self.chance_accuracy is not None:
            out[CHANCE_ACCURACY] = self.chance_accuracy
        return out


_NOTHING = Inputs()


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Gap:
    """One judgement input a trainable did not report: what autofix loses, and how to add it."""

    name: str
    loses: str
    fix: str
    trained: bool = False  # only a report after training has started can carry it

    def line(self) -> str:
        return f"{self.loses} - {self.fix}"


def _has(*names: str) -> Callable[[dict], bool]:
    return lambda row: any(n in row for n in names)


def _prefix(*prefixes: str) -> Callable[[dict], bool]:
    return lambda row: any(k.startswith(prefixes) for k in row)


def _chance_known(row: dict) -> bool:
    """A reported score has its chance figure (or the loss its label entropy); no scores: the
    ``scores`` gap says it."""
    pairs = (("val_accuracy", CHANCE_ACCURACY), ("val_macro_f1", CHANCE_F1))
    return LABEL_ENTROPY in row or not any(s in row for s, _ in pairs) or any(s in row and c in row for s, c in pairs)


_GAPS: list[tuple[Callable[[dict], bool], Gap]] = [
    (lambda row: STEP in row and PLANNED in row,
     Gap("position", "no step/planned_steps: each report counts as one optimizer step, so soft symptoms wait "
                     "100 reports and fixes are compared report by report",
         "pass step= and planned_steps= to autofix.report")),
    (_has("val_accuracy", "val_macro_f1"),
     Gap("scores", "no accuracy or macro-F1: health is judged on the loss alone, so a model at chance whose "
                   "loss fell is called healthy",
         "report autofix.judge_inputs(...), or name your metrics under judge.metrics")),
    (_chance_known,
     Gap("chance", "no chance figures for the scores reported: they are not compared with the best constant "
                   "predictor",
         "report autofix.judge_inputs(..., train_labels=...), or set judge.num_classes (macro-F1) or "
         "judge.chance_accuracy")),
    (_has(INIT_LOSS),
     Gap("init_loss", "no loss at initialization: a badly scaled init (loss far above ln(classes)) is not "
                      "detectable", "report the untrained model first, with step=0")),
    (_has(CHANCE_LOSS, LABEL_ENTROPY),
     Gap("classes", "no number of classes: the loss is not compared with ln(classes) at init or later",
         "report autofix.judge_inputs(...), or set judge.num_classes")),
    (_prefix("grad_norm"),
     Gap("gradients", "no gradient metrics: vanishing/exploding/dying not detectable",
         "add `Probe(model, optimizer)` and report probe.epoch_metrics()", trained=True)),
    (_has("stale_grad_checks", "optimizer_steps", "update_ratio_global"),
     Gap("updates", "no update metrics: missing optimizer.step()/zero_grad() and detached losses not "
                    "detectable", "give `Probe` the optimizer: Probe(model, optimizer)", trained=True)),
    (_has("label_frac_max"),
     Gap("labels", "no label distribution: label_imbalance not detectable",
         "report autofix.judge_inputs(..., train_labels=...)")),
    (_has("pred_frac_max"),
     Gap("predictions", "no prediction shares: class_collapse not detectable", "report autofix.judge_inputs(...)")),
    (_has("train_loss"),
     Gap("train_loss", "no train_loss: overfitting not detectable", "report train_loss", trained=True)),
]


def gaps(history: History) -> list[Gap]:
    """The judgement inputs an attempt's reports lack (all its reports so far, as completed);
    before any report of training (an attempt stopped at step 0) those only training brings
    are not judged missing."""
    seen: dict[str, float] = {}
    for iteration in history.iterations:
        seen.update(history.rows_view(iteration))
    trained = any(history.position(i) > 0 for i in history.iterations)
    return [gap for present, gap in _GAPS if not present(seen) and (trained or not gap.trained)]


def judged_by(history: History, judge: Judge, metric: str, mode: str) -> list[str]:
    """How an attempt is judged, in words, from what it reports (the report's ``judged_by``)."""
    row = history.last_row()
    lines = [f"healthy: {judge.loss_metric} falls >= {judge.min_drop:.0%} from its first report"]
    scores = [n for n in (judge.f1_metric, judge.accuracy_metric) if n in row]
    chance = [n for n in (CHANCE_F1, CHANCE_ACCURACY, LABEL_ENTROPY) if n in row]
    if scores and chance:
        lines.append(f"and is not at chance: {', '.join(scores)} against the best constant predictor "
                     f"({', '.join(chance)})")
    elif chance:
        lines.append(f"and is not at chance: {judge.loss_metric} against {', '.join(chance)}")
    else:
        lines.append("not compared with chance (no chance figures)")
    lines.append(f"fixes: {metric} ({mode}) against the run left alone at the same "
                 + ("optimizer step" if STEP in row else "report (no step reported)"))
    return lines


_BLIND_HINT = {
    "probes": "the managed harness reports it with training.probes on; from your own loop, report "
              "Probe(model, optimizer).epoch_metrics() and autofix.judge_inputs(...), or the metric itself",
    "harness": "report it from your loop (autofix.report), or name yours under judge.metrics",
}


def blind(history: History, detectors: Iterable[Any]) -> list[str]:
    """One line per detector that none of the reports so far feeds (:attr:`Detector.inputs`):
    it can find nothing, and a renamed or missing metric would otherwise pass in silence.
    Detectors whose inputs appear only when something happens (a warning, a non-finite
    output) are never blind."""
    seen: set[str] = set()
    for iteration in history.iterations:
        seen.update(history.rows_view(iteration))
    lines = []
    for detector in detectors:
        entries = [e for k in detector.inputs if (e := METRICS.get(k) or metric_entry(k)) is not None]
        sources = {e.source for e in entries}
        if not sources & set(_BLIND_HINT) or any(_fed(k, seen) for k in detector.inputs):
            continue
        if entries and all(e.only for e in entries) and "probe_age" in seen:
            continue  # the probes ran: the model has no layer of that kind
        names = ", ".join(k + "*" if k.endswith("/") else k for k in detector.inputs)
        hint = _BLIND_HINT["probes" if "probes" in sources else "harness"]
        lines.append(f"{detector.name}: no {names} reported - {hint}")
    return lines


def _fed(name: str, seen: set[str]) -> bool:
    return any(k.startswith(name) for k in seen) if name.endswith("/") else name in seen
