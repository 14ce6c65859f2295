"""Running planned bench items: in the driver (``--jobs 1``) or in a worker process that joins
the driver's Ray instance (``--jobs N``: Tune's per-experiment start-up latency overlaps).

An item is (block, case, seed); every method runs on it in turn. Rows are appended to a JSONL
file as they finish, so a crash keeps what was measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LEFT_ALONE, REFERENCE_SCORES, Budget, Case, MethodResult, case_config, load_cases, ray_runtime_env

__all__ = ["Block", "Item", "decode", "encode", "row", "run_items"]


@dataclass(frozen=True)
class Block:
    """One slice of the cross product: padding x space, on some cases and seeds."""

    name: str
    pad_s: float
    space: str
    cases: tuple[str, ...] | None  # None: every case of the sick zoo (cases.yaml block "zoo")
    seeds: int
    methods: tuple[str, ...] | None = None  # None: every method of the run


@dataclass(frozen=True)
class Item:
    block: Block
    case: str
    seed: int


def _runner(method: str):
    module = importlib.import_module(f"methods.{'autofix_method' if method == 'autofix' else method}")
    return getattr(module, f"run_{method}")


def row(result: MethodResult, case: Case, block: Block) -> dict:
    """The JSON row of one run: the result plus what the figures need about its case."""
    row = result.to_dict()
    row.update(block=block.name, kind=case.kind, fault=case.fault,
               case_epochs=int(case_config(case, 0)["epochs"]),
               budget_epochs=Budget.for_case(case).max_epochs_total,
               diagnosis_correct=(result.diagnosis in case.expect) if result.method == "autofix" else None,
               reference=REFERENCE_SCORES.get((case.name, result.seed)), expected_part=case.part)
    return row


def _run_one(item: Item, case: Case, method: str, done: dict) -> MethodResult:
    block, seed = item.block, item.seed
    if method == "autofix":
        # autofix has no search space: one (case, seed, padding) run serves both spaces.
        key = (case.name, seed, block.pad_s)
        if key in done:
            reused = MethodResult(**{**done[key].to_dict(), "space": block.space})
            reused.notes = "; ".join(x for x in (reused.notes, "same autofix run as the other space") if x)
            return reused
        done[key] = _runner(method)(case, seed, block.space, block.pad_s, Budget.for_case(case))
        return done[key]
    return _runner(method)(case, seed, block.space, block.pad_s, Budget.for_case(case),
                           reference=REFERENCE_SCORES[(case.name, seed)])


class _Claims:
    """Work sharing between bench processes: the first to create a unit's marker file runs it.

    A unit is (padding, case, seed): the blocks that differ only in their space go to the same
    process, so its one autofix run serves both. Without a directory every unit is ours.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory, self.mine, self.theirs = directory, set(), set()

    def ours(self, item: Item) -> bool:
        unit = f"{item.block.pad_s}-{item.case}-{item.seed}"
        if self.directory is None or unit in self.mine:
            return True
        if unit in self.theirs:
            return False
        try:
            os.close(os.open(os.path.join(self.directory, unit), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            self.theirs.add(unit)
            return False
        self.mine.add(unit)
        return True


def run_items(items: list[Item], methods: list[str], deadline: float, rows_path: str, started: float,
              claims_dir: str | None = None) -> None:
    """Run every method on every item (those this process claims, with ``claims_dir``); an
    item that would start after ``deadline`` (time.time()) is recorded as skipped."""
    done: dict = {}
    cases = {c.name: c for c in load_cases()}
    claims = _Claims(claims_dir)
    for item in items:
        if not claims.ours(item):
            continue
        case = cases[item.case]
        late = time.time() > deadline  # per item: every method or none, so they compare on the same runs
        for method in methods:
            if item.block.methods is not None and method not in item.block.methods:
                continue
            if late:
                result = MethodResult(method, case.name, item.seed, item.block.space, item.block.pad_s,
                                      skipped=True, notes="time budget spent before this run")
            else:
                try:
                    result = _run_one(item, case, method, done)
                except Exception as err:  # noqa: BLE001 - one crashed run must not lose the other 400
                    result = MethodResult(method, case.name, item.seed, item.block.space, item.block.pad_s,
                                          notes=f"ERROR {type(err).__name__}: {err}"[:300])
                print(f"[{time.time() - started:6.0f}s] {item.block.name} {case.name} s{item.seed} {method}: "
                      f"healed={result.healed} epochs={result.epochs} trials={result.trials} "
                      f"patch={len(result.patch_keys)} diag={result.diagnosis} wall={result.wall_s:.1f}s",
                      flush=True)
            with open(rows_path, "a") as out:
                out.write(json.dumps(row(result, case, item.block), default=str) + "\n")


def encode(items: list[Item]) -> list[dict]:
    return [{"block": asdict(i.block), "case": i.case, "seed": i.seed} for i in items]


def decode(rows: list[dict]) -> list[Item]:
    def block(d: dict) -> Block:
        return Block(**{**d, "cases": tuple(d["cases"]) if d["cases"] else None,
                        "methods": tuple(d["methods"]) if d.get("methods") else None})
    return [Item(block(r["block"]), r["case"], r["seed"]) for r in rows]


def worker_main(argv: list[str] | None = None) -> int:
    """``python bench_runner.py --address A --job FILE``: run a shard in the driver's Ray."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    job = json.loads(Path(args.job).read_text())
    for key, score in job["references"]:
        REFERENCE_SCORES[(key[0], int(key[1]))] = score
    for key, alone in job.get("left_alone", []):
        LEFT_ALONE[(key[0], int(key[1]))] = alone
    import ray

    ray.init(address=args.address, log_to_driver=False, logging_level=logging.ERROR, runtime_env=ray_runtime_env())
    try:
        run_items(decode(job["items"]), job["methods"], job["deadline"], job["rows"], job["started"],
                  job["claims"])
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())
