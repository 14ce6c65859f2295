"""The long-runs judge's noise floor: how far the ideal skip ends from its clean twin.

The ideal skip is the clean run that never trains on the injection window's batches (drawn and
dropped, no rewind): the best any skip can do. Its distance from the clean twin is the noise the
judge ("healed": within 2% of the clean twin's final val_loss) has to see through. Measured on
the windowed cases (the late rate rise's window runs to the end of the run, so its ideal skip
stops training at the onset: not a floor, shown for completeness) for three schedules:

- ``constant``: the rate held (the cases before they decayed it);
- ``cosine``: the cases as they are (cosine over the run, no floor);
- ``cosine10``: cosine down to 10% of the peak (GPT-3, LLaMA).

    .venv/bin/python benchmarks/long_runs_noise_floor.py --seeds 4
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from long_runs import _commit  # noqa: E402  # the head, +dirty when the code differs from it
from long_runs_cases import CASES, Case  # noqa: E402
from long_runs_methods import EVAL_CHUNKS, train  # noqa: E402

SCHEDULES = ("constant", "cosine", "cosine10")


def scheduled(case: Case, schedule: str) -> Case:
    """``case`` with its rate held, or decayed by a cosine (to 0 or to 10% of the peak)."""
    cfg: dict[str, Any] = copy.deepcopy(case.config)
    if schedule == "constant":
        cfg["scheduler"] = None
    elif schedule == "cosine10":
        cfg["scheduler"] = {"name": "cosine", "kwargs": {"T_max": EVAL_CHUNKS,
                                                         "eta_min": 0.1 * cfg["optimizer"]["lr"]}}
    return dataclasses.replace(case, config=cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "long_runs_noise_floor"))
    args = parser.parse_args()
    began = time.perf_counter()
    commit = _commit()
    cases = [c for c in CASES if not c.control and "ddp" not in c.tags]  # DDP: the MLP burst's own floor
    table: dict[str, dict[str, list[float]]] = {}
    for schedule in SCHEDULES:
        for case in cases:
            run = scheduled(case, schedule)
            ratios = [train(run, s, drop=True).val_loss / train(run, s, inject=False).val_loss
                      for s in range(args.seeds)]
            table.setdefault(schedule, {})[case.name] = [round(r, 3) for r in ratios]
            print(schedule, case.name, table[schedule][case.name], flush=True)
    command = f"python benchmarks/long_runs_noise_floor.py --seeds {args.seeds}"
    lines = [f"# Long runs: the judge's noise floor ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Command: `{command}` (commit {commit}, {time.perf_counter() - began:.0f} s).", "",
             "Ideal skip / clean twin, final val_loss, seeds 0.." + str(args.seeds - 1)
             + " (healed means within 0.98x-1.02x):", "",
             "| schedule | " + " | ".join(c.name for c in cases) + " | windowed cases outside 2% |",
             "|---|" + "---|" * len(cases) + "---|"]
    for schedule, row in table.items():
        windowed = [r for c in cases if c.injection and c.injection.length for r in row[c.name]]
        outside = sum(1 for r in windowed if abs(r - 1) > 0.02)
        lines.append(f"| {schedule} | " + " | ".join(", ".join(f"{r:.3f}" for r in row[c.name]) for c in cases)
                     + f" | {outside}/{len(windowed)} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"command": command, "commit": commit, "table": table}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
