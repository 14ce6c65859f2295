"""Training-step overhead of autofix.probes in the managed harness (a script, not a test).

For each config it builds two identical harness trainers, probes disabled and probes at
``--every-steps``, and times single training epochs with ``time.perf_counter`` around
``train_epoch`` only (no evaluation, no checkpointing; the probe's epoch_metrics is inside),
alternating the trainers epoch by epoch until ``--seconds`` have passed, so machine noise hits
both alike. Per-step time is an epoch's time over its step count (median over epochs). The
overhead is the median of the paired (back-to-back epochs) ratios on/off - 1 with a bootstrap
95% interval; ``probe self`` is the time spent inside the probe's own calls and hooks (a
lower-noise lower bound, relative to the rest of the step); ``K<=1%`` is the sampling interval
at which that cost per sample (epoch-end report included) is 1% of a step. Probes draw no
random numbers, so both trainers follow the same trajectory and do the same work.

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

from autofix.harness.builders import normalize_config  # noqa: E402
from autofix.harness.loop import _Trainer  # noqa: E402  (private: times train_epoch alone)

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


def _trainer(cfg: dict[str, Any], enabled: bool, every: int) -> _Trainer:
    torch.manual_seed(0)
    trainer = _Trainer(normalize_config({**cfg, "probes": {"enabled": enabled,
                                                            "every_steps": every}}))
    trainer.train_epoch(0)  # warm-up: allocator, kernels, probe buffers
    return trainer


class SelfTimer:
    """Wraps a probe's methods and hooks to sum the time spent inside the probe itself.

    Lower-noise than the end-to-end difference, but blind to indirect costs (the hooked
    modules' slower call path, cache pollution), so both are reported.
    """

    def __init__(self, probe: Any) -> None:
        self.seconds, self.samples = 0.0, 0
        for name in ("before_step", "after_backward", "after_step", "epoch_metrics"):
            setattr(probe, name, self._wrap(getattr(probe, name), name == "before_step"))
        probe._hooks = [self._wrap(hook) for hook in probe._hooks]

    def _wrap(self, fn: Any, counts: bool = False) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            self.seconds += time.perf_counter() - start
            self.samples += bool(counts and result)
            return result
        return timed


def _epoch_time(trainer: _Trainer, epoch: int) -> float:
    start = time.perf_counter()
    trainer.train_epoch(epoch)  # includes probe.epoch_metrics(): part of the probe's cost
    return time.perf_counter() - start


def _median_ci(ratios: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Median of ``ratios`` with a 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratios, size=(2000, len(ratios))), axis=1)
    return float(np.median(ratios)), float(np.quantile(boots, 0.025)), float(
        np.quantile(boots, 0.975))


def measure(name: str, cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Epoch-by-epoch interleaved off / on / every-step trainers; paired overheads."""
    modes = {"off": (False, args.every_steps), "on": (True, args.every_steps)}
    trainers = {mode: _trainer(cfg, *spec) for mode, spec in modes.items()}
    timer = SelfTimer(trainers["on"].probe)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    order, deadline, rep = list(modes), time.perf_counter() + args.seconds, 0
    while rep < args.min_repeats or time.perf_counter() < deadline:
        rep += 1
        for mode in order if rep % 2 else order[::-1]:  # alternate who runs first
            times[mode].append(_epoch_time(trainers[mode], rep))
    steps = trainers["on"].probe.steps_per_epoch or 1
    step_ms = {mode: 1e3 * statistics.median(v) / steps for mode, v in times.items()}
    overhead = _median_ci([100 * (a / b - 1) for a, b in zip(times["on"], times["off"])])
    self_pct = 100 * timer.seconds / (sum(times["on"]) - timer.seconds)
    # a sample's share of the probe's time, its epoch-end report included
    sample_ms = 1e3 * timer.seconds / max(1, timer.samples)
    k_min = math.ceil(100 * sample_ms / step_ms["off"])  # one sample per K steps costs 1/K
    return {
        "config": name, "steps_per_epoch": steps, "repeats": rep,
        "samples_per_epoch": timer.samples / rep, "probe_ms_per_epoch": 1e3 * timer.seconds / rep,
        "step_ms_off": step_ms["off"], "step_ms_on": step_ms["on"],
        "overhead_pct": overhead[0], "overhead_ci95_pct": overhead[1:],
        "probe_self_pct": self_pct, "sampled_step_ms": sample_ms,
        "every_steps_for_1pct": k_min, "one_pct_reachable": k_min <= steps,
        "noise_pct": 100 * statistics.pstdev(times["off"]) / statistics.mean(times["off"]),
        "epoch_ms": {m: [1e3 * t for t in v] for m, v in times.items()},
    }


def _table(rows: list[dict[str, Any]], every: int) -> str:
    head = (f"{'config':28} {'steps/ep':>8} {'samples/ep':>10} {'off ms/step':>11} "
            f"{'on ms/step':>10} {'overhead [95% CI]':>22} {'probe self':>10} "
            f"{'probe ms/ep':>11} {'K<=1%':>6}")
    lines = [f"probes every_steps={every} (overhead: median of paired epoch ratios on/off - 1)",
             head, "-" * len(head)]
    for r in rows:
        low, high = r["overhead_ci95_pct"]
        ci = f"{r['overhead_pct']:+.2f}% [{low:+.2f},{high:+.2f}]"
        lines.append(
            f"{r['config']:28} {r['steps_per_epoch']:>8} {r['samples_per_epoch']:>10.2f} "
            f"{r['step_ms_off']:>11.3f} {r['step_ms_on']:>10.3f} {ci:>22} "
            f"{r['probe_self_pct']:>9.2f}% {r['probe_ms_per_epoch']:>11.3f} "
            f"{r['every_steps_for_1pct']:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run every config, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="timing budget per config")
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
                   "every_steps": args.every_steps, "seconds": args.seconds, "rows": rows},
                  fh, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
