"""Symptoms of the model's construction, seen before it trains: non-finite at initialisation, and
outputs the loss cannot read.

The managed harness reports, at epoch 0 (an evaluation before any step), which unit of the
forward path first outputs a non-finite value (``nonfinite_output_index``,
``nonfinite_output/<name>``, ``nonfinite_module/<class>``, ``nonfinite_output_activation``), and
on every report what the validation outputs look like next to what the loss takes
(``loss_expects/<logits|probabilities|log_probs>``, ``output_min``, ``output_max``,
``output_sum_dev``, ``output_zero_rows``, ``output_lse_dev``, ``output_classes``). A custom
trainable may report none of them; these detectors then read only the loss.
"""

from __future__ import annotations

import math

from pydantic import Field

from autofix.judge.history import STEP, History
from autofix.symptoms.base import HARD, Detector, Finding, FixedParams, Params as DetectorParams, ProbeDetector

__all__ = ["NonFiniteAtInit", "OutputLossMismatch", "at_init", "nonfinite_since_init"]


def at_init(row: dict[str, float]) -> bool:
    """The report was made before any optimizer step: ``step`` 0 (else ``epoch`` 0)."""
    key = STEP if STEP in row else "epoch" if "epoch" in row else None
    return key is not None and row[key] == 0


def nonfinite_since_init(history: History, metric: str) -> bool:
    """The first report was made at initialisation with a non-finite ``metric``, and every
    report since carries a non-finite value too: nothing the optimizer did ever made it finite
    (the harness takes no step on a non-finite loss)."""
    iterations = history.iterations
    if not iterations or not at_init(history.rows_view(iterations[0])):
        return False
    values = [history.rows_view(i).get(metric) for i in iterations]
    return all(v is not None and not math.isfinite(v) for v in values)


class NonFiniteAtInit(Detector):
    """The untrained model already computes NaN/Inf: a bug of construction, not of the step size.

    Fires on a report made before any optimizer step (``step`` 0) whose loss (the run's loss
    metric, ``train_loss`` or ``init_loss``) is not finite, or where a unit of the forward path
    outputs a non-finite value (``nonfinite_output_index``, reported by the harness's probe); and
    on every later report while the loss has stayed non-finite since then. The reason names the
    first unit whose output is non-finite, and whether it is an activation (an ``exp`` overflows
    in float32 above ~88), so the policy can replace that kind of activation, re-initialise, or
    normalise the inputs. No learning rate changes a forward pass before the first step.
    Sources: Keras' ``TerminateOnNaN`` stops on the first NaN loss, and its ``exponential``
    activation overflows float32 above ~88; the "verify the loss at init" check (Karpathy, "A
    Recipe for Training Neural Networks", 2019) judges the untrained model before any step.

    **Hard**: a model that is NaN before it trains never becomes finite by training.
    """

    name = "nonfinite_at_init"
    evidence_keys = ("activation", "layer_index", "value")
    severity = HARD
    summary = "The untrained model's loss or activations are NaN/Inf before any step."

    class Params(DetectorParams):
        pass

    def check(self, history: History) -> Finding | None:
        row = history.last_row()
        if not row:
            return None
        if not at_init(row):
            if not nonfinite_since_init(history, self.metric):
                return None
            return self.finding(history, f"{self.metric} has been {row.get(self.metric)} on every report since "
                                "the untrained model's: no step has made it finite",
                                value=row.get(self.metric, math.nan))
        losses = {k: row[k] for k in (self.metric, "train_loss", "init_loss") if k in row}
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        index = row.get("nonfinite_output_index")
        if not bad and index is None:
            return None
        layer = ProbeDetector.worst(history, "nonfinite_output/")
        module = ProbeDetector.worst(history, "nonfinite_module/")
        is_act = row.get("nonfinite_output_activation")
        what = ", ".join(f"{k} is {v}" for k, v in bad.items()) or "the loss is finite"
        where = (f"; the first non-finite output is '{layer}' ({module}"
                 f"{', an activation' if is_act == 1.0 else ''}, {row.get(f'nonfinite_output/{layer}', math.nan):.0%} "
                 f"of its values) at position {index:.0f} of the forward path") if layer is not None else ""
        return self.finding(
            history, f"before any training step {what}{where}: no learning rate changes a forward pass",
            value=next(iter(bad.values()), math.nan), layer_index=-1.0 if index is None else index,
            activation=is_act if is_act is not None else 0.0,
        )


