"""Training-step overhead of autofix.probes in the managed harness (a script, not a test).

For each config it builds three identical harness trainers: probes disabled (``off``), probes
at ``--every-steps`` with the default overhead budget (``budget``: ``max_overhead=0.01``), and
the same without a budget (``no budget``: ``max_overhead=None``, every epoch sampled). After
``WINDOW + 1`` untimed warm-up epochs each (allocator, kernels, probe buffers, and the budget's
cost window: the steady state is measured), it times single training epochs with
``time.perf_counter`` around ``train_epoch`` only (no evaluation, no checkpointing; the probe's
epoch_metrics is inside), rotating the trainers epoch by epoch until ``--seconds`` have passed,
so machine noise hits all alike. Per-step time is an epoch's time over its step count (median
over epochs).

The overhead of a mode is estimated from the paired (same round) ratios on/off - 1. With the
budget, only one epoch in k may take samples, so the ratios are bimodal and their median would
be the unsampled epochs' alone: the estimate is stratified, the median ratio of the sampled
epochs and of the unsampled ones weighted by their shares (the plain median when every epoch is
sampled), with a 95% bootstrap interval (pairs resampled within each stratum). ``probe self``
is the probe's own accounting (``Probe.overhead``: its timed work over the training time it
measured; blind to indirect costs such as cache pollution and to the ~0.2 us calls of an
unsampled step). The JSON also has ``overhead_total_pct``, total time on / off - 1 over all
rounds: unbiased but at the mercy of every noisy epoch. ``K<=1%`` is the sampling interval at which
the no-budget probe's cost per sample (epoch-end report included) is 1% of a step. Probes draw no random numbers, so all
trainers follow the same trajectory and do the same work.

    .venv/bin/python benchmarks/probe_overhead.py            # writes benchmarks/results/...json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autofix.harness.builders import normalize_config
from autofix.harness.loop import _Trainer
from autofix.probes.budget import WINDOW

MODELS = "autofix.harness.models"
CONFIGS: dict[str, dict[str, Any]] = {
    # examples/digits_healthy.yaml
    "small_cnn/digits/b64": {
        "model": {"factory": f"{MODELS}:small_cnn", "args": {"num_classes": 10}},
        "data": {"factory": "digits"}, "optimizer": {"name": "adam", "lr": 1e-3},
        "batch_size": 64,
    },
    # examples/seed_simplecnn.yaml, with a learning rate that does not diverge: a NaN step is
    # skipped by the harness, which would time a cheaper loop
    "simple_cnn/fake3x32x32/b32": {
        "model": {"factory": f"{MODELS}:simple_cnn", "args": {"num_classes": 10}},
        "data": {"factory": "fake", "args": {"size": 600}},
        "optimizer": {"name": "sgd", "lr": 0.01, "kwargs": {"momentum": 0.9}}, "batch_size": 32,
    },
    # examples/custom_trainable/train.py's MLP and data, run by the harness
    "mlp/make_classification/b32": {
        "model": {"factory": f"{MODELS}:mlp",
                  "args": {"in_features": 20, "num_classes": 3, "hidden": [64]}},
        "data": {"factory": "classification",
                 "args": {"n_samples": 1200, "n_features": 20, "n_informative": 8,
                          "n_classes": 3}, "val_fraction": 0.25},
        "optimizer": {"name": "sgd", "lr": 0.05, "kwargs": {"momentum": 0.9}}, "batch_size": 32,
    },
}
# mode -> (probes enabled, the probe's max_overhead); the harness builds the default budget
MODES: dict[str, tuple[bool, float | None]] = {
    "off": (False, None), "budget": (True, 0.01), "no_budget": (True, None)}
PROBED = [m for m, (enabled, _) in MODES.items() if enabled]


def _trainer(cfg: dict[str, Any], enabled: bool, every: int,
             max_overhead: float | None) -> _Trainer:
    torch.manual_seed(0)
    trainer = _Trainer(normalize_config({**cfg, "probes": {"enabled": enabled,
                                                            "every_steps": every}}))
    trainer.probe.budget.max_overhead = max_overhead  # the harness has no knob for it
    # warm-up: allocator, kernels, probe buffers, and the budget's first full cost window
    for epoch in range(WINDOW + 1):
        trainer.train_epoch(epoch)
    return trainer


def _epoch(trainer: _Trainer, epoch: int) -> tuple[float, bool]:
    """Seconds of one training epoch, and whether the probe sampled in it."""
    start = time.perf_counter()
    metrics = trainer.train_epoch(epoch)  # includes probe.epoch_metrics(): part of its cost
    return time.perf_counter() - start, metrics.get("probe_age") == 0.0


def _median_ci(ratios: list[float], sampled: list[bool], seed: int = 0,
               ) -> tuple[float, float, float]:
    """Stratified median of ``ratios`` (sampled / unsampled epochs) with a 95% bootstrap CI."""
    rng = np.random.default_rng(seed)
    strata = [np.array([r for r, s in zip(ratios, sampled, strict=False) if s == want]) for want in (True, False)]
    strata = [s for s in strata if s.size]
    weights = [s.size / len(ratios) for s in strata]
    point = sum(w * float(np.median(s)) for w, s in zip(weights, strata, strict=False))
    boots = sum(w * np.median(rng.choice(s, size=(2000, s.size)), axis=1)
                for w, s in zip(weights, strata, strict=False))
    return point, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def measure(name: str, cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Epoch-by-epoch rotated off / budget / no-budget trainers; paired overheads."""
    trainers = {mode: _trainer(cfg, enabled, args.every_steps, budget)
                for mode, (enabled, budget) in MODES.items()}
    probes = {mode: trainers[mode].probe for mode in PROBED}
    before = {mode: (p.budget.probe_seconds, p.budget.train_seconds, p.budget.total_samples)
              for mode, p in probes.items()}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    sampled: dict[str, list[bool]] = {mode: [] for mode in MODES}
    order, deadline, rep = list(MODES), time.perf_counter() + args.seconds, 0
    while rep < args.min_repeats or time.perf_counter() < deadline:
        shift = rep % len(order)  # rotate who runs first
        rep += 1
        for mode in order[shift:] + order[:shift]:
            seconds, fresh = _epoch(trainers[mode], WINDOW + rep)
            times[mode].append(seconds)
            sampled[mode].append(fresh)
    steps = trainers["off"].probe.steps_per_epoch or 1
    row: dict[str, Any] = {"config": name, "steps_per_epoch": steps, "repeats": rep,
                           "step_ms_off": 1e3 * statistics.median(times["off"]) / steps}
    for mode, probe in probes.items():
        probe_s, train_s, samples = (now - then for now, then in zip(
            (probe.budget.probe_seconds, probe.budget.train_seconds,
             probe.budget.total_samples), before[mode], strict=False))
        ratios = [100 * (a / b - 1) for a, b in zip(times[mode], times["off"], strict=False)]
        overhead = _median_ci(ratios, sampled[mode])
        row[mode] = {
            "step_ms": 1e3 * statistics.median(times[mode]) / steps,
            "overhead_pct": overhead[0], "overhead_ci95_pct": list(overhead[1:]),
            "overhead_total_pct": 100 * (sum(times[mode]) / sum(times["off"]) - 1),
            "probe_self_pct": 100 * probe_s / train_s,
            "sampled_epoch_frac": sum(sampled[mode]) / rep,
            "samples_per_epoch": samples / rep, "probe_ms_per_epoch": 1e3 * probe_s / rep,
        }
    none = row["no_budget"]
    sample_ms = none["probe_ms_per_epoch"] / max(1e-9, none["samples_per_epoch"])
    row["sampled_step_ms"] = sample_ms  # a sample's share of the probe's time, report included
    row["every_steps_for_1pct"] = math.ceil(100 * sample_ms / row["step_ms_off"])
    row["noise_pct"] = 100 * statistics.pstdev(times["off"]) / statistics.mean(times["off"])
    row["epoch_ms"] = {m: [round(1e3 * t, 4) for t in v] for m, v in times.items()}
    row["budget_sampled"] = sampled["budget"]
    return row


