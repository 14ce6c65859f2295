"""Rule-engine throughput: synthetic Tune results through the detectors and policies (a script).

A cluster running many trials calls ``Engine.observe`` once per trial per epoch, on the
driver, inside Tune's control loop; this measures how many such results per second the
engine takes. Setup as ``autofix.tune.runner.assemble`` builds it: every builtin detector
(``build_detectors``), the shipped policies (``load_policies(["builtin"])``) and the config of
``examples/digits_lr_too_high.yaml``; no journal file, no ledger, no config checker (those
are I/O and model builds, not rules).

Each of ``--trials`` independent runs (one :class:`~autofix.rules.engine.Engine` each, max 6
attempts) is driven as ``autofix.tune.controller`` drives it: ``suggest`` for a new trial id,
``observe`` per epoch (iteration = the report's ``epoch``), ``complete`` when the trial
stops or runs out of epochs, then the next queued attempt. The runs advance round-robin, one
report each per round, like a cluster whose trials report in turn. Reports are shaped like
the managed harness's (``tests/fixtures/diagnose/digits_run/tune/*/result.json``: loss,
accuracy, per-layer ``grad_norm/*``, ``update_ratio/*``, ``dead_frac/*``, ``val_recall/*``,
``pred_*``, input and label statistics, plus Tune's own keys and the config); each attempt
follows a seeded random scenario: healthy, plateau, diverging, NaN, exploding gradients or
dying ReLU. Only the engine calls are timed (``time.perf_counter`` around each), not the
generation of the reports. Both the wall time (``perf_counter``) and the process CPU time
(``process_time``) of those calls are summed: on a shared machine the CPU time is the
steadier figure (the engine is single-threaded, so on a quiet driver the two agree); results/s
is reported for both, the CPU-time one is checked against the 10,000/s target.

    .venv/bin/python benchmarks/engine_throughput.py [--trials 1000] [--epochs 15] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autofix.rules.engine import Engine, Plan  # noqa: E402
from autofix.rules.policy import load_policies  # noqa: E402
from autofix.spec.schema import load_spec  # noqa: E402
from autofix.symptoms import build_detectors  # noqa: E402
from autofix.tune.controller import iteration_of  # noqa: E402

__all__ = ["SCENARIOS", "main", "run_benchmark", "synthetic_report"]

SCENARIOS = ("healthy", "healthy", "plateau", "diverging", "nan", "exploding", "dying_relu")
"""Scenario of each attempt, drawn uniformly (healthy twice as likely)."""
LAYERS = ("0", "2", "6", "8")  # parameterised layers of small_cnn, as the harness names them
RELUS = ("1", "3", "7")
CLASSES = 10
TARGET_PER_S = 10_000


def synthetic_report(scenario: str, epoch: int, rng: random.Random, config: dict, trial_id: str) -> dict[str, Any]:
    """One epoch's result as Tune hands it to the scheduler, for an attempt in ``scenario``."""
    noise = 1 + 0.02 * rng.uniform(-1, 1)
    loss = _loss(scenario, epoch) * noise
    acc = max(0.1, min(0.99, 1 - loss / 2.6)) if scenario == "healthy" else 0.1 * noise
    grad = (1500.0 * epoch if scenario == "exploding" and epoch else 0.3) * noise
    dead = 0.97 if scenario == "dying_relu" and epoch else 0.05 * noise
    report: dict[str, Any] = {"epoch": epoch, "train_loss": loss * 1.05, "val_loss": loss, "val_accuracy": acc,
                              "val_macro_f1": acc * 0.9, "lr": config["optimizer"]["lr"], "grad_norm": grad,
                              "grad_norm_max": grad * 3}
    report.update({f"grad_norm/{name}": grad * (0.1 + 0.2 * i) for i, name in enumerate(LAYERS)})
    report.update(grad_norm_first=report["grad_norm/0"], grad_norm_last=report[f"grad_norm/{LAYERS[-1]}"],
                  grad_ratio=report["grad_norm/0"] / report[f"grad_norm/{LAYERS[-1]}"], grad_zero_frac=dead / 2)
    if epoch:
        report.update({f"update_ratio/{name}": 0.01 * noise for name in LAYERS})
        report.update(update_ratio_max=0.012, update_ratio_median=0.01, update_ratio_global=0.01)
    report.update({f"dead_frac/{name}": dead for name in RELUS}, dead_frac_max=dead)
    report.update(input_mean=0.31, input_std=0.38, input_abs_max=1.0, label_frac_max=0.1, label_classes=CLASSES,
                  init_loss=2.306, chance_loss=math.log(CLASSES), pred_frac_max=max(0.1, 1 - acc),
                  pred_classes=CLASSES if acc > 0.5 else 3, val_recall_min=acc * 0.8, val_balanced_accuracy=acc)
    report.update({f"val_recall/{c}": acc for c in range(CLASSES)})
    # What Tune adds to every result (strings and the config: not metrics, but the engine sees them)
    report.update(timestamp=1795775503 + epoch, checkpoint_dir_name=None, done=False, training_iteration=epoch + 1,
                  trial_id=trial_id, date="2026-11-27_10-31-43", time_this_iter_s=0.5, time_total_s=0.5 * epoch,
                  pid=1, hostname="vm", node_ip="192.0.2.2", config=config, time_since_restore=0.5 * epoch,
                  iterations_since_restore=epoch + 1)
    return report