class OutputLossMismatch(ProbeDetector):
    """The model's outputs are not what its loss takes (``loss_expects/<kind>``).

    * a loss on **log-probabilities** (nll) fed outputs above 0 or rows whose log-sum-exp is not
      0 (a ReLU or linear output layer);
    * a loss on **probabilities** (Keras' categorical cross-entropy) fed negative outputs (a
      linear layer: renormalising them means nothing), rows that sum to 0 (an all-zero ReLU row:
      0/0 = NaN), or, with more than two classes, rows that do not sum to 1 (sigmoids or ReLUs
      renormalised by the loss);
    * a loss on **logits** (cross_entropy, bce_with_logits) fed probabilities: every output in
      [0, 1] and every row summing to 1 (a softmax before a loss that applies its own).

    The evidence's ``broken_loss`` is 1 when the loss is undefined or unbounded on these outputs
    (0/0, renormalised negatives, an NLL of positive outputs), 0 when it still trains.
    ``tolerance`` (1e-3, our choice) bounds |row sum - 1| and |log-sum-exp| of a matching output:
    float32 softmax rows are within ~1e-6 of 1. A custom loss without ``loss.expects`` reports no
    ``loss_expects/*`` key: nothing is checked (the run says so at its start).

    **Soft**: three sigmoids under a renormalising loss still train, slowly; the mismatch acts
    when the run is not healthy after its patience, or at once beside a hard symptom it explains
    (the NaN of an all-zero ReLU output).
    """

    name = "output_loss_mismatch"
    inputs = ("loss_expects/",)
    evidence_keys = ("broken_loss", "classes", "lse_dev", "max", "min", "sum_dev", "zero_rows")
    summary = "The model's outputs are not in the domain the loss expects."

    class Params(FixedParams):
        tolerance: float = Field(default=1e-3, gt=0, lt=1)

    def check(self, history: History) -> Finding | None:
        row = history.last_row()
        expects = next((k.split("/", 1)[1] for k, v in row.items() if k.startswith("loss_expects/") and v == 1.0), None)
        keys = ("output_min", "output_max", "output_sum_dev", "output_zero_rows", "output_lse_dev", "output_classes")
        stats = {k: row.get(k) for k in keys}
        if expects is None or any(v is None or not math.isfinite(v) for v in stats.values()):
            return None
        found = _mismatch(expects, stats, self.params.tolerance)
        if found is None:
            return None
        reason, broken = found
        return self.found(history, "output_min", f"{reason}: the loss takes {expects.replace('_', '-')}",
                          broken_loss=float(broken), **{k.removeprefix("output_"): v for k, v in stats.items()})


def _mismatch(expects: str, s: dict, tol: float) -> tuple[str, bool] | None:
    """(why the outputs do not fit, whether the loss is undefined or unbounded on them: NaN from
    0/0, renormalised negatives, an NLL that falls without end) or None when they fit."""
    classes = int(s["output_classes"])
    if expects == "log_probs" and (s["output_max"] > tol or s["output_lse_dev"] > tol):
        return (f"outputs reach {s['output_max']:.3g} and rows' log-sum-exp is off 0 by up to "
                f"{s['output_lse_dev']:.3g}: they are not log-probabilities"), s["output_max"] > tol
    if expects == "probabilities":
        if s["output_min"] < 0:
            return f"outputs go down to {s['output_min']:.3g}: negative values are no probabilities", True
        if s["output_zero_rows"] > 0:
            return f"{s['output_zero_rows']:.0%} of the output rows sum to 0, which the loss divides by (NaN)", True
        if classes > 2 and s["output_sum_dev"] > tol:
            return (f"rows of {classes} outputs sum to 1 +- {s['output_sum_dev']:.3g}: independent sigmoids or "
                    "ReLUs, renormalised by the loss"), False
    if expects == "logits" and s["output_min"] >= 0 and s["output_max"] <= 1 and (
            classes == 1 or s["output_sum_dev"] <= tol):
        return "every output lies in [0, 1]" + (" and every row sums to 1" if classes > 1 else "") + \
            ": probabilities, which the loss squashes again", False
    return None
