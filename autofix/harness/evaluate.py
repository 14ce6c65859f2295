"""Validation pass and class bookkeeping of the managed loop (predictions, targets, labels).

Split from :mod:`autofix.harness.loop` so the loop stays about training; the probe-only
statistics (``pred_frac_max``, ``val_recall_min``, ``init_loss``, ...) are reported only when
the config's probes are enabled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autofix.harness.builders import LossFn
from autofix.harness.data import Batches
from autofix.harness.losses import CLASS_ID_LOSSES
from autofix.judge.verdict import BALANCED_ACCURACY, CHANCE_ACCURACY, CHANCE_BALANCED, CHANCE_F1, LABEL_ENTROPY
from autofix.probes import class_ids

__all__ = ["NONFINITE_OUTPUTS", "chance_metrics", "class_targets", "evaluate", "initial_loss_metrics", "num_classes",
           "output_metrics", "predict",
           "prediction_metrics", "steps_per_epoch", "train_labels", "val_targets"]
NONFINITE_OUTPUTS = "val_nonfinite_outputs"  # 1.0 when some validation output was NaN/Inf
MAX_RECALL_CLASSES = 20  # per-class val_recall keys beyond this would flood the result rows


def predict(out: torch.Tensor) -> torch.Tensor:
    """Predicted class ids of a batch of logits, flat: ``[N, C, d1, ...]`` (torch
    cross-entropy's form for a class per position, e.g. a language model's) gives one per
    position, in the order of ``class_targets``' flattened ``[N, d1, ...]`` targets."""
    # A single logit is a binary classifier whose decision boundary is 0.
    if out.dim() == 1 or out.shape[1] == 1:
        return (out.reshape(-1) > 0).long()
    return out.argmax(dim=1).reshape(-1)


def class_targets(y: torch.Tensor, loss_name: str) -> torch.Tensor | None:
    """Class ids of targets ``y`` as fed to loss ``loss_name``; None for regression targets."""
    if not y.is_floating_point():
        return y.reshape(-1).long()
    if y.dim() > 1 and y.shape[1] > 1:
        return y.argmax(dim=1)  # one-hot or probability targets
    if loss_name == "bce_with_logits":
        return (y.reshape(-1) > 0.5).long()
    return None  # regression targets: accuracy has no meaning


def evaluate(model: nn.Module, loss_fn: LossFn, val: Batches, probes: bool) -> dict[str, float]:
    """Loss, accuracy and macro F1 on the whole validation set (plus class stats if ``probes``).

    A model whose outputs are NaN or infinite on any validation input has NaN accuracy and F1:
    ``argmax`` of NaN logits is class 0, which scored NaN models at 0.36-0.55.
    """
    model.eval()
    total, count, preds, targets, finite, outs = 0.0, 0, [], [], True, []
    with torch.no_grad():
        for x, y in val.epoch(0):
            out = model(x)
            finite = finite and bool(torch.isfinite(out).all())
            total += float(loss_fn(out, y)) * len(y)
            count += len(y)
            preds.append(predict(out))
            targets.append(class_targets(y, loss_fn.name))
            outs.append(out)
    metrics = {"val_loss": total / count if count else float("nan")}
    if probes and outs:
        metrics.update(output_metrics(torch.cat(outs), getattr(loss_fn, "expects", None)))
    if not preds or any(t is None for t in targets) or not finite:
        metrics.update(val_accuracy=float("nan"), val_macro_f1=float("nan"))
        if not finite:  # NaN scores of NaN outputs, not of a metric's code (symptoms.code.NanMetric)
            metrics[NONFINITE_OUTPUTS] = 1.0
        return metrics
    true_ids = [t for t in targets if t is not None]  # every one, checked above
    pred, true = torch.cat(preds).cpu().numpy(), torch.cat(true_ids).cpu().numpy()  # a DDP rank's GPU
    metrics["val_accuracy"] = float((pred == true).mean())
    metrics["val_macro_f1"] = float(f1_score(true, pred, average="macro", zero_division=0))
    metrics[BALANCED_ACCURACY] = float(balanced_accuracy_score(true, pred))
    if probes:
        metrics.update(prediction_metrics(pred, true))
    return metrics


def output_metrics(out: torch.Tensor, expects: str | None) -> dict[str, float]:
    """What the loss is fed, over the validation outputs (rows = samples, columns = classes):
    ``output_min`` / ``output_max`` (finite values), ``output_sum_dev`` (largest |row sum - 1|),
    ``output_zero_rows`` (share of rows summing to <= 0), ``output_lse_dev`` (largest |log-sum-exp
    of a row|), ``output_classes`` and ``loss_expects/<kind>`` = 1; ``{}`` when the loss says
    nothing of its inputs (mse, a custom loss without ``loss.expects``) or the outputs are not
    rows of scores."""
    if expects is None or out.dim() != 2 or not out.numel():
        return {}
    out = out.detach().float().cpu()
    ok = torch.isfinite(out)
    rows = ok.all(dim=1)
    if not bool(rows.any()):
        return {f"loss_expects/{expects}": 1.0, "output_classes": float(out.shape[1])}
    good, values = out[rows], out[ok]
    sums = good.sum(dim=1)
    return {f"loss_expects/{expects}": 1.0, "output_classes": float(out.shape[1]),
            "output_min": float(values.min()), "output_max": float(values.max()),
            "output_sum_dev": float((sums - 1).abs().max()),
            "output_zero_rows": float((sums <= 0).float().mean()),
            "output_lse_dev": float(torch.logsumexp(good, dim=1).abs().max())}


