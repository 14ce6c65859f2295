"""Training-step overhead of the spike guard (``training.spike_guard``) and of the reports between
epochs (``training.step_reports``) in the managed harness (a script, not a test).

Three models: the digits CNN and a 256x256 MLP with batches of 16 (sub-millisecond steps: the
worst case for a cost paid in Python at every step), and the character language model of
``examples/loss_spike_lm.yaml`` (the issue's long run; its clean data, epochs of 4 steps).
For each, two pairs of identical harness trainers: neither against the guard alone (its
defaults: the spike rule judged every step, a snapshot of model and optimizer every 10 steps, a
ring of 2), then neither against the step reports alone (their defaults: one when 50 steps and 2 s
have passed; each report kept in a list, where a trial calls ``ray.tune.report``, whose cost
``step_report_cost.py`` measures). A pair runs untimed warm-up epochs (64 steps) each, then times single
training epochs (``time.perf_counter`` around ``train_epoch`` only) in turn, each first every
other round, until ``--seconds`` have passed and at least 12 rounds are in, so machine noise hits
both alike. (Three trainers in one rotation measured the guard ~0.5 points dearer on the MLP:
three models take turns in the caches, which no real run does.) An overhead is the median of the
paired (same round) ratios, minus 1; times the step it is the guard's own cost a step, and a
hundred times that the step from which the 1% budget holds. No spike happens on these clean runs:
this is the price of watching, not of rewinding. Then, where the guard's time goes: its calls timed
one by one inside the training loop (its snapshots apart; whole epochs, at least 1,000 steps),
and the same calls back to back outside it.

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
from autofix.harness.stepreports import StepReporter  # noqa: E402
from autofix.spec.schema import load_spec  # noqa: E402

MIN_ROUNDS = 12  # paired epochs at least, however long an epoch takes
WARMUP_STEPS = 64  # untimed: the allocator, kernels, and the spike rule's own warm-up (loss_spike.warmup_steps)
SPLIT_STEPS = 1000  # steps timed call by call (whole epochs: at least this many)


def _lm_config() -> dict[str, Any]:
    """The language-model example's training config, its data clean (no burst), guard off, and
    epochs of 4 steps instead of 200 (the same model and steps): paired epochs of 200 steps
    differed by -7% to +8%, of 20 steps by about +-2.6% (interquartile), too noisy for the median
    of the ~45 pairs that fit in 40 s to read 1%."""
    training = load_spec(ROOT / "examples" / "loss_spike_lm.yaml").training
    assert training is not None  # a managed spec
    cfg = training.model_dump(mode="json")
    cfg["data"]["args"].update(burst_epoch=None, train_windows=128, val_windows=64)
    cfg.pop("spike_guard", None)
    return cfg


CONFIGS = {
    "digits small_cnn, batch 64": {
        "model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
        "data": {"factory": "digits", "args": {}}, "optimizer": {"name": "adam", "lr": 1e-3}, "batch_size": 64},
    "digits mlp 256x256, batch 16": {
        "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 64, "num_classes": 10,
                                                                    "hidden": [256, 256]}},
        "data": {"factory": "digits", "args": {"flatten": True}}, "optimizer": {"name": "sgd", "lr": 0.01},
        "batch_size": 16},
    "char LM of examples/loss_spike_lm.yaml (epochs of 4 steps), batch 32": _lm_config(),
}


def _trainer(cfg: dict[str, Any], guard: bool, reports: bool = False) -> _Trainer:
    cfg = normalize_config({**cfg, "epochs": 1000, "seed": 0, "probes": {"enabled": False}})
    torch.manual_seed(0)
    trainer = _Trainer(cfg)
    prepare(trainer, None)
    if guard:
        trainer.cfg["spike_guard"] = {"enabled": True}  # the shipped loss-spike-rewind answers
        attach_guard(trainer)
    if reports:  # the shipped step_reports; the report kept in a list (Ray's call: step_report_cost.py)
        sent: list[dict[str, float]] = []
        trainer.reporter = StepReporter(None, sent.append)
    return trainer


def measure(cfg: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The guard's overhead (a pair: neither, the guard alone), then the step reports' (another
    pair: neither, the reports alone), each over ``seconds``."""
    torch.set_num_threads(1)
    guard_pair = _paired(_trainer(cfg, False), _trainer(cfg, True), seconds)
    reports_pair = _paired(_trainer(cfg, False), _trainer(cfg, False, True), seconds)
    guard, reporter = guard_pair["on"].guard, reports_pair["on"].reporter
    assert guard is not None and reporter is not None
    overhead, step_ms = guard_pair["overhead"], guard_pair["step_ms_off"]
    # the guard's own cost a step, and the step time from which it stays within the 1% budget
    cost_us = overhead * step_ms * 1e3
    return {"rounds": guard_pair["rounds"], "steps_per_epoch": guard_pair["off"].steps_per_epoch,
            "step_ms_off": step_ms, "step_ms_on": guard_pair["step_ms_on"],
            "overhead_pct": 100 * overhead, "cost_us": cost_us, "one_percent_from_ms": cost_us / 10,
            "rewinds": guard.metrics()["rewinds"], "reports_pct": 100 * reports_pair["overhead"],
            "reports_rounds": reports_pair["rounds"], "reports_sent": reporter.sent}