def _loss(scenario: str, epoch: int) -> float:
    if scenario == "healthy":
        return 2.3 * math.exp(-0.35 * epoch) + 0.1
    if scenario == "diverging":
        return 2.3 * 1.6 ** epoch
    if scenario == "nan":
        return math.nan if epoch >= 3 else 2.3 - 0.1 * epoch
    return 2.303  # plateau, and the gradient/activation scenarios at chance level


class _Run:
    """One engine and the trial it is currently feeding."""

    def __init__(self, engine: Engine, rng: random.Random, index: int) -> None:
        self.engine, self.rng, self.index = engine, rng, index
        self.trial: str | None = None
        self.scenario, self.epoch, self.launched = "", 0, 0

    def next_trial(self) -> bool:
        attempt = self.engine.suggest(f"t{self.index}_{self.launched}") if not self.engine.done else None
        if attempt is None:
            return False
        self.trial, self.epoch, self.config = attempt.trial_id, 0, attempt.config
        self.scenario, self.launched = self.rng.choice(SCENARIOS), self.launched + 1
        return True


def run_benchmark(trials: int = 1000, epochs: int = 15, seed: int = 0) -> dict[str, Any]:
    """Drive ``trials`` runs to their end; return counts and the time spent inside the engine."""
    spec = load_spec(ROOT / "examples" / "digits_lr_too_high.yaml")
    detectors = build_detectors(spec.watched_loss, spec.symptom_params())
    policies = load_policies(["builtin"])
    plan = Plan(config=spec.base_config(), metric=spec.metric, mode=spec.mode, loss_metric=spec.watched_loss,
                min_drop=spec.success.min_drop, max_attempts=spec.budget.max_attempts)
    rng = random.Random(seed)
    runs = [_Run(Engine(plan, detectors, policies), random.Random(rng.random()), i) for i in range(trials)]
    counts = {"results": 0, "suggests": 0, "completes": 0, "stops": 0}
    engine_s = engine_cpu_s = 0.0
    live = []
    for run in runs:
        t0, c0 = time.perf_counter(), time.process_time()
        started = run.next_trial()
        engine_s += time.perf_counter() - t0
        engine_cpu_s += time.process_time() - c0
        counts["suggests"] += started
        live += [run] if started else []
    while live:
        still = []
        for run in live:
            report = synthetic_report(run.scenario, run.epoch, run.rng, run.config, run.trial)
            t0, c0 = time.perf_counter(), time.process_time()
            verdict = run.engine.observe(run.trial, iteration_of(report), report)
            ended = verdict.stop or run.epoch >= epochs
            if ended:
                run.engine.complete(run.trial)
                started = run.next_trial()
            engine_s += time.perf_counter() - t0
            engine_cpu_s += time.process_time() - c0
            counts["results"] += 1
            counts["stops"] += verdict.stop
            counts["completes"] += ended
            run.epoch += 1
            if ended:
                counts["suggests"] += started
            if not ended or started:
                still.append(run)
        live = still
    outcomes: dict[str, int] = {}
    for run in runs:
        for attempt in run.engine.attempts.values():
            outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
    return {**counts, "engine_s": engine_s, "engine_cpu_s": engine_cpu_s,
            "results_per_s": counts["results"] / engine_s if engine_s else math.inf,
            "results_per_cpu_s": counts["results"] / engine_cpu_s if engine_cpu_s else math.inf,
            "outcomes": dict(sorted(outcomes.items())), "winners": sum(r.engine.winner is not None for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="independent runs (one engine each)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per attempt (epoch 0 is reported too)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "engine_throughput.json"))
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a)
                       for a in [".venv/bin/python", "benchmarks/engine_throughput.py", *(argv or sys.argv[1:])])
    repeats = []
    for i in range(args.repeats):
        started = time.perf_counter()
        result = run_benchmark(args.trials, args.epochs, args.seed)
        result["wall_s"] = time.perf_counter() - started
        repeats.append(result)
        print(f"repeat {i + 1}: {result['results']} results in {result['engine_cpu_s']:.2f} s of engine CPU time "
              f"= {result['results_per_cpu_s']:,.0f} results/s ({result['results_per_s']:,.0f}/s by wall time "
              f"{result['engine_s']:.2f} s; whole repeat {result['wall_s']:.1f} s with report generation)")
    median = statistics.median(r["results_per_cpu_s"] for r in repeats)
    median_wall = statistics.median(r["results_per_s"] for r in repeats)
    summary = {"command": command, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
               "trials": args.trials, "epochs": args.epochs, "seed": args.seed,
               "results_per_cpu_s_median": median, "results_per_wall_s_median": median_wall,
               "load_average": os.getloadavg(), "target_per_s": TARGET_PER_S, "meets_target": median >= TARGET_PER_S,
               "repeats": repeats}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    last = repeats[-1]
    print(f"command: {command}\ncores: {os.cpu_count()}\n"
          f"{last['results']} results, {last['suggests']} attempts launched, outcomes {last['outcomes']}, "
          f"{last['winners']}/{args.trials} runs healed\n"
          f"median {median:,.0f} results per engine CPU second ({median_wall:,.0f} per wall second) over "
          f"{args.repeats} repeats, load average {os.getloadavg()[0]:.1f} (target {TARGET_PER_S:,}): "
          f"{'OK' if median >= TARGET_PER_S else 'BELOW TARGET'}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
