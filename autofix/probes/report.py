"""An epoch's queued probe tensors -> the reported floats (one host transfer, then Python)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autofix.probes.stats import NAN, column_means, nan_max, nan_median, ratio, to_list

Samples = list[tuple[list[float], Any]]
"""One kind's records: (floats of one sampled step, its meta)."""


@dataclass
class Layout:
    """What a report needs to know about the model: parameters, layers, activation modules."""

    n_params: int
    layers: list[tuple[str, list[int]]]  # parameterised leaf modules: name, parameter indices
    acts: list[tuple[str, nn.Module, str]]  # hooked modules: name, module, "dead"/"saturated"
    keys: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = {prefix: [f"{prefix}/{name}" for name, _ in self.layers]
                     for prefix in ("grad_norm", "update_ratio")}


@dataclass
class Queue:
    """One epoch's raw device tensors. A record is (kind, float start, float count, int start,
    int count, meta); a sampled step only appends, :func:`report` syncs once."""

    floats: list[torch.Tensor] = field(default_factory=list)  # float32 scalars
    counts: list[torch.Tensor] = field(default_factory=list)  # int64 scalars (not mixed: a
    # mixed-dtype stack is ~4x slower)
    records: list[tuple[str, int, int, int, int, Any]] = field(default_factory=list)
    dead: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # act slot, activity

    def keep(self, kind: str, floats: Sequence[torch.Tensor],
             counts: Sequence[torch.Tensor] = (), meta: Any = None) -> None:
        """Queue one record."""
        self.records.append((kind, len(self.floats), len(floats), len(self.counts),
                             len(counts), meta))
        self.floats.extend(floats)
        self.counts.extend(counts)


def report(layout: Layout, queue: Queue, out: dict[str, float],
           guard: Callable[..., None]) -> None:
    """Add the metrics of ``queue`` to ``out``; each family under ``guard`` (skipped on error)."""
    values = to_list([queue.floats, queue.counts], [v for _, v in queue.dead])
    floats, counts = len(queue.floats), len(queue.counts)
    groups: dict[str, Samples] = {}
    for kind, f_start, f_len, c_start, c_len, meta in queue.records:
        row = values[f_start:f_start + f_len]
        if c_len:
            row += values[floats + c_start:floats + c_start + c_len]
        groups.setdefault(kind, []).append((row, meta))
    for kind, part in (("grad", grad_metrics), ("update", update_metrics)):
        if groups.get(kind) and layout.layers:
            guard(lambda part=part, kind=kind: out.update(part(layout, groups[kind])))
    if groups.get("input"):
        guard(lambda: out.update(input_metrics(groups["input"])))
    if groups.get("scale"):
        guard(lambda: out.update(scale_metrics(groups["scale"])))
    dead = [(slot, tensor.numel()) for slot, tensor in queue.dead]
    guard(lambda: out.update(act_metrics(layout, groups.get("saturated", []), dead,
                                         values[floats + counts:])))


def layer_norms(layout: Layout, values: Sequence[float]) -> list[float]:
    """Per-parameter norms -> per-layer norms, the global norm appended last."""
    squares = [n * n for n in values]
    layers = [math.sqrt(sum(squares[j] for j in idx)) for _, idx in layout.layers]
    return layers + [math.sqrt(sum(squares))]


def grad_metrics(layout: Layout, samples: Samples) -> dict[str, float]:
    """``grad_norm/<layer>``, first/last, their ratio and ``grad_zero_frac``."""
    per_sample, zero_fracs = [], []
    for row, (idx, size) in samples:
        values = [0.0] * layout.n_params  # a parameter without a gradient counts as zero
        for j, value in zip(idx, row, strict=False):  # row's tail: the zero counts
            values[j] = value
        per_sample.append(layer_norms(layout, values)[:-1])
        zero_fracs.append(1.0 - sum(row[len(idx):]) / size)
    layers = column_means(per_sample)
    out = dict(zip(layout.keys["grad_norm"], layers, strict=True))
    out.update(grad_norm_first=layers[0], grad_norm_last=layers[-1],
               grad_ratio=ratio(layers[0], layers[-1]),
               grad_zero_frac=sum(zero_fracs) / len(zero_fracs))
    return out


def update_metrics(layout: Layout, samples: Samples) -> dict[str, float]:
    """``update_ratio/<layer>`` = ||dw|| / ||w||, their max and median, and the global one."""
    count, per_sample = layout.n_params, []
    for row, _ in samples:
        delta, weight = layer_norms(layout, row[:count]), layer_norms(layout, row[count:])
        # No change is exactly 0.0 (a missing optimizer.step()); a zero-norm weight that
        # moved has no defined ratio: nan, not an inf that would swamp update_ratio_max.
        per_sample.append([0.0 if d == 0 else d / w if w > 0 else NAN
                           for d, w in zip(delta, weight, strict=True)])
    *layers, total = column_means(per_sample)
    out = dict(zip(layout.keys["update_ratio"], layers, strict=True))
    out.update(update_ratio_max=nan_max(layers), update_ratio_median=nan_median(layers),
               update_ratio_global=total)
    return out


def act_metrics(layout: Layout, saturated: Samples, dead: list[tuple[int, int]],
                activity: list[float]) -> dict[str, float]:
    """``dead_frac/<act>``, ``saturated_frac/<act>`` and their maxima.

    ``dead`` lists (activation slot, units) per hooked call, in the order of ``activity``.
    """
    fracs: dict[int, list[float]] = {}
    for (count,), (slot, total) in saturated:
        fracs.setdefault(slot, []).append(count / total if total else NAN)
    start = 0
    for slot, units in dead:
        chunk, start = activity[start:start + units], start + units
        fracs.setdefault(slot, []).append(len([v for v in chunk if v <= 0]) / len(chunk))
    out: dict[str, float] = {}
    for want, prefix in (("dead", "dead_frac"), ("saturated", "saturated_frac")):
        means = {name: sum(fracs[i]) / len(fracs[i])
                 for i, (name, _, kind) in enumerate(layout.acts) if kind == want and i in fracs}
        out.update({f"{prefix}/{name}": v for name, v in means.items()})
        if means:
            out[f"{prefix}_max"] = nan_max(list(means.values()))
    return out


def scale_metrics(samples: Samples) -> dict[str, float]:
    """``update_expected`` (lr x the optimizer's step scale) and ``update_resolution`` (float32
    spacing at the median |weight|), from ``stats.step_scale`` rows: means over the samples."""
    return {"update_expected": sum(r[0] for r, _ in samples) / len(samples),
            "update_resolution": sum(r[1] for r, _ in samples) / len(samples)}


def input_metrics(samples: Samples) -> dict[str, float]:
    """``input_mean`` / ``input_std`` / ``input_abs_max`` from ``stats.input_stats`` rows."""
    means, stds, peaks = [], [], []
    for (mean, spread, low, high), n in samples:
        means.append(mean)
        stds.append(spread / math.sqrt(max(1, n - 1)))
        peaks.append(max(abs(low), abs(high)))
    return {"input_mean": sum(means) / len(means), "input_std": sum(stds) / len(stds),
            "input_abs_max": sum(peaks) / len(peaks)}
