"""Long runs: how far apart the spike guard's snapshots should be (``snapshot_every_steps``).

A rewind that restores a snapshot gives back the steps since it; no snapshot is taken within the
interval of the last rewind's target, so the interval is also how long the run must stay quiet
before its weights are trusted again. Measured on the single-process spike cases with the shipped
policy, one guarded run per interval and seed against the clean twin (the same judge as
``long_runs.py``: healed = final val_loss <= 1.02x the clean twin's; compute = optimizer steps run,
rolled-back ones included, over the case's steps). The ring's length does not enter: no snapshot
is taken during a spike episode, and a rewind goes to the newest one before it.

    .venv/bin/python benchmarks/long_runs_snapshot_interval.py --seeds 8
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import long_runs_methods  # noqa: E402
from long_runs import HEAL_MARGIN, _commit, write_results  # noqa: E402
from long_runs_cases import CASES  # noqa: E402
from long_runs_methods import train  # noqa: E402

INTERVALS = (5, 10, 20, 25, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "long_runs_snapshot_interval"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    began, commit = time.perf_counter(), _commit()
    cases = [c for c in CASES if not c.control and "ddp" not in c.tags]
    rows = []
    for case in cases:
        for seed in range(args.seeds):
            clean = train(case, seed, inject=False)
            for every in INTERVALS:
                long_runs_methods.GUARD.update(snapshot_every_steps=every)  # the dict train() gives the harness
                run = train(case, seed, guard="guard")
                rows.append({"case": case.name, "seed": seed, "every": every,
                             "val_ratio": round(run.val_loss / clean.val_loss, 3),
                             "compute_ratio": round(run.compute / case.steps, 3),
                             "rewinds": len({(f, t) for _, f, t in run.rewinds})})
            print(case.name, seed, [(r["every"], r["val_ratio"], r["compute_ratio"]) for r in rows[-len(INTERVALS):]],
                  flush=True)
    data = {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "command": f".venv/bin/python benchmarks/long_runs_snapshot_interval.py --seeds {args.seeds}",
            "wall_s": round(time.perf_counter() - began), "seeds": args.seeds,
            "cases": [c.name for c in cases], "rows": rows}
    write_results(args.out, data, markdown)


def markdown(data: dict) -> str:
    """Per interval: each case's runs (val_loss and compute over the clean twin's), healed, compute max."""
    cases = data["cases"]
    lines = [f"# Long runs: the spike guard's snapshot interval ({data['date_utc']})",
             "", f"Command: `{data['command']}` (commit {data['commit']}, {data['wall_s']} s). Per run: final "
             f"val_loss / clean twin's (healed: <= {1 + HEAL_MARGIN}), compute / clean; seeds 0..{data['seeds'] - 1}.",
             "", "| snapshot_every_steps | " + " | ".join(cases) + " | healed | compute max |",
             "|---|" + "---|" * len(cases) + "---|---|"]
    for every in INTERVALS:
        mine = [r for r in data["rows"] if r["every"] == every]
        cells = [", ".join(f"{r['val_ratio']:.3f}/{r['compute_ratio']:.3f}" for r in mine if r["case"] == c)
                 for c in cases]
        healed = sum(r["val_ratio"] <= 1 + HEAL_MARGIN for r in mine)
        lines.append(f"| {every} | " + " | ".join(cells) + f" | {healed}/{len(mine)} | "
                     f"{max(r['compute_ratio'] for r in mine):.3f} |")
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
