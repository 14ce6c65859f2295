"""Models and data of the sick zoo: ordinary code a user could have written, each with one fault.

The broken models mirror ``examples/symptoms/models.py`` (kept separate so the benchmark does
not change when an example does); ``digits_rgb32`` gives the seed article's SimpleCNN
(3x32x32 input) a learnable offline dataset.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

__all__ = [
    "deep_sigmoid_mlp", "digits_rgb32", "imbalanced_images", "large_init_mlp", "negative_bias_mlp",
    "reloading_mlp", "tiny_init_mlp", "wide_mlp",
]


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


def _normal_init(model: nn.Module, std: float) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, std)
                m.bias.zero_()
    return model


def large_init_mlp(in_features: int = 64, num_classes: int = 10, depth: int = 6, width: int = 64,
                   std: float = 0.6) -> nn.Sequential:
    """ReLU MLP initialised with N(0, std^2): each layer amplifies activations and gradients."""
    return _normal_init(_mlp(in_features, num_classes, depth, width, nn.ReLU), std)


def tiny_init_mlp(in_features: int = 64, num_classes: int = 10, depth: int = 6, width: int = 64,
                  std: float = 0.01) -> nn.Sequential:
    """ReLU MLP initialised with N(0, std^2), far below He's sqrt(2/fan_in): signals die out."""
    return _normal_init(_mlp(in_features, num_classes, depth, width, nn.ReLU), std)


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


class _ReloadingMLP(nn.Sequential):
    """An MLP whose forward re-loads its initial weights: a leftover ``load_state_dict``."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self._initial = [(p, p.detach().clone()) for p in self.parameters()]  # not a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for param, initial in self._initial:  # BUG: meant to run once, before training
                param.copy_(initial)
        return super().forward(x)


def reloading_mlp(in_features: int = 64, num_classes: int = 10, width: int = 64) -> nn.Sequential:
    """A code bug like a missing ``optimizer.step()``: the loss and gradients are computed and
    the optimizer steps, but every forward pass restores the initial weights, so the model
    never changes. No configuration change can fix it."""
    layers = list(_mlp(in_features, num_classes, 2, width, nn.ReLU))
    return _ReloadingMLP(*layers)


def digits_rgb32(split_seed: int = 0, val_fraction: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn digits as 3x32x32 images in [0, 1] (nearest upsampling x4, grey to RGB)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3).repeat(1, 3, 1, 1)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.tensor(np.random.default_rng(split_seed).permutation(len(y)))
    n_val = round(len(y) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def imbalanced_images(split_seed: int = 0, val_fraction: float = 0.2, size: int = 2000, num_classes: int = 10,
                      majority: float = 0.9, noise: float = 0.5) -> tuple[TensorDataset, TensorDataset]:
    """CIFAR-like synthetic 3x32x32 images with ``majority`` of the labels in class 0.

    Each class has a fixed smooth template (a random 3x4x4 pattern upsampled x8, the same for
    every seed); an image is 0.5 + 0.25 x its class template + ``noise`` x Gaussian pixel noise,
    so the classes are learnable but the minority ones only from ~20 examples each. Labels and
    noise come from ``split_seed``, which also shuffles the train/validation split (stratified).
    """
    from sklearn.model_selection import train_test_split

    templates = torch.tensor(np.random.default_rng(1234).standard_normal((num_classes, 3, 4, 4)),
                             dtype=torch.float32)
    templates = templates.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    rng = np.random.default_rng(split_seed)
    minority = (1.0 - majority) / (num_classes - 1)
    y = rng.choice(num_classes, size=size, p=[majority] + [minority] * (num_classes - 1))
    pixels = torch.tensor(rng.standard_normal((size, 3, 32, 32)), dtype=torch.float32)
    x = 0.5 + 0.25 * templates[torch.as_tensor(y)] + noise * pixels
    idx = np.arange(size)
    train, val = train_test_split(idx, test_size=val_fraction, random_state=split_seed, stratify=y)
    labels = torch.as_tensor(y, dtype=torch.int64)
    return TensorDataset(x[train], labels[train]), TensorDataset(x[val], labels[val])
