"""What one report between epochs costs a trial (a script, not a test): the time of
``ray.tune.report`` inside a real Tune function trainable, the call the managed harness makes for
each report between epochs (``training.step_reports``, ``autofix.harness.stepreports``).

Starts a local Ray (2 CPUs), runs one trial that sends ``--reports`` reports shaped like a step
report back to back, and prints the mean time of one call, timed inside the trial. With the
harness's floor of one report every ``min_interval_s`` = 2 s, the share of training time is at
most that cost / 2 s.

    .venv/bin/python benchmarks/step_report_cost.py    # writes benchmarks/results/step_report_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _trial(config: dict[str, Any]) -> None:
    from ray import tune

    began = time.perf_counter()
    for step in range(config["reports"]):
        tune.report({"step_report": 1.0, "step": float(step), "step_loss_mean": 0.5, "step_loss_max": 0.9,
                     "step_nonfinite": 0.0, "steps_in_report": 50.0})
    tune.report({"per_report_ms": 1e3 * (time.perf_counter() - began) / config["reports"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=400)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "step_report_cost.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import ray
    from ray import tune

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        with tempfile.TemporaryDirectory() as storage:
            grid = tune.Tuner(_trial, param_space={"reports": args.reports},
                              run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
            per_report_ms = float(grid[0].metrics["per_report_ms"])
    finally:
        ray.shutdown()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/step_report_cost.py",
                                                 *(argv if argv is not None else sys.argv[1:])])
    share = 100 * per_report_ms / 1e3 / 2.0
    result = {"command": command, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "cores": os.cpu_count(), "reports": args.reports, "per_report_ms": per_report_ms,
              "share_at_one_per_2s_pct": share}
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"ray.tune.report in a trial: {per_report_ms:.2f} ms a call over {args.reports} calls; "
          f"one every 2 s is {share:.3f}% of training time")
    print(f"command: {command}\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
