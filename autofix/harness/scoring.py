"""``autofix.judge_inputs``: everything the verdict needs from a classifier, from its labels.

A custom trainable passes its validation labels and outputs (and, once known, its training
labels) and reports the result with its loss; autofix then judges it as it judges the managed
harness (:mod:`autofix.judge.judging`): scores against the best constant predictor, the loss against
ln(classes), class collapse and label imbalance::

    autofix.report({"val_loss": loss, **autofix.judge_inputs(y_val, logits, train_labels=y_train)},
                   step=step, planned_steps=planned)

Computed with scikit-learn (``f1_score``, ``balanced_accuracy_score``) and numpy; imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from autofix.harness.evaluate import NONFINITE_OUTPUTS, chance_metrics, predict, prediction_metrics
from autofix.probes.stats import class_ids, label_metrics

__all__ = ["judge_inputs"]


def judge_inputs(y_true: Any, outputs: Any, train_labels: Any = None, *,
                 cross_entropy: bool = True) -> dict[str, float]:
    """Scores and chance figures of one evaluation, under the names autofix judges.

    Args:
        y_true: the validation class ids (a tensor, array or list).
        outputs: the model's validation outputs: logits ``(N, classes)`` (or one logit per
            input for a binary classifier), or predicted class ids ``(N,)`` of an integer dtype.
        train_labels: the training class ids: the majority class of the constant predictor,
            and ``label_frac_max``/``label_classes`` (label imbalance). Default: ``y_true``'s.
        cross_entropy: the loss you report is an unweighted cross-entropy, so ``chance_loss``
            (ln classes: its value for a uniform guess, and the bar of the loss-at-init check) and
            ``label_entropy`` (its value for the best constant guess) apply. False otherwise.

    Returns ``val_accuracy``, ``val_macro_f1``, ``val_balanced_accuracy``, the prediction
    shares (``pred_frac_max``, ``val_recall_min``, ...), ``chance_accuracy``,
    ``chance_macro_f1``, ``chance_balanced_accuracy`` and, as applicable, ``label_entropy``,
    ``chance_loss``, ``label_frac_max``, ``label_classes``. Non-finite outputs give NaN scores
    (never healthy) and ``val_nonfinite_outputs`` = 1.
    """
    true = class_ids(y_true)
    if true is None or not true.size:
        raise ValueError("autofix.judge_inputs: y_true must be a non-empty sequence of integer class ids")
    out = torch.as_tensor(outputs).detach()
    prior = class_ids(train_labels) if train_labels is not None else None
    metrics = chance_metrics(prior, true, with_entropy=cross_entropy)
    if prior is not None:
        metrics.update(label_metrics(prior))
    classes = _classes(out, true, prior)
    if cross_entropy and classes >= 2:
        metrics["chance_loss"] = math.log(classes)
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        metrics.update(val_accuracy=math.nan, val_macro_f1=math.nan, **{NONFINITE_OUTPUTS: 1.0})
        return metrics
    pred = (predict(out) if out.is_floating_point() else out.reshape(-1).long()).cpu().numpy()
    if pred.size != true.size:
        raise ValueError(f"autofix.judge_inputs: {pred.size} predictions for {true.size} labels")
    metrics.update(val_accuracy=float((pred == true).mean()),
                   val_macro_f1=float(f1_score(true, pred, average="macro", zero_division=0)),
                   val_balanced_accuracy=float(balanced_accuracy_score(true, pred)))
    metrics.update(prediction_metrics(pred, true))
    return metrics


def _classes(out: torch.Tensor, true: np.ndarray, prior: np.ndarray | None) -> int:
    """Classes of the output layer (logits' width; 2 for one logit), else the labels seen."""
    if out.is_floating_point():
        return int(out.shape[1]) if out.dim() == 2 and out.shape[1] > 1 else 2
    seen = np.union1d(true, prior) if prior is not None else np.unique(true)
    return int(seen.size)