def _paired(off: _Trainer, on: _Trainer, seconds: float) -> dict[str, Any]:
    """Single epochs of ``off`` and ``on`` in turn (each goes first every other round) after
    untimed warm-up epochs (at least ``WARMUP_STEPS`` steps) each: the median of the same
    round's ratios on/off, minus 1."""
    warmup = -(-WARMUP_STEPS // off.steps_per_epoch)  # epochs
    for trainer in (off, on):
        for epoch in range(1, warmup + 1):
            trainer.train_epoch(epoch)
    ratios: list[float] = []
    times: dict[str, list[float]] = {"off": [], "on": []}
    epoch, end = warmup + 1, time.monotonic() + seconds
    while time.monotonic() < end or len(ratios) < MIN_ROUNDS:
        took = {}
        for name, trainer in (("off", off), ("on", on)) if epoch % 2 else (("on", on), ("off", off)):
            began = time.perf_counter()
            trainer.train_epoch(epoch)
            took[name] = (time.perf_counter() - began) / trainer.steps_per_epoch
            times[name].append(took[name])
        ratios.append(took["on"] / took["off"])
        epoch += 1
    return {"off": off, "on": on, "rounds": len(ratios), "overhead": statistics.median(ratios) - 1,
            "step_ms_off": 1e3 * statistics.median(times["off"]), "step_ms_on": 1e3 * statistics.median(times["on"])}


class _Timed:
    """Stands where the loop keeps its guard: the guard's own calls, each timed (ns, summed)."""

    def __init__(self, guard: Any) -> None:
        self.guard, self.ns = guard, {"spiked": 0, "stepped": 0, "snapshots": 0}
        if guard.judges_norms:  # else the loop leaves grad_spiked out, as it does here
            self.ns["grad_spiked"] = 0
        snapshot = guard._snapshot

        def timed_snapshot() -> None:  # inside stepped: its share apart
            began = time.perf_counter_ns()
            snapshot()
            self.ns["snapshots"] += time.perf_counter_ns() - began
        guard._snapshot = timed_snapshot

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


def split(cfg: dict[str, Any]) -> dict[str, float]:
    """Where the guard's time goes: us per step of each of its calls inside the training loop
    (``stepped`` includes the snapshots, also given apart), and of the same calls back to back
    outside it (the same guard, on the losses it saw)."""
    trainer = _trainer(cfg, True)
    timed = _Timed(trainer.guard)
    trainer.guard = timed  # type: ignore[assignment]
    for epoch in range(1, -(-SPLIT_STEPS // trainer.steps_per_epoch) + 1):
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


def _report_call_share() -> float | None:
    """Cited, not re-measured here (it needs Ray): the share of training time that
    ``ray.tune.report`` takes at one report per ``min_interval_s`` at most."""
    path = ROOT / "benchmarks" / "results" / "step_report_cost.json"
    return json.loads(path.read_text())["share_at_one_per_2s_pct"] if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0,
                        help=f"timed seconds per pair of trainers (at least {MIN_ROUNDS} paired epochs)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "spike_guard_overhead.json"))
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/spike_guard_overhead.py",
                                                 *(argv if argv is not None else sys.argv[1:])])
    report_share = _report_call_share()
    results = {}
    for name, cfg in CONFIGS.items():
        results[name] = {**measure(cfg, args.seconds), **split(cfg)}
        r = results[name]
        print(f"{name}: {r['step_ms_off']:.3f} ms/step off, {r['step_ms_on']:.3f} on: overhead "
              f"{r['overhead_pct']:+.2f}% over {r['rounds']} paired epochs ({r['rewinds']:g} rewinds), "
              f"about {r['cost_us']:.1f} us a step; "
              "the guard's calls in the loop, us a step: " + ", ".join(
                  f"{k[8:-3]} {v:.1f}" for k, v in r.items() if k.startswith("in_loop_"))
              + f"; the same calls back to back outside it {r['isolated_all_us']:.1f}. Step reports: "
              f"{r['reports_pct']:+.2f}% in the loop over {r['reports_rounds']} paired epochs "
              f"({r['reports_sent']} sent)")
    Path(args.output).write_text(json.dumps({"command": command, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC",
                                             time.gmtime()), "report_call_share_pct": report_share,
                                             "results": results}, indent=2) + "\n")
    for name, r in results.items():  # the guard's cost grows with the model (its snapshots)
        print(f"{name}: the guard within 1% from steps of {r['one_percent_from_ms']:.2f} ms" if r["cost_us"] > 0
              else f"{name}: the guard's cost not measurable above the machine's noise")
    if report_share is not None:
        print(f"the report call itself: {report_share:.3f}% of training time at one report per 2 s at most "
              "(benchmarks/results/step_report_cost.json)")
    print(f"command: {command}\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
