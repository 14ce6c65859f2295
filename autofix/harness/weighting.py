"""Class reweighting of the managed harness: ``loss.class_weights`` and ``data.sampler``.

* ``loss.class_weights: balanced`` uses scikit-learn's
  ``sklearn.utils.class_weight.compute_class_weight("balanced", classes, y)``, i.e.
  ``n_samples / (n_classes * bincount(y))`` (https://scikit-learn.org/stable/modules/generated/
  sklearn.utils.class_weight.compute_class_weight.html), as the ``weight`` of CrossEntropyLoss /
  NLLLoss; for BCEWithLogitsLoss the equivalent is ``pos_weight = n_negative / n_positive`` per
  output (https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html). An explicit
  list is used as given, after checking its length against the model's outputs.
* ``data.sampler: balanced`` gives every training sample the weight ``1 / count(its class)``
  for :class:`torch.utils.data.WeightedRandomSampler` (drawn in
  :class:`autofix.harness.data.Batches`), so each class is drawn equally often in expectation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from autofix.harness.evaluate import class_targets, train_labels

__all__ = ["balanced_class_weights", "dataset_labels", "loss_weight_kwargs", "output_width",
           "sampler_weights"]

_WEIGHTED_LOSSES = {"bce_with_logits": "pos_weight", "categorical_crossentropy": "weight", "cross_entropy": "weight",
                    "nll": "weight"}


def dataset_labels(dataset: Dataset, loss_name: str, knob: str) -> torch.Tensor:
    """The training class ids: cheaply from a TensorDataset or ``targets``, else one pass.

    Raises:
        ValueError: naming ``knob`` when the targets are not class labels (regression).
    """
    labels = train_labels(dataset, loss_name)
    if labels is None and not isinstance(dataset, TensorDataset):
        parts = [class_targets(torch.as_tensor(batch[1]), loss_name)
                 for batch in DataLoader(dataset, batch_size=1024, shuffle=False)]
        labels = None if any(p is None for p in parts) or not parts else torch.cat([p for p in parts if p is not None])
    if labels is None:
        raise ValueError(f"{knob} needs class labels, but the training targets are not class ids")
    return labels.reshape(-1).long()


def sampler_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weight ``1 / count(class)``: every class gets the same total weight."""
    counts = torch.bincount(labels)
    return (1.0 / counts.double())[labels]


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> list[float]:
    """scikit-learn's balanced weights for classes ``0 .. n_classes-1``; a class without training
    samples gets 1.0 (no target has it, so its weight never enters the training loss: a model
    with more outputs than the data's classes, as a language model's vocabulary, is no error).

    Raises:
        ValueError: a label outside that range.
    """
    y = labels.numpy()
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"loss.class_weights: training labels span {int(y.min())}..{int(y.max())} "
                         f"but the model has {n_classes} outputs")
    present = np.unique(y)
    weights = np.ones(n_classes)
    if present.size:
        weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return weights.tolist()


def _balanced_pos_weight(labels: torch.Tensor, n_outputs: int) -> list[float]:
    """n_negative / n_positive per output (one output: class 1 is the positive one)."""
    counts = torch.bincount(labels, minlength=max(2, n_outputs)).double()
    positive = counts[1:2] if n_outputs == 1 else counts[:n_outputs]
    if bool((positive == 0).any()):
        raise ValueError("loss.class_weights 'balanced': a class has no training samples")
    return ((len(labels) - positive) / positive).tolist()


def loss_weight_kwargs(spec: dict[str, Any], labels: Any, n_outputs: int) -> dict[str, list[float]]:
    """Extra loss keyword arguments for ``spec["class_weights"]`` (``{}`` when unset).

    ``labels`` is a zero-argument callable giving the training class ids (only called for
    'balanced'); ``n_outputs`` is the model's output width, which a weight list must match.
    """
    weights = spec.get("class_weights")
    if weights is None:
        return {}
    key = _WEIGHTED_LOSSES.get(spec["name"].lower())
    if key is None:
        raise ValueError(f"loss.class_weights applies to {', '.join(sorted(_WEIGHTED_LOSSES))}, "
                         f"not to {spec['name']!r}")
    if key in spec.get("args", {}):
        raise ValueError(f"loss.class_weights and loss.args.{key} both set: keep one of them")
    if weights == "balanced":
        y = labels()
        values = (_balanced_pos_weight(y, n_outputs) if key == "pos_weight"
                  else balanced_class_weights(y, n_outputs))
    else:
        values = [float(w) for w in weights]
    if len(values) != n_outputs:
        per = "one weight per class" if key == "weight" else "one pos_weight per output"
        raise ValueError(f"loss.class_weights has {len(values)} values but the model has "
                         f"{n_outputs} output(s) ({per})")
    return {key: values}


def output_width(model: nn.Module, dataset: Dataset) -> int:
    """Number of model outputs (classes), from one forward pass on two training samples."""
    if isinstance(dataset, TensorDataset):
        x = dataset.tensors[0][:2]
    else:
        count = min(2, len(dataset))  # type: ignore[arg-type]  # Dataset declares no __len__; a map-style one has it
        x = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(count)])
    was_training = model.training
    model.eval()  # no dropout draw, no batch-norm statistics update
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was_training)
    return int(out.shape[1]) if out.dim() >= 2 else 1
