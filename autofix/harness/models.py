"""Builtin model factories, referenced from configs as ``autofix.harness.models:<name>``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ACTIVATIONS", "SimpleCNN", "mlp", "simple_cnn", "small_cnn"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def _activation(name: str, owner: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner} activation {name!r} is not one of {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def small_cnn(num_classes: int = 10, in_channels: int = 1, activation: str = "relu",
              batch_norm: bool = False) -> nn.Module:
    """Two-conv CNN sized for 8x8 inputs (the ``digits`` dataset).

    ``activation`` names the non-linearity (as for :func:`mlp`); ``batch_norm`` puts a
    BatchNorm2d/BatchNorm1d after each hidden conv/linear layer, before its activation.
    """
    act = _activation(activation, "small_cnn")

    def block(layer: nn.Module, width: int, norm: type[nn.Module]) -> list[nn.Module]:
        return [layer, *([norm(width)] if batch_norm else []), act()]

    return nn.Sequential(
        *block(nn.Conv2d(in_channels, 16, kernel_size=3, padding=1), 16, nn.BatchNorm2d),
        *block(nn.Conv2d(16, 32, kernel_size=3, padding=1), 32, nn.BatchNorm2d),
        nn.MaxPool2d(2),
        nn.Flatten(),
        *block(nn.Linear(32 * 4 * 4, 64), 64, nn.BatchNorm1d),
        nn.Linear(64, num_classes),
    )


class SimpleCNN(nn.Module):
    """The seed article's SimpleCNN, kept layer for layer: conv 3->16, ReLU, pool, linear.

    Expects 3x32x32 inputs (CIFAR-10 or ``fake`` data).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 16 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of 3x32x32 images."""
        x = self.pool(F.relu(self.conv1(x)))
        x = x.view(-1, 16 * 16 * 16)
        return self.fc1(x)


def simple_cnn(num_classes: int = 10) -> nn.Module:
    """Factory for :class:`SimpleCNN`."""
    return SimpleCNN(num_classes)


def mlp(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float | None = None,
) -> nn.Module:
    """Fully connected net: ``in_features -> hidden... -> num_classes`` with one activation kind.

    ``activation`` is one of relu, tanh, sigmoid, leaky_relu, elu, selu; sigmoid/tanh in deep
    stacks are how a config reproduces vanishing gradients. ``batch_norm`` puts a BatchNorm1d
    between each hidden Linear and its activation; ``dropout`` (a probability) puts a Dropout
    before every Linear but the first, i.e. on hidden activations only.
    """
    act = _activation(activation, "mlp")
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        if dropout is not None and layers:
            layers.append(nn.Dropout(float(dropout)))
        layers.append(nn.Linear(width, int(size)))
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(size)))
        layers.append(act())
        width = int(size)
    if dropout is not None and layers:
        layers.append(nn.Dropout(float(dropout)))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
