"""Warm vs cold repair of late-onset failures: the compute each needs to heal the same runs.

    python benchmarks/warm_vs_cold.py [--cases late_warmup_high late_exponential] [--seeds 3]

Runs each late-onset zoo case with the shipped policies twice: as shipped (the LR-lowering
actions of the loss policies restart *warm*, from the best checkpoint saved while training
was healthy) and with every action forced *cold* (the same policies, ``start: cold``). Prints
and writes (benchmarks/results/warm_vs_cold.json) the epochs trained in total, the trial
seconds and whether the run was fixed, relative to one healthy run of the case's epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "benchmarks" / "zoo"
OUT = ROOT / "benchmarks" / "results" / "warm_vs_cold.json"


def cold_policies(directory: Path) -> list[str]:
    """The shipped policy files with every ``start: warm`` turned into ``start: cold``."""
    paths = []
    for source in sorted((ROOT / "autofix" / "policies").glob("*.yaml")):
        target = directory / source.name
        target.write_text(source.read_text().replace("start: warm", "start: cold"))
        paths.append(str(target))
    return paths


def one_run(case: str, seed: int, policies: list[str], out: Path) -> dict:
    import autofix

    spec = yaml.safe_load((ZOO / f"{case}.yaml").read_text())
    spec["training"]["seed"] = seed
    spec["policies"] = policies
    spec["ledger"] = False  # the ledger would let one mode learn from the other's runs
    spec["python_path"] = [str(ZOO)]
    started = time.monotonic()
    report = autofix.run(spec, out)
    epochs_per_run = spec["training"]["epochs"]
    trained = sum(a.reports for a in report.attempts if a.trial_id)
    return {"case": case, "seed": seed, "status": report.status, "attempts": len(report.attempts),
            "starts": [a.start for a in report.attempts if a.trial_id], "epochs_trained": trained,
            "relative_compute": trained / (epochs_per_run + 1), "wall_s": round(time.monotonic() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["late_warmup_high", "late_exponential"])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        modes = {"warm": ["builtin"], "cold": cold_policies(Path(tmp))}
        for case in args.cases:
            for seed in range(args.seeds):
                for mode, policies in modes.items():
                    row = one_run(case, seed, policies, Path(tmp) / f"{case}-{seed}-{mode}")
                    rows.append({"mode": mode, **row})
                    print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    summary = {mode: {"fixed": sum(r["status"] != "unfixed" for r in rows if r["mode"] == mode),
                      "runs": sum(r["mode"] == mode for r in rows),
                      "median_relative_compute": statistics.median(r["relative_compute"]
                                                                   for r in rows if r["mode"] == mode)}
               for mode in ("warm", "cold")}
    command = "python benchmarks/warm_vs_cold.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "cores": os.cpu_count(), "machine": platform.machine(), "summary": summary, "runs": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{command}")
    print("mode  fixed  median compute (x one healthy run, epoch 0 counted)")
    for mode, s in summary.items():
        print(f"{mode:5} {s['fixed']}/{s['runs']}  {s['median_relative_compute']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
