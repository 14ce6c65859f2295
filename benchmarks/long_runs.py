"""`make bench` block "long runs" (issue 17): a loss spike mid-run, healed in place by the spike
guard (rewind and skip) or by what users do today, judged step by step.

    python benchmarks/long_runs.py [--seeds N (4)] [--cases A,B] [--out PREFIX]

Cases (``long_runs_cases.CASES``): a burst of corrupted batches, an LR burst, a late LR rise that
skipping alone cannot heal (the LR-cut variant is the guard judged there), the corrupted burst under
Ray Train DDP (``long_runs_ddp``; ``--ddp fork``: forked ranks instead), and clean controls.
Methods (``long_runs_methods.METHODS``): left alone, the guard, the guard with the LR cut,
detect-and-stop, restart from scratch at a 10x lower rate, and autofix's own epoch-level warm
relaunch (its engine judging one report per tenth of the run: ``long_runs_warm``). No Ray: the
harness's trainer is driven directly (``long_runs_methods``). Writes PREFIX.json and PREFIX.md and
prints the table.

Definitions and targets are issue 17's: compute = optimizer steps run, rolled-back ones
included; healed = the final val_loss within 2% of the clean twin's at the same trajectory
length (the bench's own cross-entropy on the validation set); every spike case healed by the
guard; its compute <= 1.05x the clean run's; 0 rewinds on clean controls; detection within 10
steps of the spike's onset; step reporting overhead <= 1% (cited from ``spike_guard_overhead.py``'s
results, which also give the guard's own per-step cost, held to 1% in a stricter row of ours).
The spike's onset is the run left alone's: the first step whose loss leaves the range of its last
128 steps before the injection (``long_runs_methods.spike_onset``). A corrupted batch spikes at
once; a rate rise takes steps to move the loss, and no loss-based detector can see it sooner: the
lag from the injection itself is shown beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from long_runs_ddp import LAUNCHERS  # noqa: E402

from long_runs_cases import CASES  # noqa: E402
from long_runs_methods import GUARD, ONSET_WINDOW, POLICIES, RESTART_LR_SCALE, run_case  # noqa: E402

HEAL_MARGIN = 0.02  # issue 17: within 2% of the clean run's val_loss
COMPUTE_MAX = 1.05  # issue 17: <= 1.05x the clean run's compute (AUTOTRAINER's whole-run figure: 1.14x)
DETECT_WITHIN = 10  # issue 17: detection within 10 steps of the onset
OVERHEAD_MAX_PCT = 1.0  # issue 17: step reporting overhead <= 1% (and ours: the guard's)
OVERHEAD_FILE = ROOT / "benchmarks" / "results" / "spike_guard_overhead.json"
SUMMARY_METHODS = ("left_alone", "ideal_skip", "guard", "guard_skip_only", "guard_lr_cut", "detect_stop",
                   "restart_low_lr", "warm_relaunch")


def healed(row: dict[str, Any]) -> bool:
    """The judge: a finite final val_loss within ``HEAL_MARGIN`` of the clean twin's."""
    return math.isfinite(row["val_loss"]) and row["val_ratio"] <= 1 + HEAL_MARGIN


def guard_method(row: dict[str, Any]) -> str:
    """The guard judged on every case: as shipped (its policy cuts the LR from the fourth rewind,
    which is what a case tagged needs_lr_cut needs)."""
    return "guard"


