"""Models written the way Keras models are ported to PyTorch (the do-no-harm and ported-models zoos).

Deep narrow MLPs whose ``Dense`` layers are initialised as Keras does (``kernel_initializer``,
default ``glorot_uniform``; ``bias_initializer``, default ``zeros``), with Keras' activation
names, trained on 2-D toy data the Keras way (700 training rows, batch 256: 3 optimizer steps
per epoch, hundreds of epochs). Nothing here was written for autofix's detectors.

Facts from the Keras 2.x sources (``keras/initializers``, ``keras/activations``):

* fans of a Dense kernel (inputs, units): fan_in = inputs, fan_out = units; a 1-D tensor (a bias
  given a variance-scaling initialiser) has fan_in = fan_out = sqrt(n) (``_compute_fans``);
* ``VarianceScaling(scale, mode, distribution)``: std = sqrt(scale / n); ``uniform`` draws from
  U(-sqrt(3) std, sqrt(3) std); ``truncated_normal`` from a normal cut at +-2 sigma with
  sigma = std / 0.87962566103423978 (the std of a unit normal truncated at +-2), so the result
  has the intended std. glorot_uniform = (1, fan_avg, uniform), glorot_normal = (1, fan_avg,
  truncated), he_normal = (2, fan_in, truncated), he_uniform = (2, fan_in, uniform),
  lecun_normal = (1, fan_in, truncated), lecun_uniform = (1, fan_in, uniform);
* ``RandomUniform`` +-0.05, ``RandomNormal`` and ``TruncatedNormal`` std 0.05, ``Constant`` 0;
* ``exponential`` = exp(x) (inf for x > ~88 in float32); ``hard_sigmoid`` = clip(0.2 x + 0.5,
  0, 1) in Keras 2 (torch's Hardsigmoid is x/6 + 1/2); ``LeakyReLU`` alpha 0.3 (torch: 0.01);
  ``linear`` = identity (a porter writes no module for it); ``log_softmax`` is tf.nn.log_softmax,
  the output a porter pairs with torch's NLLLoss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "INITIALIZERS", "Exponential", "HardSigmoid", "glorot_uniform_", "keras_mlp",
           "keras_sequential"]

_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated at +-2 (Keras VarianceScaling)


class Exponential(nn.Module):
    """Keras' ``exponential`` activation, as a porter writes it: ``forward`` returns ``exp(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class HardSigmoid(nn.Module):
    """Keras 2's ``hard_sigmoid``: clip(0.2 x + 0.5, 0, 1) (not torch's x/6 + 1/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def _keras_leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.3)  # Keras' default alpha (torch's is 0.01)


ACTIVATIONS: dict[str, Callable[[], nn.Module] | None] = {
    "elu": nn.ELU, "exponential": Exponential, "hard_sigmoid": HardSigmoid, "leaky_relu": _keras_leaky_relu,
    "linear": None, "log_softmax": lambda: nn.LogSoftmax(dim=1), "relu": nn.ReLU, "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1), "softplus": nn.Softplus, "softsign": nn.Softsign, "tanh": nn.Tanh,
}


def _fans(tensor: torch.Tensor) -> tuple[float, float]:
    if tensor.dim() == 1:  # Keras' _compute_fans of a 1-D shape
        return math.sqrt(tensor.numel()), math.sqrt(tensor.numel())
    fan_out, fan_in = tensor.shape[:2]  # torch stores a Dense kernel transposed: (units, inputs)
    return float(fan_in), float(fan_out)


def _variance_scaling(scale: float, mode: str, distribution: str) -> Callable[[torch.Tensor], None]:
    def init(tensor: torch.Tensor) -> None:
        fan_in, fan_out = _fans(tensor)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        std = math.sqrt(scale / n)
        if distribution == "uniform":
            limit = math.sqrt(3.0) * std
            tensor.uniform_(-limit, limit)
        else:
            sigma = std / _TRUNCATED_STD
            nn.init.trunc_normal_(tensor, 0.0, sigma, -2 * sigma, 2 * sigma)
    return init


def _truncated(std: float) -> Callable[[torch.Tensor], None]:
    return lambda t: nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std)


INITIALIZERS: dict[str, Callable[[torch.Tensor], object]] = {
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "truncated_normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "ones": lambda t: t.fill_(1.0),
    "random_normal": lambda t: t.normal_(0.0, 0.05),
    "random_uniform": lambda t: t.uniform_(-0.05, 0.05),
    "truncated_normal": _truncated(0.05),
    "zeros": lambda t: t.zero_(),
}


def glorot_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """Keras' glorot_uniform on a torch ``(out, in)`` weight: fan_in = in, fan_out = out."""
    with torch.no_grad():
        INITIALIZERS["glorot_uniform"](weight)
    return weight


