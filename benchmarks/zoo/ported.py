"""Models written the way Keras models are ported to PyTorch: the do-no-harm zoo's slow learners.

Deep narrow MLPs whose layers are initialised as Keras' ``Dense`` does (kernel
``glorot_uniform``: U(-sqrt(6 / (fan_in + fan_out)), +...), bias zeros), with Keras' activation
names, trained on 2-D toy data the Keras way (700 training rows, batch 256: 3 optimizer steps
per epoch, hundreds of epochs). Nothing here was written for autofix's detectors: such stacks sit
near chance for tens of epochs and then learn, which is what a detector must not mistake for a
sick run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "glorot_uniform_", "keras_mlp"]

def _keras_leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.3)  # Keras' default alpha (torch's is 0.01)


ACTIVATIONS = {"elu": nn.ELU, "leaky_relu": _keras_leaky_relu, "relu": nn.ReLU, "selu": nn.SELU,
               "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def glorot_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """Keras' glorot_uniform on a torch ``(out, in)`` weight: fan_in = in, fan_out = out."""
    fan_out, fan_in = weight.shape
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-limit, limit)


def _dense(fan_in: int, units: int) -> nn.Linear:
    layer = nn.Linear(fan_in, units)
    glorot_uniform_(layer.weight)
    with torch.no_grad():
        layer.bias.zero_()
    return layer


def keras_mlp(in_features: int, num_classes: int, widths: Sequence[int], activation: str = "tanh") -> nn.Sequential:
    """``Sequential([Dense(w, activation) for w in widths] + [Dense(num_classes)])`` as ported:
    logits out (the loss is a from-logits cross-entropy)."""
    layers: list[nn.Module] = []
    size = in_features
    for width in widths:
        layers += [_dense(size, int(width)), ACTIVATIONS[activation]()]
        size = int(width)
    layers.append(_dense(size, num_classes))
    return nn.Sequential(*layers)