def _target(name: str, met: bool | None, measured: str) -> dict[str, Any]:
    return {"target": name, "met": met, "measured": measured}


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 17's targets, each from the rows (met: None where nothing was measured)."""
    guard = [r for r in rows if not r["control"] and r["method"] == guard_method(r)]
    ctrl = [r for r in rows if r["control"] and r["method"] == "clean_guard"]
    twins = [r for r in rows if not r["control"] and r["method"] == "clean_guard"]
    alone = [r for r in rows if r["method"] == "left_alone"]
    lags = [r["loss_onset_lag"] for r in guard]
    out = [
        _target("each spike case broken left alone (the case is a real one; not an issue target)",
                all(not healed(r) for r in alone) if alone else None,
                f"{sum(not healed(r) for r in alone)}/{len(alone)} not healed"),
        _target("every spike case healed by the guard (the shipped loss-spike-rewind policy)",
                all(healed(r) for r in guard) if guard else None,
                f"{sum(healed(r) for r in guard)}/{len(guard)}: "
                + ", ".join(f"{r['case']} s{r['seed']} {r['val_ratio']:.3f}x" for r in guard)),
        _target(f"guard compute <= {COMPUTE_MAX}x the clean run's",
                all(r["compute_ratio"] <= COMPUTE_MAX for r in guard) if guard else None,
                f"max {max((r['compute_ratio'] for r in guard), default=math.nan):.3f}x"),
        _target("0 rewinds on the clean controls", sum(len(r["rewinds"]) for r in ctrl) == 0 if ctrl else None,
                f"{sum(len(r['rewinds']) for r in ctrl)} rewinds in {len(ctrl)} control runs: "
                + ", ".join(f"{r['case']} s{r['seed']} {len(r['rewinds'])}" for r in ctrl)),
        _target("(also) 0 rewinds on the spike cases' clean twins",
                sum(len(r["rewinds"]) for r in twins) == 0 if twins else None,
                f"{sum(len(r['rewinds']) for r in twins)} rewinds in {len(twins)} runs"),
        _target(f"detection within {DETECT_WITHIN} steps of the spike's onset (the first step where the loss left "
                f"alone leaves the range of its last {ONSET_WINDOW} steps before the injection)",
                all(lag is not None and lag <= DETECT_WITHIN for lag in lags) if guard else None,
                f"lags {lags}; from the injection itself (a rate rise takes steps to move the loss): "
                f"{[r['detection_lag'] for r in guard]}; rewinds before the injection: "
                f"{sum(r['early_alarms'] for r in guard)}"),
    ]
    warm = [r for r in rows if r["control"] and r["method"] == "warm_relaunch"]
    out.append(_target("(do no harm, not an issue target) autofix's warm relaunch keeps no model worse than the "
                       "clean control's (relaunches on soft symptoms are its own, counted)",
                       all(healed(r) for r in warm) if warm else None,
                       f"{sum(r['relaunches'] for r in warm)} relaunches in {len(warm)} control runs; kept: "
                       + ", ".join(f"{r['case']} s{r['seed']} {r['kept']} {r['val_ratio']:.3f}x" for r in warm)))
    ideal = [r for r in rows if r["method"] == "ideal_skip"]
    out.append(_target("(context, not a target) the ideal skip: the clean run that never trains on the window's "
                       "batches, against the clean run", None,
                       ", ".join(f"{r['case']} s{r['seed']} {r['val_ratio']:.3f}x" for r in ideal)))
    return out + _overhead_targets()


