"""What a built model is made of, seen by running it: its forward path, its output head, its activations.

Surgery on a model autofix did not write cannot trust class names or registration order:

* **The path** is the order in which the model's *units* run in ``forward``: leaf modules, and
  parameter-free modules with children of their own that are not plain containers (a user's
  ``Swish`` holding an ``nn.Sigmoid`` is one unit: its inner sigmoid is part of its function).
  With an input batch the path is recorded by forward hooks on one real forward pass; without
  one it comes from ``torch.fx`` (symbolic tracing, no data), where that can trace the model.
* **The head** is the last *weight layer* on the path (a module holding a parameter of two or
  more dimensions: a Linear, a Conv, ...; a norm's 1-D scale does not make a layer) plus every
  unit after it: what turns features into what the loss reads. Hidden-layer surgery never
  touches it; only ``architecture.output_activation`` does.
* **An activation** is recognised by behaviour, not by a class list: a parameter-free module
  whose output has the input's shape, is deterministic, depends element by element on the
  input by one function (output i changes only when input i does; permuting the input permutes
  the output), and is not affine (so Identity, Dropout and Flatten in eval mode are not
  activations). It is tested once per module kind on a fixed grid of values in [-8, 8] with a
  private random generator, so the check consumes none of the model's randomness.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Call", "Path", "activation_problem", "nonfinite_metrics", "trace", "weight_layer"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_PROBE_SHAPE = (6, 9)
_PROBE_RANGE = 8.0  # tested inputs lie in [-8, 8]: wide enough to leave every linear piece
_VERDICTS: dict[tuple[type, str], str | None] = {}  # (type, extra_repr) -> why not an activation


@dataclass
class Call:
    """One unit run on the forward path: its qualified name, the module, and its output's health."""

    name: str
    module: nn.Module
    finite: bool = True
    nonfinite_frac: float = 0.0