def _initializer(name: str | float) -> Callable[[torch.Tensor], object]:
    if isinstance(name, (int, float)):  # Constant(value)
        return lambda t: t.fill_(float(name))
    if name not in INITIALIZERS:
        raise ValueError(f"unknown Keras initializer {name!r}; known: {', '.join(sorted(INITIALIZERS))}")
    return INITIALIZERS[name]


def _dense(fan_in: int, units: int, kernel: str | float, bias: str | float) -> nn.Linear:
    layer = nn.Linear(fan_in, units)
    with torch.no_grad():
        _initializer(kernel)(layer.weight)
        _initializer(bias)(layer.bias)
    return layer


def _activation(name: str) -> nn.Module | None:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown Keras activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    make = ACTIVATIONS[name]
    return make() if make is not None else None


def keras_sequential(in_features: int, num_classes: int, units: Sequence[int],
                     activations: str | Sequence[str] = "tanh", output: str = "linear",
                     kernel_initializer: str | float = "glorot_uniform",
                     bias_initializer: str | float = "zeros") -> nn.Sequential:
    """A Keras ``Sequential`` of ``Dense`` layers as a converter writes it out: each Dense an
    ``nn.Linear`` initialised with Keras' ``kernel_initializer`` and ``bias_initializer`` (a name
    or a constant) followed by its activation module (none for ``linear``), then
    ``Dense(num_classes, output)``. ``activations`` is one name or one per hidden layer;
    ``output='linear'`` gives logits (a from-logits loss), ``softmax`` / ``sigmoid`` / ``relu``
    what a Keras model trained with ``categorical_crossentropy`` on probabilities ends with.

    Its arguments are named as in the Keras model's config, none as an autofix architecture knob:
    autofix must change it by surgery on the built model, as on any converted model."""
    names = [activations] * len(units) if isinstance(activations, str) else list(activations)
    if len(names) != len(units):
        raise ValueError(f"{len(names)} activations for {len(units)} hidden layers")
    layers: list[nn.Module] = []
    size = in_features
    for width, name in zip(units, names, strict=False):
        layers.append(_dense(size, int(width), kernel_initializer, bias_initializer))
        act = _activation(name)
        layers += [act] if act is not None else []
        size = int(width)
    layers.append(_dense(size, num_classes, kernel_initializer, bias_initializer))
    head = _activation(output)
    layers += [head] if head is not None else []
    return nn.Sequential(*layers)


def keras_mlp(in_features: int, num_classes: int, widths: Sequence[int], activation: str | Sequence[str] = "tanh",
              output: str = "linear", kernel_initializer: str | float = "glorot_uniform",
              bias_initializer: str | float = "zeros") -> nn.Sequential:
    """:func:`keras_sequential` with its hidden activation as an ``activation`` argument, the
    factory of the do-no-harm controls: autofix passes ``architecture.activation`` to it (a factory
    that takes the knob builds the model the way its author meant)."""
    return keras_sequential(in_features, num_classes, widths, activation, output, kernel_initializer,
                            bias_initializer)
