"""The spike guard on models it was not written for: does it touch a run that needs no help?

Every managed-harness case of the zoo (benchmarks/zoo/cases.yaml: the sick zoo, its healthy
runs, the Keras-ported slow learners of the do-no-harm block, the ported models) is trained
in-process twice per seed, to its planned end, exactly as its spec says: left alone, and with
``training.spike_guard: {enabled: true}`` (the shipped ``loss-spike-rewind`` policy, the
``loss_spike`` symptom's default thresholds). None of these models or runs was used to choose
the guard's thresholds (those came from the long-runs cases and the overhead runs).

Per run: the guard's rewinds and skipped batches, and the case's judged metric (val_accuracy or
val_macro_f1) and val_loss at the end, guarded and alone. A guard that does not fire must leave
the run as it was (the same final val_loss, to the bit); one that fires is judged against the
same run left alone, with the do-no-harm block's slack (``common.CLAIM_SLACK``).

    .venv/bin/python benchmarks/spike_guard_do_no_harm.py --seeds 5 --jobs 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CLAIM_SLACK, finite, is_custom, load_cases, train_series, training_config  # noqa: E402
from long_runs import _commit, write_results  # noqa: E402  # _commit: the head, +dirty when the code differs

GUARD: dict[str, Any] = {"enabled": True}  # as a user turns it on: the shipped policy, default thresholds


def _end(series: list[dict[str, Any]], metric: str) -> dict[str, float | None]:
    last = series[-1]
    return {"metric": finite(last.get(metric)), "val_loss": finite(last.get("val_loss")),
            "rewinds": finite(last.get("rewinds")), "skipped": finite(last.get("skipped_batches")),
            "steps": finite(last.get("step"))}


def run_one(name: str, seed: int) -> dict[str, Any]:
    """One case and seed, left alone and guarded (each in a fresh trainer, one torch thread)."""
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    case = load_cases([name])[0]
    config = training_config(case, seed)
    row: dict[str, Any] = {"case": name, "kind": case.kind, "block": case.block or "zoo", "seed": seed}
    try:
        alone = _end(train_series(config), case.judge_metric)
    except RuntimeError as exc:  # a step that raises (the isolation zoo's frozen model): nothing to guard
        return {**row, "raised": str(exc)}
    guarded = _end(train_series({**config, "spike_guard": GUARD}), case.judge_metric)
    row.update({
        "metric": case.judge_metric, "steps": guarded["steps"],
        "rewinds": int(guarded["rewinds"] or 0), "skipped": int(guarded["skipped"] or 0),
        "alone": alone["metric"], "guarded": guarded["metric"],
        "alone_val_loss": alone["val_loss"], "guarded_val_loss": guarded["val_loss"]})
    row["same_run"] = alone["val_loss"] == guarded["val_loss"] and alone["metric"] == guarded["metric"]
    before, after = alone["metric"], guarded["metric"]
    row["worse"] = after < before - CLAIM_SLACK if before is not None and after is not None else None
    return row


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    healthy = [r for r in rows if r["kind"] == "healthy"]
    quiet = [r for r in rows if r["rewinds"] == 0]
    fired = [r for r in rows if r["rewinds"] > 0]
    return [
        {"target": "0 rewinds on the healthy runs", "met": all(r["rewinds"] == 0 for r in healthy),
         "measured": f"{sum(r['rewinds'] for r in healthy)} rewinds in {len(healthy)} healthy runs "
                     f"({len({r['case'] for r in healthy})} cases)"},
        {"target": "a guard that never fires leaves the run as it was",
         "met": all(r["same_run"] for r in quiet),
         "measured": f"{sum(r['same_run'] for r in quiet)}/{len(quiet)} runs without a rewind end with the same "
                     "val_loss and judged metric as left alone"},
        {"target": f"no run the guard acted on ends more than {CLAIM_SLACK} below left alone",
         "met": not any(r["worse"] for r in fired),
         "measured": f"{len(fired)} runs rewound; worse: "
                     + (", ".join(f"{r['case']} s{r['seed']} {r['guarded']:.3f} vs {r['alone']:.3f}"
                                  for r in fired if r["worse"]) or "none")},
    ]


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(data: dict[str, Any]) -> str:
    rows = data["rows"]
    lines = [f"# The spike guard on models not written for it: {data['date_utc']}", "",
             f"Command: `{data['command']}` (commit {data['commit']}, {data['cores']} cores, {data['wall_s']} s).", "",
             f"Guard: `{json.dumps(GUARD)}` (the shipped loss-spike-rewind policy, default thresholds). "
             f"{len({r['case'] for r in rows})} managed-harness cases of benchmarks/zoo/cases.yaml x "
             f"{len({r['seed'] for r in rows})} seeds, each trained to its planned end left alone and guarded.", "",
             "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {t['target']} | {'yes' if t['met'] else 'NO'} | {t['measured']} |" for t in data["targets"]]
    if data.get("not_run"):
        lines += ["", "Not run (the training step raises left alone, nothing to guard): "
                  + ", ".join(sorted({r["case"] for r in data["not_run"]})) + "."]
    lines += ["", "## Runs the guard acted on", "",
              "| case | kind | seed | steps | rewinds | skipped | metric | alone | guarded | val_loss alone "
              "| guarded |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['kind']} | {r['seed']} | {int(r['steps'] or 0)} | {r['rewinds']} | {r['skipped']} | "
              f"{r['metric']} | {_f(r['alone'])} | {_f(r['guarded'])} | {_f(r['alone_val_loss'])} | "
              f"{_f(r['guarded_val_loss'])} |" for r in rows if r["rewinds"] > 0]
    lines += ["", "## Every case", "", "| case | kind | block | steps | rewinds per seed | same run unguarded |",
              "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == name]
        lines.append(f"| {name} | {mine[0]['kind']} | {mine[0]['block']} | {int(mine[0]['steps'] or 0)} | "
                     f"{' '.join(str(r['rewinds']) for r in mine)} | {sum(r['same_run'] for r in mine)}/{len(mine)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cases", help="comma-separated case names (default: every managed-harness case)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spike_guard_do_no_harm"))
    args = parser.parse_args(argv)
    argv = argv if argv is not None else sys.argv[1:]
    names = [c.name for c in load_cases(args.cases.split(",") if args.cases else None) if not is_custom(c)]
    started = time.time()
    jobs = [(name, seed) for seed in range(args.seeds) for name in names]
    rows, raised = [], []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for r in pool.map(run_one, *zip(*jobs, strict=True)):
            if "raised" in r:
                raised.append(r)
                print(f"{r['case']} s{r['seed']}: its training step raises left alone ({r['raised']})", flush=True)
                continue
            rows.append(r)
            print(f"{r['case']} s{r['seed']}: {r['rewinds']} rewinds, {r['metric']} {_f(r['alone'])} alone, "
                  f"{_f(r['guarded'])} guarded", flush=True)
    data = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
            "commit": _commit(),
            "command": " ".join([".venv/bin/python", "benchmarks/spike_guard_do_no_harm.py", *map(shlex.quote, argv)]),
            "wall_s": round(time.time() - started, 1), "guard": GUARD, "claim_slack": CLAIM_SLACK, "rows": rows,
            "not_run": [{"case": r["case"], "seed": r["seed"], "raised": r["raised"]} for r in raised]}
    data["targets"] = targets(rows)
    write_results(args.out, data, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
