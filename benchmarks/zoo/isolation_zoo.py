"""Zoo cases only the isolation ladder can localise (block "isolation", benchmarks/zoo/cases.yaml).

Each factory has a switch whose "healthy" value is the case's reference (the same data, model or
loss without the bug), so every case is judged against a healthy run of the same config:

* :func:`loaded_digits`: scikit-learn's digits as a loader with a bug: training labels permuted
  independently of the images (``bug: permuted_labels``), or every image the first one
  (``bug: constant_inputs``). The validation split is loaded correctly, as a held-out set is.
* :func:`frozen_cnn`: the harness's small CNN with every parameter ``requires_grad=False``.
* :func:`argmax_loss`: a cross-entropy on the one-hot ``argmax`` of the outputs, made to run with
  ``requires_grad_()`` (the usual "fix" of "element 0 of tensors does not require grad").
* :func:`softmax_cnn`: the small CNN with a softmax applied twice, then ``cross_entropy``.
* width 1: the harness's ``mlp`` with every hidden width 1 (a spec override, no factory here).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autofix.harness.data import digits
from autofix.harness.models import small_cnn

__all__ = ["argmax_loss", "frozen_cnn", "loaded_digits", "softmax_cnn"]


def loaded_digits(bug: str = "none", flatten: bool = False, seed: int = 0, val_fraction: float = 0.2):
    """Digits through a buggy loader (see the module); ``bug: none`` is the healthy reference.
    A user factory gets only its ``args``: the split seed is its own (``seed``)."""
    train, val = digits(seed, val_fraction, flatten=flatten)
    x, y = train.tensors
    rng = np.random.default_rng(seed + 1000)
    if bug == "permuted_labels":
        y = y[torch.as_tensor(rng.permutation(len(y)))]
    elif bug == "constant_inputs":
        x = x[:1].expand_as(x).clone()
        val = torch.utils.data.TensorDataset(x[:1].expand_as(val.tensors[0]).clone(), val.tensors[1])
    elif bug != "none":
        raise ValueError(f"bug {bug!r} is not none, permuted_labels or constant_inputs")
    return torch.utils.data.TensorDataset(x, y), val


def frozen_cnn(num_classes: int = 10, frozen: bool = True) -> nn.Module:
    """The small CNN; ``frozen``: every parameter ``requires_grad=False``."""
    model = small_cnn(num_classes=num_classes)
    for p in model.parameters():
        p.requires_grad_(not frozen)
    return model


class _Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module, times: int) -> None:
        super().__init__()
        self.inner, self.times = inner, times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        for _ in range(self.times):
            out = torch.softmax(out, dim=1)
        return out


def softmax_cnn(num_classes: int = 10, times: int = 2) -> nn.Module:
    """The small CNN with its logits put through ``times`` softmaxes (0: the healthy reference)."""
    return _Softmaxed(small_cnn(num_classes=num_classes), times)


class _ArgmaxLoss(nn.Module):
    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hard = F.one_hot(out.argmax(dim=1), out.shape[1]).float().requires_grad_()
        return F.cross_entropy(hard, y)


def argmax_loss() -> nn.Module:
    """Cross-entropy on the one-hot argmax of the outputs: it runs, and no gradient reaches the model."""
    return _ArgmaxLoss()
