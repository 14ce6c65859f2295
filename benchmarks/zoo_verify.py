"""Check every zoo case against the independent judge (no Ray, no autofix detector):

* the reference config passes the judge (its own best score is the bar);
* the broken config fails it within its epochs (a healthy control passes it);
* a late-onset case is healthy before its declared onset: its loss had fallen by the judge's
  30% at some report in the first half of the run, and the failure comes after half the epochs.

    python benchmarks/zoo_verify.py [--seeds 5] [--jobs 2] [--out benchmarks/results/zoo_verify.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_DIR, Judge, load_cases, reference_config, train_series, training_config

__all__ = ["verify"]


def verify(name: str, seed: int) -> dict:
    """One case at one seed: what the judge says about its reference and its broken config."""
    warnings.filterwarnings("ignore")
    case = load_cases([name])[0]
    ref = train_series(reference_config(case, seed))
    best = max(r[case.judge_metric] for r in ref[1:])
    judge = Judge(case, best)
    broken = train_series(training_config(case, seed))
    anytime = Judge(dataclasses.replace(case, judge_at="first"), best)
    base = broken[0]["val_loss"]
    healthy_at = [i for i, r in enumerate(broken) if anytime.healthy(r, base)]
    fell = [int(r["epoch"]) for r in broken if r["val_loss"] <= 0.7 * base]
    row = {"case": name, "seed": seed, "kind": case.kind, "reference": round(best, 3),
           "reference_ok": judge.first_healthy(ref) is not None,
           "broken_healed_at": judge.first_healthy(broken), "healthy_reports": healthy_at,
           "final_val_loss": broken[-1]["val_loss"], "final_score": broken[-1][case.judge_metric]}
    ok = row["reference_ok"] and ((row["broken_healed_at"] is None) == (case.kind != "healthy"))
    if case.kind == "late_onset":
        epochs = int(broken[-1]["epoch"])
        early = [e for e in fell if e < case.onset_epoch]
        ok = ok and case.onset_epoch > epochs / 2 and bool(early)
        row["loss_fell_30pct_before_onset_at"] = early
    row["ok"] = ok
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cases")
    parser.add_argument("--out", default=str(REPO_DIR / "benchmarks/results/zoo_verify.md"))
    args = parser.parse_args(argv)
    names = [c.name for c in load_cases(args.cases.split(",") if args.cases else None)]
    keys = [(n, s) for n in names for s in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(verify, *zip(*keys, strict=False)))
    lines = ["# Zoo verification (independent judge, no autofix)", "",
             f"command: `python benchmarks/zoo_verify.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             "| case | kind | ok | seeds ok | reference scores | broken: first healthy report (per seed) "
             "| final score (per seed) |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        mine = [r for r in rows if r["case"] == name]
        lines.append(f"| {name} | {mine[0]['kind']} | {'yes' if all(r['ok'] for r in mine) else '**NO**'} | "
                     f"{sum(r['ok'] for r in mine)}/{len(mine)} | {', '.join(str(r['reference']) for r in mine)} | "
                     f"{', '.join(str(r['broken_healed_at']) for r in mine)} | "
                     f"{', '.join(format(r['final_score'], '.2f') for r in mine)} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
