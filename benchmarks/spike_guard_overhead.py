"""Training-step overhead of the spike guard (``training.spike_guard``) in the managed harness
(a script, not a test).

Builds two identical harness trainers, guard off and guard on (its defaults: the spike rule
judged every step, a snapshot of model and optimizer every 50 steps, a ring of 2), runs one
untimed warm-up epoch each, then times single training epochs (``time.perf_counter`` around
``train_epoch`` only) rotating the two until ``--seconds`` have passed, so machine noise hits
both alike. The overhead is the median of the paired (same round) ratios on/off - 1; times the
step it is the guard's own cost a step, and a hundred times that the step from which the 1%
budget holds. No spike
happens on these clean runs: this is the price of watching, not of rewinding. Then, where the
time goes: the guard's calls timed one by one inside the training loop (40 epochs), and the same
calls back to back outside it.

    .venv/bin/python benchmarks/spike_guard_overhead.py     # writes benchmarks/results/spike_guard_overhead.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autofix.harness.builders import normalize_config  # noqa: E402
from autofix.harness.checkpoint import prepare  # noqa: E402
from autofix.harness.loop import _Trainer, attach_guard  # noqa: E402

CONFIGS = {
    "digits small_cnn, batch 64": {
        "model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
        "data": {"factory": "digits", "args": {}}, "optimizer": {"name": "adam", "lr": 1e-3}, "batch_size": 64},
    "digits mlp 256x256, batch 16": {
        "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 64, "num_classes": 10,
                                                                    "hidden": [256, 256]}},
        "data": {"factory": "digits", "args": {"flatten": True}}, "optimizer": {"name": "sgd", "lr": 0.01},
        "batch_size": 16},
}


def _trainer(cfg: dict[str, Any], guard: bool) -> _Trainer:
    cfg = normalize_config({**cfg, "epochs": 1000, "seed": 0, "probes": {"enabled": False}})
    torch.manual_seed(0)
    trainer = _Trainer(cfg)
    prepare(trainer, None)
    if guard:
        trainer.cfg["spike_guard"] = {"enabled": True}  # the shipped loss-spike-rewind answers
        attach_guard(trainer)
    return trainer


def measure(cfg: dict[str, Any], seconds: float) -> dict[str, Any]:
    torch.set_num_threads(1)
    off, on = _trainer(cfg, False), _trainer(cfg, True)
    for trainer in (off, on):
        trainer.train_epoch(1)  # warm-up: allocator, kernels
    ratios, times = [], {"off": [], "on": []}
    epoch, end = 2, time.monotonic() + seconds
    while time.monotonic() < end:
        took = {}
        for name, trainer in (("off", off), ("on", on)) if epoch % 2 else (("on", on), ("off", off)):
            began = time.perf_counter()
            trainer.train_epoch(epoch)
            took[name] = (time.perf_counter() - began) / trainer.steps_per_epoch
            times[name].append(took[name])
        ratios.append(took["on"] / took["off"])
        epoch += 1
    overhead = statistics.median(ratios) - 1
    step_ms = 1e3 * statistics.median(times["off"])
    # the guard's own cost a step, and the step time from which it stays within the 1% budget
    cost_us = overhead * step_ms * 1e3
    return {"rounds": len(ratios), "steps_per_epoch": off.steps_per_epoch,
            "step_ms_off": step_ms, "step_ms_on": 1e3 * statistics.median(times["on"]),
            "overhead_pct": 100 * overhead, "cost_us": cost_us, "one_percent_from_ms": cost_us / 10,
            "rewinds": on.guard.metrics()["rewinds"]}


class _Timed:
    """Stands where the loop keeps its guard: the guard's own calls, each timed (ns, summed)."""

    def __init__(self, guard: Any) -> None:
        self.guard, self.ns = guard, {"spiked": 0, "stepped": 0}
        if guard.judges_norms:  # else the loop leaves grad_spiked out, as it does here
            self.ns["grad_spiked"] = 0

    def _timed(self, name: str, *args: Any) -> Any:
        began = time.perf_counter_ns()
        out = getattr(self.guard, name)(*args)
        self.ns[name] += time.perf_counter_ns() - began
        return out

    def spiked(self, loss: float) -> Any:
        return self._timed("spiked", loss)

    def grad_spiked(self, norm: float) -> Any:
        return self._timed("grad_spiked", norm)

    def stepped(self, loss: float, norm: float | None = None, batch: Any = None) -> None:
        self._timed("stepped", loss, norm, batch)

    def metrics(self) -> dict[str, float]:
        return self.guard.metrics()

    @property
    def judges_norms(self) -> bool:
        return bool(self.guard.judges_norms)


def split(cfg: dict[str, Any], epochs: int = 40) -> dict[str, float]:
    """Where the guard's time goes: us per step of each of its calls inside the training loop,
    and of the same calls back to back outside it (the same guard, on the losses it saw)."""
    trainer = _trainer(cfg, True)
    timed = _Timed(trainer.guard)
    trainer.guard = timed  # type: ignore[assignment]
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(epoch)
    steps = timed.guard.step
    out = {f"in_loop_{name}_us": ns / steps / 1e3 for name, ns in timed.ns.items()}
    guard, batch = timed.guard, next(iter(trainer.train.epoch(1)))
    # a loss the run's window holds (a fixed 1.0 would be a spike for a converged model: rewinds
    # and reference passes, no longer the price of watching)
    loss = statistics.median(guard.rules.losses.recent())
    rewinds = guard.metrics()["rewinds"]
    judges_norms = guard.judges_norms
    began = time.perf_counter_ns()
    for _ in range(steps):  # the calls the loop makes
        guard.spiked(loss)
        if judges_norms:
            guard.grad_spiked(1.0)
        guard.stepped(loss, 1.0, batch)
    out["isolated_all_us"] = (time.perf_counter_ns() - began) / steps / 1e3
    assert guard.metrics()["rewinds"] == rewinds, "the isolated loop must not rewind"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="timed seconds per config")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "spike_guard_overhead.json"))
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/spike_guard_overhead.py",
                                                 *(argv if argv is not None else sys.argv[1:])])
    results = {}
    for name, cfg in CONFIGS.items():
        results[name] = {**measure(cfg, args.seconds), **split(cfg)}
        r = results[name]
        print(f"{name}: {r['step_ms_off']:.3f} ms/step off, {r['step_ms_on']:.3f} on: overhead "
              f"{r['overhead_pct']:+.2f}% over {r['rounds']} paired epochs ({r['rewinds']:g} rewinds), "
              f"about {r['cost_us']:.1f} us a step: <= 1% from steps of {r['one_percent_from_ms']:.2f} ms; "
              "the guard's calls in the loop, us a step: " + ", ".join(
                  f"{k[8:-3]} {v:.1f}" for k, v in r.items() if k.startswith("in_loop_"))
              + f"; the same calls back to back outside it {r['isolated_all_us']:.1f}")
    Path(args.output).write_text(json.dumps({"command": command, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC",
                                             time.gmtime()), "results": results}, indent=2) + "\n")
    worst = max(r["one_percent_from_ms"] for r in results.values())
    print(f"the guard stays within 1% for steps of {worst:.2f} ms and longer (the larger of the two)")
    print(f"command: {command}\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
