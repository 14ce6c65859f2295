"""Deliberately broken models for the symptom examples: each is an ordinary ``nn.Sequential``
a user could have written, with one classic fault."""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_features: int, num_classes: int, depth: int, width: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    size = in_features
    for _ in range(depth):
        layers += [nn.Linear(size, width), act()]
        size = width
    layers.append(nn.Linear(size, num_classes))
    return nn.Sequential(*layers)


def deep_sigmoid_mlp(in_features: int = 64, num_classes: int = 10, depth: int = 10, width: int = 32) -> nn.Sequential:
    """Ten sigmoid layers: the gradient shrinks ~4x per layer on the way back (vanishing)."""
    return _mlp(in_features, num_classes, depth, width, nn.Sigmoid)


def large_init_mlp(in_features: int = 64, num_classes: int = 10, depth: int = 6, width: int = 64,
                   std: float = 0.6) -> nn.Sequential:
    """ReLU MLP initialised with N(0, std^2): each layer amplifies activations and gradients."""
    model = _mlp(in_features, num_classes, depth, width, nn.ReLU)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, std)
    return model


def negative_bias_mlp(in_features: int = 64, num_classes: int = 10, depth: int = 3, width: int = 64,
                      bias: float = -6.0) -> nn.Sequential:
    """ReLU MLP whose hidden biases start strongly negative: most units never fire (dying ReLU)."""
    model = _mlp(in_features, num_classes, depth, width, nn.ReLU)
    with torch.no_grad():
        for m in list(model.modules())[:-1]:
            if isinstance(m, nn.Linear):
                m.bias.fill_(bias)
    return model


def wide_mlp(in_features: int = 64, num_classes: int = 10, width: int = 512) -> nn.Sequential:
    """A big two-layer MLP: plenty of capacity to memorise a tiny training set."""
    return _mlp(in_features, num_classes, 2, width, nn.ReLU)
