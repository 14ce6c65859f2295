"""The ``init`` knob: re-initialise the weights of matching layers after the model is built.

Schemes (``torch.nn.init``, https://pytorch.org/docs/stable/nn.init.html), bias set to zero:

* kaiming: ``kaiming_normal_(w, nonlinearity="relu")`` (He et al. 2015, arXiv:1502.01852),
  for ReLU nets;
* xavier: ``xavier_uniform_(w)`` (Glorot & Bengio 2010), for tanh/sigmoid nets;
* orthogonal: ``orthogonal_(w)`` (Saxe et al. 2013, arXiv:1312.6120);
* lecun_normal: Keras' ``lecun_normal``, ``VarianceScaling(1, "fan_in", "truncated_normal")``: a
  normal cut at +-2 sigma with sigma = sqrt(1 / fan_in) / 0.87962566103423978 (the std of a unit
  normal truncated at +-2), so the weights have std sqrt(1 / fan_in) (Keras 2.x
  ``initializers``); the initialisation SELU's self-normalisation assumes (Klambauer et al.
  2017, arXiv:1706.02515);
* default: the layer's own ``reset_parameters()`` (PyTorch's initialisation, bias included),
  which undoes a custom initialisation such as a too-large std.

A module matches when its class name is in ``types`` and, if ``pattern`` is set,
``re.search(pattern, qualified_name)`` finds it (names as in ``model.named_modules()``). This
runs after any architecture surgery, so names are those the probes reported for the run. The
modules of the output head (the last weight layer on the forward path and what follows it,
:mod:`autofix.harness.anatomy`) keep their weights unless ``head: true`` asks for them too: a
hidden-layer remedy does not redraw the layer that turns features into what the loss reads.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from autofix.spec.catalogue import INIT_SCHEMES

__all__ = ["SCHEMES", "matching_modules", "reinitialize"]

SCHEMES = INIT_SCHEMES  # declared once in autofix.spec.catalogue (the spec and actions take the same list)
_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated at +-2 (Keras VarianceScaling)
_MAX_LISTED = 40  # modules named in the no-match error; a big model would flood the message


def matching_modules(model: nn.Module, types: list[str], pattern: str | None,
                     exclude: set[int] | None = None) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` pairs whose class name is in ``types`` and name matches ``pattern``,
    less the modules whose ``id`` is in ``exclude``."""
    regex = re.compile(pattern) if pattern else None
    skip = exclude or set()
    return [(name, m) for name, m in model.named_modules()
            if type(m).__name__ in types and (regex is None or regex.search(name)) and id(m) not in skip]


def _no_match(model: nn.Module, types: list[str], pattern: str | None, head: set[int]) -> ValueError:
    listed = [f"{name or '<root>'} ({type(m).__name__}{', output head' if id(m) in head else ''})"
              for name, m in model.named_modules()]
    more = f", ... ({len(listed) - _MAX_LISTED} more)" if len(listed) > _MAX_LISTED else ""
    where = f" and pattern {pattern!r}" if pattern else ""
    kept = " outside the output head (head: true includes it)" if head else ""
    return ValueError(f"init matched no module with types {types}{where}{kept}; the model has: "
                      + ", ".join(listed[:_MAX_LISTED]) + more)


def _init_weight(name: str, module: nn.Module, scheme: str) -> None:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        raise ValueError(f"init scheme {scheme!r} needs a weight matrix; module {name!r} "
                         f"({type(module).__name__}) has none: use scheme 'default' or other types")
    if scheme == "kaiming":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    elif scheme == "xavier":
        nn.init.xavier_uniform_(weight)
    elif scheme == "lecun_normal":
        fan_in = weight[0].numel()  # inputs x kernel size, as torch's and Keras' fan_in
        sigma = (1.0 / fan_in) ** 0.5 / _TRUNCATED_STD
        nn.init.trunc_normal_(weight, 0.0, sigma, -2 * sigma, 2 * sigma)
    else:
        nn.init.orthogonal_(weight)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        nn.init.zeros_(bias)


def reinitialize(model: nn.Module, spec: dict[str, Any], head: set[int] | None = None) -> list[str]:
    """Re-initialise the modules ``spec`` (``{scheme, pattern, types, head}``) selects; their names.

    ``head``: ids of the output head's modules (:meth:`autofix.harness.anatomy.Path.head_ids`),
    left alone unless ``spec["head"]``.

    Raises:
        ValueError: an unknown scheme, no matching module (the message lists those that
            exist), or a weight-matrix scheme on a module without one.
    """
    scheme = spec.get("scheme") or "kaiming"
    if scheme not in SCHEMES:
        raise ValueError(f"init scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    types = list(spec.get("types") or ["Conv1d", "Conv2d", "Linear"])
    pattern = spec.get("pattern")
    exclude = set() if spec.get("head") else (head or set())
    chosen = matching_modules(model, types, pattern, exclude)
    if not chosen:
        raise _no_match(model, types, pattern, exclude)
    with torch.no_grad():
        for name, module in chosen:
            if scheme == "default":
                reset = getattr(module, "reset_parameters", None)
                if not callable(reset):
                    raise ValueError(f"init scheme 'default': module {name!r} "
                                     f"({type(module).__name__}) has no reset_parameters()")
                reset()
            else:
                _init_weight(name, module, scheme)
    return [name for name, _ in chosen]
