"""Architecture knobs of the managed harness: ``architecture.{activation, batch_norm, dropout}``.

A knob goes to the model factory when the factory takes a keyword argument of that name
(``inspect.signature``; the builtin ``mlp`` and ``small_cnn`` do), so the model is built the
way its author meant. Otherwise the built model is operated on:

* activation: every activation module (ReLU, LeakyReLU, ELU, SELU, Tanh, Sigmoid, GELU, ReLU6)
  anywhere in the module tree is replaced by the requested one;
* batch_norm: inside every ``nn.Sequential``, a ``BatchNorm1d``/``BatchNorm2d`` of the layer's
  width goes right after each Linear/Conv1d/Conv2d that is directly followed by an activation
  (the output layer has none after it, so it is left alone) -- the placement of Ioffe & Szegedy
  2015 (arXiv:1502.03167), before the non-linearity;
* dropout: ``nn.Dropout(p)`` goes before each Linear inside an ``nn.Sequential`` except the
  model's first parameterised layer (it reads the raw input): dropout on hidden activations, as
  in Srivastava et al. 2014 (JMLR 15). An existing Dropout right before a Linear gets the new p.

Surgery that finds nothing to change raises ValueError: silently training the unchanged model
would make the remediation look ineffective, and the ledger would learn the wrong lesson.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from autofix.harness.models import ACTIVATIONS

__all__ = ["ACTIVATION_TYPES", "KNOBS", "add_batch_norm", "add_dropout", "apply_architecture",
           "factory_kwargs", "requested", "swap_activations"]

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ReLU6,
)
KNOBS = ("activation", "batch_norm", "dropout")
_NORMS: dict[type[nn.Module], Callable[[int], nn.Module]] = {
    nn.Linear: nn.BatchNorm1d, nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d,
}


def requested(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The knobs that ask for a change (neutral values: None, False)."""
    spec = spec or {}
    return {k: spec[k] for k in KNOBS if spec.get(k) is not None and spec.get(k) is not False}


def factory_kwargs(factory: Callable[..., Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs ``factory`` takes as named keyword arguments (``**kwargs`` does not count:
    a catch-all could swallow the value and change nothing)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    named = {name for name, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in knobs.items() if k in named}


def _unsupported(knob: str, model: nn.Module, what: str) -> ValueError:
    return ValueError(
        f"architecture.{knob}: found no {what} in {type(model).__name__}; the model must be an "
        f"nn.Sequential (or hold them) or its factory must accept a '{knob}' argument"
    )


def swap_activations(model: nn.Module, name: str) -> nn.Module:
    """Replace every activation module in ``model`` (recursively) by ``ACTIVATIONS[name]()``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"architecture.activation {name!r} is not one of {', '.join(sorted(ACTIVATIONS))}")
    if isinstance(model, ACTIVATION_TYPES):
        return ACTIVATIONS[name]()
    found = 0
    for parent in list(model.modules()):  # a snapshot: children are replaced as we go
        for child_name, child in list(parent.named_children()):
            if isinstance(child, ACTIVATION_TYPES):
                setattr(parent, child_name, ACTIVATIONS[name]())  # works for Sequential too
                found += 1
    if not found:
        raise _unsupported("activation", model, "activation module (functional activations "
                           "inside forward() cannot be swapped)")
    return model


def _sequentials(model: nn.Module) -> list[nn.Sequential]:
    return [m for m in model.modules() if isinstance(m, nn.Sequential)]


def _rebuild(seq: nn.Sequential, layers: list[nn.Module]) -> None:
    """Refill ``seq`` in place (its parent keeps pointing at the same object)."""
    for key in list(seq._modules):
        del seq._modules[key]
    for i, layer in enumerate(layers):
        seq.add_module(str(i), layer)


def add_batch_norm(model: nn.Module) -> nn.Module:
    """Insert BatchNorm after each Linear/Conv directly followed by an activation."""
    inserted = 0
    for seq in _sequentials(model):
        layers = list(seq)
        out: list[nn.Module] = []
        for i, layer in enumerate(layers):
            out.append(layer)
            norm = _NORMS.get(type(layer))
            if norm and i + 1 < len(layers) and isinstance(layers[i + 1], ACTIVATION_TYPES):
                width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
                out.append(norm(width))
                inserted += 1
        if len(out) != len(layers):
            _rebuild(seq, out)
    if not inserted:
        raise _unsupported("batch_norm", model, "Linear/Conv layer followed by an activation "
                           "inside an nn.Sequential")
    return model


def add_dropout(model: nn.Module, p: float) -> nn.Module:
    """Insert ``nn.Dropout(p)`` before each hidden Linear of every nn.Sequential."""
    first = next((m for m in model.modules() if next(m.parameters(False), None) is not None), None)
    changed = 0
    for seq in _sequentials(model):
        out: list[nn.Module] = []
        for layer in seq:
            if isinstance(layer, nn.Linear) and layer is not first:
                if out and isinstance(out[-1], nn.Dropout):
                    out[-1].p = float(p)  # already there: only the rate changes
                else:
                    out.append(nn.Dropout(float(p)))
                changed += 1
            out.append(layer)
        if len(out) != len(seq):
            _rebuild(seq, out)
    if not changed:
        raise _unsupported("dropout", model, "hidden Linear layer inside an nn.Sequential")
    return model


def apply_architecture(model: nn.Module, knobs: dict[str, Any]) -> nn.Module:
    """Operate on ``model`` for the knobs its factory did not take: activation first (so batch
    norm sees the final activations), then batch norm, then dropout."""
    if "activation" in knobs:
        model = swap_activations(model, knobs["activation"])
    if knobs.get("batch_norm"):
        model = add_batch_norm(model)
    if knobs.get("dropout") is not None:
        model = add_dropout(model, knobs["dropout"])
    return model