def _overhead_targets() -> list[dict[str, Any]]:
    """Cited, not re-measured: spike_guard_overhead.py's results. The issue's target is the step
    reports' cost (their bookkeeping at every step in the loop, plus the report call's share at one
    report per 2 s at most, from step_report_cost.py); the guard's own per-step cost is held to
    the same 1% as a stricter row of ours."""
    if not OVERHEAD_FILE.exists():
        return [_target(f"step reporting overhead <= {OVERHEAD_MAX_PCT}%", None,
                        "not measured (no spike_guard_overhead.json)")]
    data = json.loads(OVERHEAD_FILE.read_text())
    cited = f" (cited: `{data['command']}`, {data['date_utc']})"
    share = data.get("report_call_share_pct")
    reports = {name: r["reports_pct"] + (share or 0.0) for name, r in data["results"].items() if "reports_pct" in r}
    return [
        _target(f"step reporting overhead <= {OVERHEAD_MAX_PCT}% (the reports between epochs: their bookkeeping "
                "at every step, measured in the loop, plus the report call at one per 2 s at most, "
                f"{share if share is not None else float('nan'):.3f}% from step_report_cost.py)",
                all(p <= OVERHEAD_MAX_PCT for p in reports.values()) if reports and share is not None else None,
                "; ".join(f"{n}: {p:+.2f}%" for n, p in reports.items()) + cited),
        _target(f"(ours, stricter than the issue's wording) the spike guard's own per-step cost <= "
                f"{OVERHEAD_MAX_PCT}% (judging every step, a snapshot every 10)",
                all(r["overhead_pct"] <= OVERHEAD_MAX_PCT for r in data["results"].values()),
                "; ".join(f"{n}: {r['overhead_pct']:+.2f}% ({r['step_ms_off']:.2f} ms a step; within 1% from "
                          f"{r['one_percent_from_ms']:.1f} ms)" for n, r in data["results"].items()) + cited),
    ]


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per method over the spike cases: healed, compute, relaunches, detection."""
    lines = ["| method | healed | compute / clean (median, max) | relaunches | rewinds "
             "| detection lag from the injection, from the loss's onset (median) |",
             "|---|---|---|---|---|---|"]
    for method in SUMMARY_METHODS:
        mine = [r for r in rows if not r["control"] and r["method"] == method]
        if not mine:
            continue
        ratios = [r["compute_ratio"] for r in mine]
        lags = [r["detection_lag"] for r in mine if r["detection_lag"] is not None]
        own = [r["loss_onset_lag"] for r in mine if r.get("loss_onset_lag") is not None]
        lines.append(f"| {method} | {sum(healed(r) for r in mine)}/{len(mine)} | {statistics.median(ratios):.3f}, "
                     f"{max(ratios):.3f} | {sum(r['relaunches'] for r in mine)} | "
                     f"{sum(len(r['rewinds']) for r in mine)} | {statistics.median(lags) if lags else '-'}, "
                     f"{statistics.median(own) if own else '-'} |")
    return lines


def run_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| case | seed | method | val_loss | clean | ratio | healed | compute | x clean | relaunches | rewinds "
             "| first rewind/stop at or after onset (position: from -> to) | lag (injection, loss's onset) "
             "| alarms before onset "
             "| corrupted batches trained on | forward jumps |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = next(((p, f, t) for p, f, t in r["rewinds"] if r["onset"] is not None and p >= r["onset"]), None)
        where = f"{first[0]}: {first[1]} -> {first[2]}" if first else (
            f"stop at {r['detected_at']}" if r["detected_at"] is not None else "-")
        if r.get("kept_by"):  # the warm relaunch: the attempt judged, and why that one
            where += f"; {len(r['attempts'])} attempts, kept {r['kept']} ({r['kept_by']}, {r['status']})"
        lines.append(f"| {r['case']} | {r['seed']} | {r['method']} | {r['val_loss']:.4f} | {r['clean_val_loss']:.4f} "
                     f"| {r['val_ratio']:.3f} | {'yes' if healed(r) else 'no'} | {r['compute']} | "
                     f"{r['compute_ratio']:.3f} | {r['relaunches']} | {len(r['rewinds'])} | {where} | "
                     f"{'-' if r['detection_lag'] is None else r['detection_lag']}, "
                     f"{'-' if r.get('loss_onset_lag') is None else r['loss_onset_lag']} | {r['early_alarms']} | "
                     f"{r['corrupted_trained']}/{len(r['corrupted_at'])} | {r['forward_jumps']} |")
    return lines


def markdown(data: dict[str, Any]) -> str:
    head = [f"# Long runs (issue 17): {data['date_utc']}", "",
            f"Command: `{data['command']}` (commit {data['commit']}, {data['cores']} cores, {data['wall_s']} s, "
            f"load average {data['load_avg_start']} -> {data['load_avg_end']}).", "",
            f"Guard: `{json.dumps(GUARD)}`; policies: "
            + "; ".join(f"{m}: {', '.join(a.describe() + ' x' + str(a.times) for p in ps for a in p.then)}"
                        for m, ps in POLICIES.items())
            + f"; restart at "
            f"{RESTART_LR_SCALE}x the rate; warm relaunch: autofix's engine (`autofix.tune.runner.assemble`, "
            "shipped policies, default budget and patience, probes on, spike guard off) judging one report per "
            "tenth of the run, children warm from the checkpoint it names (benchmarks/long_runs_warm.py). "
            f"Healed: val_loss <= {1 + HEAL_MARGIN}x the clean twin's.", "",
            "Cases:", ""]
    head += [f"- `{c['name']}` ({c['steps']} steps): {c['note']}" for c in data["cases"]]
    tgt = ["| target | met | measured |", "|---|---|---|"] + [
        f"| {t['target']} | {'-' if t['met'] is None else 'yes' if t['met'] else 'NO'} | {t['measured']} |"
        for t in data["targets"]]
    return "\n".join(head + ["", "## Targets", ""] + tgt + ["", "## Methods on the spike cases", ""]
                     + summary(data["runs"]) + ["", "## Every run", ""] + run_table(data["runs"])) + "\n"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "autofix", "benchmarks", ":!benchmarks/results"],
                               cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _start_ray() -> None:
    """A local Ray for the Ray Train runs; its workers import the project and these modules."""
    import ray

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    path = os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=os.cpu_count() or 2, log_to_driver=False, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "long_runs"))
    parser.add_argument("--ddp", choices=LAUNCHERS, default="ray",
                        help="how the DDP case's two ranks run: Ray Train TorchTrainer (default) or forked processes")
    args = parser.parse_args(argv)
    argv = argv if argv is not None else sys.argv[1:]
    warnings.filterwarnings("ignore")
    cases = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    load_start, started = [round(x, 2) for x in os.getloadavg()], time.time()
    rows: list[dict[str, Any]] = []
    if args.ddp == "ray" and any("ddp" in c.tags for c in cases):
        _start_ray()
    for seed in range(args.seeds):
        for case in cases:
            rows += run_case(case, seed, args.ddp)
            print(f"{case.name} seed {seed}: " + ", ".join(
                f"{r['method']} {r['val_ratio']:.3f}x/{r['compute_ratio']:.2f}c/{len(r['rewinds'])}rw"
                for r in rows if r["case"] == case.name and r["seed"] == seed), flush=True)
    data = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
            "commit": _commit(), "command": " ".join(["python", "benchmarks/long_runs.py", *map(shlex.quote, argv)]),
            "wall_s": round(time.time() - started, 1), "load_avg_start": load_start,
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "settings": {"guard": GUARD, "restart_lr_scale": RESTART_LR_SCALE,
                         "policies": {m: [p.model_dump(mode="json") for p in ps] for m, ps in POLICIES.items()},
                         "heal_margin": HEAL_MARGIN, "compute_max": COMPUTE_MAX, "detect_within": DETECT_WITHIN},
            "cases": [{"name": c.name, "steps": c.steps, "note": c.note, "tags": list(c.tags), "config": c.config,
                       "injection": None if c.injection is None else vars(c.injection)} for c in cases],
            "runs": rows}
    data["targets"] = targets(rows)
    write_results(args.out, data, markdown)
    return 0


def write_results(out: str, data: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> None:
    """``out``.json and ``out``.md (``render(data)``), printed with the command that made them."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".json").write_text(json.dumps(data, indent=1) + "\n")
    text = render(data)
    Path(out + ".md").write_text(text)
    print(text)
    print(f"written: {out}.json {out}.md\ncommand: {data['command']}")


if __name__ == "__main__":
    raise SystemExit(main())