def _ci(r: dict[str, Any]) -> str:
    low, high = r["overhead_ci95_pct"]
    return f"{r['overhead_pct']:+.2f}% [{low:+.2f},{high:+.2f}]"


def _table(rows: list[dict[str, Any]], every: int) -> str:
    head = (f"{'config':28} {'steps/ep':>8} {'off ms/step':>11} | {'budget overhead [95% CI]':>24} "
            f"{'sampled ep':>10} {'self':>6} | {'no budget overhead [95% CI]':>27} "
            f"{'self':>6} {'K<=1%':>6}")
    lines = [f"probes every_steps={every}; budget = max_overhead 0.01 (the default), no budget ="
             " max_overhead None;", "overhead: stratified median of paired epoch ratios on/off"
             " - 1; self: the probe's own timed share of training time", head, "-" * len(head)]
    for r in rows:
        b, n = r["budget"], r["no_budget"]
        lines.append(
            f"{r['config']:28} {r['steps_per_epoch']:>8} {r['step_ms_off']:>11.3f} | "
            f"{_ci(b):>24} {b['sampled_epoch_frac']:>10.2f} {b['probe_self_pct']:>5.2f}% | "
            f"{_ci(n):>27} {n['probe_self_pct']:>5.2f}% {r['every_steps_for_1pct']:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run every config, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45, help="timing budget per config")
    parser.add_argument("--min-repeats", type=int, default=20, help="epochs per mode, at least")
    parser.add_argument("--every-steps", type=int, default=20)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "probe_overhead.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as run_training does
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable)] + sys.argv)
    rows = [measure(name, CONFIGS[name], args) for name in args.configs]
    print(_table(rows, args.every_steps))
    print(f"\ncommand: {command}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"command": command, "torch": torch.__version__, "threads": 1,
                   "every_steps": args.every_steps, "seconds": args.seconds,
                   "budget_window": WINDOW, "rows": rows}, fh, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