def val_targets(val: Batches, loss_name: str) -> np.ndarray | None:
    """The validation class ids in evaluation order; None for regression targets."""
    targets = [class_targets(y, loss_name) for _, y in val.epoch(0)]
    if not targets or any(t is None for t in targets):
        return None
    return torch.cat([t for t in targets if t is not None]).cpu().numpy()


def chance_metrics(prior: Any, true: Any, with_entropy: bool) -> dict[str, float]:
    """What the best constant predictor scores: it always predicts the majority class of
    ``prior`` (the training class ids; the validation ones when those are unknown).

    ``chance_accuracy``, ``chance_macro_f1`` (scikit-learn's ``f1_score``, macro) and
    ``chance_balanced_accuracy`` (1 / the classes present) on the validation ids ``true``; with
    ``with_entropy`` (a classification cross-entropy loss) also
    ``label_entropy``, the entropy in nats of the prior's class shares: the cross-entropy of
    predicting those shares for every input, the lowest loss a constant predictor reaches.
    """
    t = class_ids(true)
    p = class_ids(prior) if prior is not None else None
    p = p if p is not None and p.size else t
    if t is None or p is None or not t.size:
        return {}
    classes, counts = np.unique(p, return_counts=True)
    majority = classes[counts.argmax()]
    constant = np.full_like(t, majority)
    labels = np.union1d(t, [majority])  # the majority of the training labels may miss in validation
    out = {CHANCE_ACCURACY: float((t == majority).mean()),
           CHANCE_F1: float(f1_score(t, constant, labels=labels, average="macro", zero_division=0)),
           CHANCE_BALANCED: float(np.mean([(constant[t == c] == c).mean() for c in np.unique(t)]))}
    if with_entropy:
        shares = counts / counts.sum()
        out[LABEL_ENTROPY] = float(-(shares * np.log(shares)).sum())
    return out


def train_labels(dataset: Dataset, loss_name: str) -> torch.Tensor | None:
    """The training class ids without a pass over the data: TensorDataset tensors or ``targets``.

    None when the dataset does not expose its labels cheaply or they are not classes.
    """
    labels: Any
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        labels = dataset.tensors[1]
    else:
        labels = getattr(dataset, "targets", None)  # a torchvision-style dataset, if any
    if labels is None:
        return None
    try:
        return class_targets(torch.as_tensor(labels), loss_name)
    except (TypeError, ValueError, RuntimeError):
        return None


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int | None:
    """Number of batches per epoch, or None for a dataset without a length."""
    try:
        return math.ceil(len(dataset) / batch_size)  # type: ignore[arg-type]  # Dataset declares no __len__; a map-style one has it
    except TypeError:
        return None


def num_classes(out: torch.Tensor, loss_name: str) -> int | None:
    """Classes whose uniform prediction gives the chance loss; None for a regression loss."""
    if loss_name in CLASS_ID_LOSSES:
        return int(out.shape[1]) if out.dim() >= 2 else None
    # binary cross-entropy at logit 0 costs ln 2 per output, whatever the number of outputs
    return 2 if loss_name == "bce_with_logits" else None


def prediction_metrics(pred: Any, true: Any) -> dict[str, float]:
    """Validation class statistics from predicted and true class ids (``{}`` otherwise).

    ``pred_frac_max``, ``pred_classes``, ``val_recall_min``, ``val_balanced_accuracy`` and, for
    at most 20 classes, ``val_recall/<class>``. Recalls are over the classes present in ``true``,
    equal to scikit-learn's ``recall_score(labels=unique(true), average=None, zero_division=0)``
    and ``balanced_accuracy_score``; computed with numpy because sklearn's input validation costs
    milliseconds per call (tests/test_probes.py checks the equality). Also for custom trainables.
    """
    p, t = class_ids(pred), class_ids(true)
    if p is None or t is None or p.size != t.size:
        return {}
    pred_counts = np.unique(p, return_counts=True)[1]
    classes, t_idx, support = np.unique(t, return_inverse=True, return_counts=True)
    recall = np.bincount(t_idx.reshape(-1)[p == t], minlength=classes.size) / support
    out = {"pred_frac_max": float(pred_counts.max() / p.size),
           "pred_classes": float(pred_counts.size),
           "val_recall_min": float(recall.min()),
           "val_balanced_accuracy": float(recall.mean())}
    if classes.size <= MAX_RECALL_CLASSES:
        out.update({f"val_recall/{c}": float(r) for c, r in zip(classes.tolist(), recall, strict=True)})
    return out


def initial_loss_metrics(train_loss: float, num_classes: int | None) -> dict[str, float]:
    """Epoch 0: ``init_loss`` and, for classification, ``chance_loss`` = ln(num_classes).

    A cross-entropy start far above ln(C) signals a bad initialisation (Karpathy's recipe).
    """
    out = {"init_loss": float(train_loss)}
    if num_classes is not None and num_classes >= 2:
        out["chance_loss"] = math.log(num_classes)
    return out
