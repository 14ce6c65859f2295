"""Architecture knobs of the managed harness: ``architecture.{activation, activation_scope,
output_activation, batch_norm, dropout}``.

A knob goes to the model factory when the factory takes a keyword argument of that name
(``inspect.signature``; the builtin ``mlp`` and ``small_cnn`` do), so the model is built the
way its author meant. Otherwise the built model is operated on, guided by its traced forward
path (:mod:`autofix.harness.anatomy`): the *output head* (the last weight layer and what follows
it) is left alone by every hidden-layer knob.

* activation: every hidden activation module (recognised by behaviour: a user's ``Exp`` or
  ``nn.Softplus`` counts, Dropout and Identity do not) between the first weight layer and the
  head is replaced by the requested one. ``activation_scope: nonfinite`` replaces only the
  modules of the kind of the first hidden activation whose output is non-finite on the
  untrained model's first training batch (an ``exp`` that overflows);
* output_activation: what follows the head's weight layer becomes ``identity`` (logits),
  ``softmax``, ``log_softmax`` or ``sigmoid``: the output the loss expects;
* batch_norm: a ``BatchNorm1d``/``BatchNorm2d`` of the layer's width right after each hidden
  Linear/Conv1d/Conv2d that is directly followed by an activation on the path (Ioffe & Szegedy
  2015, arXiv:1502.03167: before the non-linearity); never after the head's layer;
* dropout: ``nn.Dropout(p)`` before each Linear on the path except the first (it reads the raw
  input): dropout on hidden activations, as in Srivastava et al. 2014 (JMLR 15). An existing
  Dropout right before a Linear gets the new p.

A module registered under several names is changed under all of them. Surgery that finds
nothing to change raises ValueError saying what it found: silently training the unchanged
model would make the remediation look ineffective, and the ledger would learn the wrong lesson.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from autofix.harness.anatomy import Path, activation_problem, trace, weight_layer
from autofix.harness.models import ACTIVATIONS

__all__ = ["KNOBS", "OUTPUTS", "add_batch_norm", "add_dropout", "apply_architecture", "factory_kwargs",
           "requested", "set_output_activation", "swap_activations"]

KNOBS = ("activation", "activation_scope", "output_activation", "batch_norm", "dropout")
OUTPUTS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity, "log_softmax": lambda: nn.LogSoftmax(dim=1), "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
}
_NORMS: dict[type[nn.Module], Callable[[int], nn.Module]] = {
    nn.Linear: nn.BatchNorm1d, nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d,
}


def requested(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The knobs that ask for a change (neutral values: None, False, scope 'hidden')."""
    spec = spec or {}
    out = {k: spec[k] for k in KNOBS if spec.get(k) is not None and spec.get(k) is not False}
    if out.get("activation_scope") == "hidden" or "activation" not in out:
        out.pop("activation_scope", None)  # the default scope, or a scope with nothing to swap
    return out


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


def _unsupported(knob: str, model: nn.Module, what: str, hint: bool = True) -> ValueError:
    tail = f"; give its factory a '{knob}' argument to change it there" if hint else ""
    return ValueError(f"architecture.{knob}: {what} in {type(model).__name__}{tail}")


