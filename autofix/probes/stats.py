"""Tensor kernels and float reductions behind :class:`autofix.probes.Probe` (no probe state).

The kernels batch work into as few torch calls as they can: on small models a sampled step costs
its number of torch calls, not its arithmetic (and runs cold, after many training steps: ~20 us a
kernel on a CPU, 3-5x its cost in a tight loop). Also the float helpers of the report and the
label statistics.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

DEFAULT_EVERY_STEPS = 20
"""Sample one step in 20 (AUTOTRAINER reports ~1% overhead for its checker); the overhead
budget (``Probe(max_overhead=0.01)``) thins sampling further where one sample is too dear."""
SATURATION_THRESHOLD = 5.0
"""A sigmoid/tanh unit is saturated when its |pre-activation| > 5 (DeepDiagnosis, ICSE 2022)."""
NAN = float("nan")
_DEAD_KINDS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU)
_SATURATING_KINDS = (nn.Tanh, nn.Sigmoid)


def activation_kind(module: nn.Module) -> str | None:
    """"dead" for ReLU-like modules, "saturated" for tanh/sigmoid, else None (not hooked)."""
    if isinstance(module, _DEAD_KINDS) or "ReLU" in type(module).__name__:
        return "dead"
    return "saturated" if isinstance(module, _SATURATING_KINDS) else None


def norms(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """float32 L2 norm of each tensor in one fused foreach kernel."""
    try:
        return list(torch._foreach_norm(tensors, 2.0, dtype=torch.float32))  # type: ignore[arg-type]  # any sequence works
    except (AttributeError, RuntimeError, TypeError):  # old torch, mixed devices
        return [torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]


def to_list(scalars: list[list[torch.Tensor]], vectors: list[torch.Tensor]) -> list[float]:
    """Groups of 0-d tensors, then 1-D tensors, as one list: a single device-to-host transfer.

    On the CPU there is no transfer to save: reading each tensor costs half of stacking them
    all (a sampled epoch's report runs cold, after many training steps, ~20 us per kernel).
    """
    if all(t.is_cpu for group in scalars for t in group) and all(v.is_cpu for v in vectors):
        out = [t.item() for group in scalars for t in group]
        for vector in vectors:
            out += vector.tolist()
        return out
    try:
        parts = [torch.stack(group) for group in scalars if group] + vectors
        if len(parts) == 1:
            return parts[0].tolist()
        return torch.cat(parts).tolist() if parts else []
    except RuntimeError:  # tensors on several devices (or dtypes)
        device = next(t.device for t in [*itertools.chain.from_iterable(scalars), *vectors])
        parts = [torch.stack([t.to(device) for t in group]) for group in scalars if group]
        return torch.cat(parts + [v.to(device, torch.float32) for v in vectors]).tolist()


def input_stats(x: torch.Tensor) -> list[torch.Tensor]:
    """mean, ||x - mean||, min, max of a batch as 0-d float32 tensors (four kernels).

    ||x - mean|| is one fused kernel: two-pass accurate, ~4x cheaper than ``x.std()`` and, on
    large batches, than Welford's ``std_mean``.
    """
    flat = x.float()
    mean = flat.mean()
    return [mean, torch.dist(flat, mean), *torch.aminmax(flat)]


def unit_activity(out: torch.Tensor, nonnegative: bool) -> torch.Tensor:
    """Per unit (dim 1: conv channel or linear feature) a value that is <= 0 iff the unit is dead.

    The peak of a linear feature; for a conv channel the sum of its positive part (just the sum
    after a ReLU), which is 0 exactly when the peak is <= 0: CPU amax over the batch and spatial
    dims is up to ~20x slower than a sum (measured 1-20x, contiguous or channels-last).
    """
    if out.dim() < 2:
        return out.amax().reshape(1)
    if out.dim() == 2:
        return out.amax(dim=0)
    dims = [0, *range(2, out.dim())]
    return (out if nonnegative else out.clamp_min(0)).sum(dim=dims)


FLOAT32_EPS = float(torch.finfo(torch.float32).eps)  # 2**-23: relative spacing of float32 values
_ADAPTIVE = frozenset({"Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam",
                       "RMSprop", "SparseAdam"})
_MEDIAN_SAMPLE = 65_536  # elements a median is taken over (evenly strided): bounded cost


def _strided_abs(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    total = sum(t.numel() for t in tensors)
    stride = max(1, total // _MEDIAN_SAMPLE)
    return torch.cat([t.detach().reshape(-1)[::stride].abs().float() for t in tensors])


def step_scale(optimizer: Any, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``[expected step, resolution]`` of one optimizer step, per parameter element.

    The expected step is lr for an adaptive optimizer (Adam & co. normalise the gradient, so an
    element moves by about lr) and lr x median |gradient| for SGD-like ones; the resolution is
    float32's relative spacing times the median |weight|: an update below it rounds away to an
    exact zero, which is no bug (a learning rate decayed to ~1e-9 does it).
    """
    weights = [p for p in params if p.numel()]
    if not weights or not getattr(optimizer, "param_groups", None):
        return []
    lr = float(optimizer.param_groups[0].get("lr", 0.0))
    resolution = _strided_abs(weights).median() * FLOAT32_EPS
    if type(optimizer).__name__ in _ADAPTIVE:
        return [torch.tensor(lr, dtype=torch.float32), resolution]
    grads = [p.grad for p in weights if p.grad is not None and p.grad.numel()]
    if not grads:
        return []
    return [_strided_abs(grads).median() * lr, resolution]


def ratio(first: float, last: float) -> float:
    """first/last without ZeroDivisionError: 0/0 is nan, x/0 is inf (AUTOTRAINER's ratio)."""
    if last == 0:
        return NAN if first == 0 else float("inf")
    return first / last


def nan_max(values: Sequence[float]) -> float:
    """max over the non-NaN values; NaN when there are none."""
    finite = [v for v in values if v == v]
    return max(finite) if finite else NAN


def nan_median(values: Sequence[float]) -> float:
    """median over the non-NaN values; NaN when there are none."""
    finite = sorted(v for v in values if v == v)
    if not finite:
        return NAN
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def column_means(rows: Sequence[Sequence[float]]) -> list[float]:
    """Per-column mean of equally long rows."""
    if len(rows) == 1:
        return list(rows[0])
    return [sum(col) / len(col) for col in zip(*rows, strict=True)]


def class_ids(values: Any) -> np.ndarray | None:
    """``values`` as a flat integer array, or None when they are not class ids."""
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        return None  # float targets are regression (or probabilities): no class statistics
    return arr.reshape(-1)


def label_metrics(labels: Any) -> dict[str, float]:
    """``label_frac_max`` (largest class share) and ``label_classes``; ``{}`` unless class ids."""
    ids = class_ids(labels)
    if ids is None:
        return {}
    counts = np.unique(ids, return_counts=True)[1]
    return {"label_frac_max": float(counts.max() / ids.size), "label_classes": float(counts.size)}