@dataclass
class Path:
    """The traced forward path of a model and what it says about the model's parts."""

    calls: list[Call]
    tail_functional: bool = False
    """The model's output is not the last unit's output: a function inside ``forward`` follows."""
    names: dict[int, list[str]] = field(default_factory=dict)
    """id(module) -> every qualified name it is registered under (a shared module has several)."""

    @property
    def head_start(self) -> int | None:
        """Index of the last weight layer on the path (None: the path has no weight layer)."""
        return next((i for i in range(len(self.calls) - 1, -1, -1) if weight_layer(self.calls[i].module)), None)

    def head(self) -> list[Call]:
        """The output head: the last weight layer and every unit after it."""
        start = self.head_start
        return [] if start is None else self.calls[start:]

    def head_ids(self) -> set[int]:
        return {id(c.module) for c in self.head()}

    def hidden(self) -> list[Call]:
        """The calls between the first weight layer and the head."""
        start, first = self.head_start, next((i for i, c in enumerate(self.calls) if weight_layer(c.module)), None)
        return [] if start is None or first is None else self.calls[first + 1:start]

    def hidden_activations(self) -> tuple[list[Call], list[str]]:
        """The hidden activation calls that can be changed without touching the head, and why
        each other parameter-free hidden unit is not one of them (one line each)."""
        head, out, skipped = self.head_ids(), [], []
        for call in self.hidden():
            problem = activation_problem(call.module)
            if problem is not None:
                if problem != "has parameters":
                    skipped.append(f"'{call.name}' ({type(call.module).__name__}) {problem}")
                continue
            if id(call.module) in head:
                skipped.append(f"'{call.name}' ({type(call.module).__name__}) is also called in the output head")
            else:
                out.append(call)
        return out, skipped

    def describe(self, limit: int = 14) -> str:
        """The path in one line: ``0 Linear, 1 Exponential, ... | head: 8 Linear, 9 Sigmoid``."""
        start = self.head_start if self.head_start is not None else len(self.calls)
        parts = [f"{c.name or '<root>'} {type(c.module).__name__}" for c in self.calls]
        hidden, head = parts[:start], parts[start:]
        if len(hidden) > limit:
            hidden = hidden[:limit // 2] + [f"... ({len(hidden) - limit} more)"] + hidden[-limit // 2:]
        text = ", ".join(hidden) + (" | head: " + ", ".join(head) if head else "")
        return text + (" -> a function inside forward()" if self.tail_functional else "")


def weight_layer(module: nn.Module) -> bool:
    """A module holding a parameter of two or more dimensions (a weight matrix or kernel)."""
    return any(p.dim() >= 2 for p in module.parameters(recurse=False))


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules the path is traced in (see the module docstring), in registration order."""
    out: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module, root: bool) -> None:
        children = list(module.named_children())
        composite = not _has_params(module) and not isinstance(module, _CONTAINERS)
        if not children or (composite and not root):
            out.append((name, module))
            return
        for child, sub in children:
            visit(f"{name}.{child}" if name else child, sub, False)

    visit("", model, True)
    return out


def _registrations(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    return names


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def trace(model: nn.Module, x: Any = None) -> Path:
    """The forward path of ``model``: by hooks on a pass over the batch ``x``, else by ``torch.fx``.

    Raises:
        ValueError: the model cannot be traced (fx cannot follow its ``forward`` and no batch
            was given), with the reason.
    """
    units = _units(model)
    names = _registrations(model)
    if x is not None:
        return _hooked(model, units, x, names)
    return _symbolic(model, units, names)


def _hooked(model: nn.Module, units: list[tuple[str, nn.Module]], x: Any, names: dict[int, list[str]]) -> Path:
    calls: list[Call] = []
    outputs: list[Any] = []

    def hook(name: str):
        def record(module: nn.Module, _inputs: Any, out: Any) -> None:
            call = Call(name, module)
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                bad = ~torch.isfinite(out)
                call.finite = not bool(bad.any())
                call.nonfinite_frac = float(bad.float().mean()) if out.numel() else 0.0
            calls.append(call)
            outputs.append(out)
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in units]
    try:
        with _evaluating(model):
            result = model(x)
    finally:
        for handle in handles:
            handle.remove()
    last = outputs[-1] if outputs else None
    same = isinstance(last, torch.Tensor) and isinstance(result, torch.Tensor) and (
        last is result or (last.numel() == result.numel() and torch.equal(last.reshape(-1), result.reshape(-1))))
    return Path(calls, tail_functional=bool(calls) and not same, names=names)


def _symbolic(model: nn.Module, units: list[tuple[str, nn.Module]], names: dict[int, list[str]]) -> Path:
    import torch.fx

    ids = {id(m) for _, m in units}

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # fx's signature: qualname unused
            return id(m) in ids

    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds; all mean "cannot trace"
        raise ValueError(f"cannot trace the forward pass of {type(model).__name__} without an input batch "
                         f"(torch.fx: {type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    calls = [Call(str(n.target), model.get_submodule(str(n.target))) for n in graph.nodes if n.op == "call_module"]
    output = next(n for n in graph.nodes if n.op == "output")
    returned = output.args[0]
    tail = not (isinstance(returned, torch.fx.Node) and returned.op == "call_module"
                and calls and str(returned.target) == calls[-1].name)
    return Path(calls, tail_functional=bool(calls) and tail, names=names)


def activation_problem(module: nn.Module) -> str | None:
    """None when ``module`` behaves as an activation (see the module docstring); else why not."""
    key = (type(module), module.extra_repr())
    if key not in _VERDICTS:
        _VERDICTS[key] = _judge(module)
    return _VERDICTS[key]


def _judge(module: nn.Module) -> str | None:
    if _has_params(module):
        return "has parameters"
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(_PROBE_SHAPE, generator=gen) * 2 - 1) * _PROBE_RANGE
    mode = module.training
    module.eval()
    try:
        with torch.no_grad():
            y = module(x)
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                return "changes the shape of its input"
            if not _same(module(x), y):
                return "is not deterministic"
            perm = torch.randperm(x.numel(), generator=gen)
            permuted = module(x.reshape(-1)[perm].reshape(x.shape))
            nudged = x.clone()
            nudged[0, 0] += 1.0
            moved = ~torch.isclose(module(nudged), y, rtol=1e-5, atol=1e-7, equal_nan=True)
            moved[0, 0] = False
            if not _same(permuted.reshape(-1), y.reshape(-1)[perm]) or bool(moved.any()):
                return "is not elementwise (an output depends on other inputs)"
            mid = module((x + x.flip(0)) / 2)
            if _same(mid, (y + y.flip(0)) / 2):
                return "is affine (identity or scaling)"
    except Exception as exc:  # noqa: BLE001 - a module that cannot take a 2-D batch is no activation
        return f"raised {type(exc).__name__} on a test batch"
    finally:
        module.train(mode)
    return None


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True))


def nonfinite_metrics(model: nn.Module, x: Any) -> dict[str, float]:
    """Which unit first outputs a non-finite value on the batch ``x`` (epoch 0: before any step).

    ``nonfinite_output_index`` (its place on the path, from 0), ``nonfinite_output/<name>`` (the
    share of its outputs that are NaN/Inf), ``nonfinite_module/<class>`` = 1 and
    ``nonfinite_output_activation`` (1 when it is an activation, by behaviour); ``{}`` when every
    unit's output is finite or the path cannot be traced.
    """
    try:
        path = trace(model, x)
    except Exception:  # noqa: BLE001 - a probe never takes training down; the loss still says NaN
        return {}
    for index, call in enumerate(path.calls):
        if not call.finite:
            return {"nonfinite_output_index": float(index), f"nonfinite_output/{call.name}": call.nonfinite_frac,
                    f"nonfinite_module/{type(call.module).__name__}": 1.0,
                    "nonfinite_output_activation": float(activation_problem(call.module) is None)}
    return {}
