"""`make bench`: the sick zoo, healed by autofix and by Ray Tune's own answers, judged independently.

    python benchmarks/bench.py [--quick] [--cases A,B] [--seeds N] [--budget-min M] [--out PREFIX]

Methods (same budget and knob space per case): autofix, random search + ASHA, PBT with the same
mutations, random repair from autofix's own action library. Blocks: native-speed epochs and
epochs padded to >= 0.25 s, the small (7-knob) and large (17-knob) spaces. The full run does
every case x seed for native/small and the declared subsets below for the other blocks; a run
that would start after the time budget is recorded as skipped (and said so in the output),
never estimated. Writes PREFIX.json, PREFIX.md and PREFIX.png and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REFERENCE_SCORES, REPO_DIR, Budget, Case, MethodResult, judge_for, load_cases, training_config,
)

METHODS = ("autofix", "asha", "pbt", "random_repair")
PAD_S = 0.25


@dataclass(frozen=True)
class Block:
    """One slice of the cross product: padding x space, on some cases and seeds."""

    name: str
    pad_s: float
    space: str
    cases: tuple[str, ...] | None  # None: every case
    seeds: int


# Declared subsets (the full cross product does not fit 60 min on 2 cores: see the README).
SUBSET = ("adam_lr_high", "sgd_lr_low", "dying_relu", "imbalance_95_5", "late_exponential",
          "loop_bug_reload", "healthy_digits_cnn")
FULL = (
    Block("native-small", 0.0, "small", None, 5),
    Block("native-large", 0.0, "large", SUBSET, 3),
    Block("padded-small", PAD_S, "small", SUBSET, 3),
    Block("padded-large", PAD_S, "large", SUBSET, 3),
)
QUICK = (
    Block("native-small", 0.0, "small", ("adam_lr_high", "late_exponential", "healthy_blobs_mlp"), 1),
    Block("padded-large", PAD_S, "large", ("adam_lr_high",), 1),
)


def _runner(method: str):
    module = importlib.import_module(f"methods.{'autofix_method' if method == 'autofix' else method}")
    return getattr(module, f"run_{method}")


def _row(result: MethodResult, case: Case, block: Block) -> dict:
    epochs = int(training_config(case, 0)["epochs"])
    row = result.to_dict()
    row.update(block=block.name, kind=case.kind, fault=case.fault, case_epochs=epochs,
               budget_epochs=Budget.for_case(case).max_epochs_total,
               diagnosis_correct=(result.diagnosis in case.expect) if result.method == "autofix" else None,
               reference=REFERENCE_SCORES.get((case.name, result.seed)))
    return row


def _plan(blocks: tuple[Block, ...], only: list[str] | None, seeds: int | None) -> list[tuple[Block, Case, int]]:
    plan = []
    for block in blocks:
        names = [n for n in (block.cases or [c.name for c in load_cases()]) if not only or n in only]
        for case in load_cases(names):
            plan += [(block, case, s) for s in range(seeds or block.seeds)]
    return plan


def _run_one(block: Block, case: Case, seed: int, method: str, done: dict) -> MethodResult:
    if method == "autofix":
        # autofix has no search space: the same (case, seed, padding) run serves both spaces.
        key = (case.name, seed, block.pad_s)
        if key in done:
            reused = MethodResult(**{**done[key].to_dict(), "space": block.space})
            reused.notes = "; ".join(x for x in (reused.notes, "same autofix run as the other space") if x)
            return reused
        result = _runner(method)(case, seed, block.space, block.pad_s, Budget.for_case(case))
        done[key] = result
        return result
    return _runner(method)(case, seed, block.space, block.pad_s, Budget.for_case(case),
                           reference=REFERENCE_SCORES[(case.name, seed)])


def run(args: argparse.Namespace) -> dict:
    """Every planned run, references first (each must pass the judge: raises otherwise)."""
    import ray

    blocks = QUICK if args.quick else FULL
    plan = _plan(blocks, args.cases.split(",") if args.cases else None, args.seeds)
    methods = args.methods.split(",")
    started = time.monotonic()
    deadline = started + args.budget_min * 60
    for _, case, seed in plan:
        if (case.name, seed) not in REFERENCE_SCORES:
            judge_for(case, seed)  # raises RuntimeError naming the case if the reference fails
    reference_s = time.monotonic() - started
    print(f"references: {len(REFERENCE_SCORES)} trained and judged healthy in {reference_s:.0f} s", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             logging_level=logging.ERROR)
    rows, done = [], {}
    try:
        for block, case, seed in plan:
            for method in methods:
                if time.monotonic() > deadline:
                    skipped = MethodResult(method, case.name, seed, block.space, block.pad_s, skipped=True,
                                           notes="time budget spent before this run")
                    rows.append(_row(skipped, case, block))
                    continue
                result = _run_one(block, case, seed, method, done)
                rows.append(_row(result, case, block))
                print(f"[{time.monotonic() - started:6.0f}s] {block.name} {case.name} s{seed} {method}: "
                      f"healed={result.healed} epochs={result.epochs} trials={result.trials} "
                      f"patch={len(result.patch_keys)} diag={result.diagnosis}", flush=True)
            _save_partial(args.out, rows)
    finally:
        ray.shutdown()
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(), "command": "python benchmarks/bench.py " + " ".join(args.argv),
        "wall_s": round(time.monotonic() - started, 1), "reference_s": round(reference_s, 1),
        "quick": bool(args.quick), "budget_min": args.budget_min,
        "blocks": [vars(b) | {"cases": list(b.cases) if b.cases else "all"} for b in blocks],
        "methods": methods, "runs": rows,
    }


def _save_partial(prefix: str, rows: list[dict]) -> None:
    Path(prefix + ".partial.json").write_text(json.dumps(rows, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset covering every method (<= 5 min)")
    parser.add_argument("--cases", help="comma-separated case names (default: each block's)")
    parser.add_argument("--seeds", type=int, help="seeds per case (default: each block's)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budget-min", type=float, default=50.0,
                        help="no run starts after this many minutes (later ones are recorded as skipped)")
    parser.add_argument("--out", default=str(REPO_DIR / "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    warnings.filterwarnings("ignore")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    data = run(args)
    from bench_report import write_outputs

    table = write_outputs(data, args.out)
    Path(args.out + ".partial.json").unlink(missing_ok=True)
    print(table)
    print(f"\nwritten: {args.out}.json {args.out}.md {args.out}.png\ncommand: {data['command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