def _replace(model: nn.Module, path: Path, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is registered (a shared module under all of its names)."""
    for name in path.names.get(id(old), []):
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)  # works for Sequential/ModuleList keys too


def swap_activations(model: nn.Module, name: str, scope: str = "hidden", sample: Any = None) -> nn.Module:
    """Replace the hidden activation modules (``scope`` 'hidden', or only the first non-finite
    kind: 'nonfinite') by ``ACTIVATIONS[name]()``; the output head keeps its own."""
    if name not in ACTIVATIONS:
        raise ValueError(f"architecture.activation {name!r} is not one of {', '.join(sorted(ACTIVATIONS))}")
    if scope == "nonfinite" and sample is None:
        raise ValueError("architecture.activation_scope 'nonfinite' needs an input batch to find the first "
                         "non-finite activation")
    path = trace(model, sample)
    acts, skipped = path.hidden_activations()
    if scope == "nonfinite":
        first = next((c for c in acts if not c.finite), None)
        if first is None:
            raise _unsupported("activation_scope", model, "no hidden activation has a non-finite output on the "
                               f"first training batch of the untrained model (path: {path.describe()})", hint=False)
        acts = [c for c in acts if type(c.module) is type(first.module)]
    if not acts:
        found = "; ".join(skipped) or "no parameter-free module between its first weight layer and the output head"
        raise _unsupported("activation", model, f"found no hidden activation module to replace ({found}; "
                           f"path: {path.describe()}; activations called as functions inside forward(), "
                           "such as F.relu, have no module to replace)")
    done: set[int] = set()
    for call in acts:
        if id(call.module) not in done:
            done.add(id(call.module))
            _replace(model, path, call.module, ACTIVATIONS[name]())
    return model


def set_output_activation(model: nn.Module, name: str, sample: Any = None) -> nn.Module:
    """Make the head end with ``OUTPUTS[name]``: what follows the last weight layer is replaced."""
    if name not in OUTPUTS:
        raise ValueError(f"architecture.output_activation {name!r} is not one of {', '.join(sorted(OUTPUTS))}")
    path = trace(model, sample)
    head = path.head()
    if not head:
        raise _unsupported("output_activation", model, f"found no weight layer on the path ({path.describe()})")
    if path.tail_functional:
        raise _unsupported("output_activation", model, "the output passes through a function inside forward() "
                           f"after its last module, which surgery cannot replace (path: {path.describe()})")
    layer, followers = head[0], head[1:]
    hidden = {id(c.module) for c in path.calls[:len(path.calls) - len(head)]}
    shared = [c.name for c in followers if id(c.module) in hidden]
    if shared:
        raise _unsupported("output_activation", model, f"the head's {', '.join(shared)} also run in hidden layers")
    kinds = [type(c.module) for c in followers if not isinstance(c.module, nn.Identity)]
    if kinds == [type(OUTPUTS[name]())] or (name == "identity" and not kinds):
        raise _unsupported("output_activation", model, f"the head already ends with {name} ({path.describe()})",
                           hint=False)
    new = None if name == "identity" else OUTPUTS[name]()  # logits: the layer's own output
    if not _rebuild_tail(model, path, layer.module, [c.module for c in followers], new):
        for call in followers:
            _replace(model, path, call.module, nn.Identity())
        if new is not None:
            _replace(model, path, layer.module, nn.Sequential(layer.module, new))
    return model


def _rebuild_tail(model: nn.Module, path: Path, layer: nn.Module, followers: list[nn.Module],
                  new: nn.Module | None) -> bool:
    """In the common case (the head's layer and its followers in a row, at the end of one
    nn.Sequential) replace the followers there; False when the model is shaped otherwise."""
    names = path.names.get(id(layer), [])
    if len(names) != 1:
        return False
    parent = model.get_submodule(names[0].rpartition(".")[0])
    if not isinstance(parent, nn.Sequential):
        return False
    layers = list(parent)
    at = layers.index(layer)
    if layers[at + 1:] != followers:
        return False
    for key in list(parent._modules)[at + 1:]:
        del parent._modules[key]
    if new is not None:
        parent.add_module(str(at + 1), new)
    return True


def _insert(model: nn.Module, path: Path, anchor: nn.Module, new: nn.Module, after: bool) -> None:
    """Insert ``new`` next to ``anchor``: inside its nn.Sequential parent, else by wrapping it."""
    for name in path.names.get(id(anchor), []):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if isinstance(parent, nn.Sequential):
            layers = list(parent)
            at = layers.index(anchor) + (1 if after else 0)
            layers.insert(at, new)
            for key in list(parent._modules):
                del parent._modules[key]
            for i, layer in enumerate(layers):
                parent.add_module(str(i), layer)
        else:
            setattr(parent, child, nn.Sequential(anchor, new) if after else nn.Sequential(new, anchor))


def add_batch_norm(model: nn.Module, sample: Any = None) -> nn.Module:
    """Insert BatchNorm after each hidden Linear/Conv directly followed by an activation."""
    path = trace(model, sample)
    start = path.head_start if path.head_start is not None else len(path.calls)
    picks = []
    for i, call in enumerate(path.calls[:start]):
        norm = _NORMS.get(type(call.module))
        follows = path.calls[i + 1].module if i + 1 < len(path.calls) else None
        if norm and i + 1 < start and follows is not None and activation_problem(follows) is None:
            layer = call.module
            width = layer.out_features if isinstance(layer, nn.Linear) else cast(int, layer.out_channels)  # a conv
            picks.append((layer, norm(width)))
    if not picks:
        raise _unsupported("batch_norm", model, f"found no hidden Linear/Conv layer followed by an activation "
                           f"module (path: {path.describe()})")
    for layer, norm in picks:
        _insert(model, path, layer, norm, after=True)
    return model


def add_dropout(model: nn.Module, p: float, sample: Any = None) -> nn.Module:
    """Insert ``nn.Dropout(p)`` before each Linear on the path but the first weight layer."""
    path = trace(model, sample)
    first = next((c.module for c in path.calls if weight_layer(c.module)), None)
    changed = 0
    for i, call in enumerate(path.calls):
        if not isinstance(call.module, nn.Linear) or call.module is first:
            continue
        before = path.calls[i - 1].module if i else None
        if isinstance(before, nn.Dropout):
            before.p = float(p)  # already there: only the rate changes
        else:
            _insert(model, path, call.module, nn.Dropout(float(p)), after=False)
        changed += 1
    if not changed:
        raise _unsupported("dropout", model, f"found no hidden Linear layer (path: {path.describe()})")
    return model


def apply_architecture(model: nn.Module, knobs: dict[str, Any], sample: Any = None) -> nn.Module:
    """Operate on ``model`` for the knobs its factory did not take: the activations first (so
    batch norm sees the final ones), then the output, batch norm, dropout; each traces afresh.
    Randomness is not consumed (the new modules have no random state), so the weights of the
    untouched layers are those the factory drew."""
    with torch.random.fork_rng(devices=[]):
        if "activation" in knobs:
            model = swap_activations(model, knobs["activation"], knobs.get("activation_scope", "hidden"), sample)
        if knobs.get("output_activation"):
            model = set_output_activation(model, knobs["output_activation"], sample)
        if knobs.get("batch_norm"):
            model = add_batch_norm(model, sample)
        if knobs.get("dropout") is not None:
            model = add_dropout(model, knobs["dropout"], sample)
    return model
