"""The language-model spike example (``examples/loss_spike_lm.yaml``) three ways, in the managed
harness without Ray (a script, not a test): the clean corpus (guard on: it must never rewind),
the burst left alone (guard off) and the burst guarded (the example as written). Prints each
run's val_loss after every epoch, its rewinds and seconds, and writes them as JSON.

    .venv/bin/python benchmarks/lm_spike.py     # writes benchmarks/results/lm_spike.json
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autofix.harness.loop import run_training  # noqa: E402
from autofix.spec.schema import load_spec  # noqa: E402

EXAMPLE = ROOT / "examples" / "loss_spike_lm.yaml"
RUNS = {"clean": (False, True), "left alone": (True, False), "guarded": (True, True)}  # (burst, guard)


def run(base: dict[str, Any], burst: bool, guard: bool) -> dict[str, Any]:
    """One run of the example's config: the per-epoch rows that matter and the wall time."""
    cfg = copy.deepcopy(base)
    if not burst:
        cfg["data"]["args"]["burst_epoch"] = None
    cfg["spike_guard"]["enabled"] = guard
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics))
    keep = ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "rewinds", "rewound_steps",
            "last_rewind_from", "last_rewind_to")
    return {"seconds": round(time.perf_counter() - began, 1),
            "rows": [{k: r[k] for k in keep if k in r} for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lm_spike.json"))
    args = parser.parse_args()
    base = load_spec(EXAMPLE).training.model_dump(mode="json")
    results = {name: run(base, burst, guard) for name, (burst, guard) in RUNS.items()}
    for name, res in results.items():
        curve = " ".join(f"{r['val_loss']:.3f}" for r in res["rows"])
        last = res["rows"][-1]
        print(f"{name:10s} val_loss by epoch: {curve}  rewinds {last.get('rewinds', 0):.0f}  "
              f"rewound_steps {last.get('rewound_steps', 0):.0f}  ({res['seconds']} s)")
    clean = results["clean"]["rows"][-1]["val_loss"]
    for name in ("left alone", "guarded"):
        print(f"{name}: final val_loss {results[name]['rows'][-1]['val_loss'] / clean - 1:+.1%} vs clean")
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/lm_spike.py", *sys.argv[1:]])
    Path(args.out).write_text(json.dumps({"command": command, "date": time.strftime("%Y-%m-%d"),
                                          "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
