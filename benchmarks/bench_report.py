"""Figures of a `make bench` run: per block and method, per case, and the issue's targets.

Only numbers in the run's JSON are used. "Epochs to fix" counts training epochs of all trials
until the first independently healthy report; its median is over healed runs, and the target
comparisons also give the median with unhealed runs counted at the whole epoch budget.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ["summarize", "write_outputs"]

FIXABLE = ("config", "late_onset")


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def _censored(rows: list[dict]) -> float | None:
    """Median epochs to fix, an unhealed run counted at its whole epoch budget."""
    return _median([r["epochs"] if r["healed"] else r["budget_epochs"] for r in rows])


def _group(rows: list[dict]) -> dict[str, Any]:
    fix = [r for r in rows if r["kind"] in FIXABLE]
    healed = [r for r in fix if r["healed"]]
    config = [r for r in fix if r["kind"] == "config"]
    late = [r for r in fix if r["kind"] == "late_onset"]
    bug = [r for r in rows if r["kind"] == "loop_bug"]
    ctrl = [r for r in rows if r["kind"] == "healthy"]
    diag = [r for r in rows if r["kind"] in (*FIXABLE, "loop_bug") and r["diagnosis_correct"] is not None]
    detect = [r["detection_reports"] for r in rows if r["kind"] in (*FIXABLE, "loop_bug")]
    return {
        "runs": len(rows), "fixable_runs": len(fix), "fixed": len(healed),
        "fix_rate": _rate([r["healed"] for r in fix]),
        "median_epochs_to_fix": _median([r["epochs"] for r in healed]),
        "median_epochs_to_fix_censored": _censored(fix),
        "median_epochs_config": _censored(config), "median_epochs_late_onset": _censored(late),
        "median_trial_s_to_fix": _median([r["trial_s"] for r in healed]),
        "median_patch_keys": _median([len(r["patch_keys"]) for r in healed]),
        "correct_diagnosis_rate": _rate([r["diagnosis_correct"] for r in diag]),
        "median_detection_reports": _median(detect),
        "detection_within_2": _rate([d is not None and d <= 2 for d in detect]) if diag else None,
        "false_alarm_rate": _rate([bool(r["false_alarm"]) for r in ctrl if r["false_alarm"] is not None]),
        "controls_extra_epochs": _median([r["total_epochs"] - r["case_epochs"] for r in ctrl]),
        "loop_bug_relaunches": _median([r["relaunches"] for r in bug]),
        "loop_bug_epochs": _median([r["total_epochs"] for r in bug]),
        "compute_rel_late_onset": _median([r["total_epochs"] / r["case_epochs"] for r in late]),
        "compute_rel_all": _median([r["total_epochs"] / r["case_epochs"] for r in rows]),
        "warm_restarts": sum(r["warm_restarts"] for r in rows),
        # relaunched runs whose lineage used a warm restart vs cold relaunches only
        "compute_rel_warm": _median([r["total_epochs"] / r["case_epochs"] for r in rows if r["warm_restarts"]]),
        "compute_rel_cold": _median([r["total_epochs"] / r["case_epochs"] for r in rows
                                     if r["relaunches"] and not r["warm_restarts"]]),
        "runs_warm": sum(1 for r in rows if r["warm_restarts"]),
        "runs_cold": sum(1 for r in rows if r["relaunches"] and not r["warm_restarts"]),
    }


def summarize(data: dict) -> dict[str, Any]:
    """Aggregates by block x method, by block x method x case, and the target checks."""
    runs = [r for r in data["runs"] if not r["skipped"]]
    blocks = sorted({r["block"] for r in runs}, key=[b["name"] for b in data["blocks"]].index)
    by_block = {b: {m: _group([r for r in runs if r["block"] == b and r["method"] == m])
                    for m in data["methods"]} for b in blocks}
    by_case: dict[str, dict] = {}
    for b in blocks:
        for case in dict.fromkeys(r["case"] for r in runs if r["block"] == b):
            by_case.setdefault(b, {})[case] = {
                m: _group([r for r in runs if r["block"] == b and r["case"] == case and r["method"] == m])
                for m in data["methods"]}
    from bench_targets import targets

    return {"by_block": by_block, "by_case": by_case, "targets": targets(runs, by_block),
            "skipped": sum(r["skipped"] for r in data["runs"]),
            "errors": sum(str(r["notes"]).startswith("ERROR") for r in runs)}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


COLUMNS = (("fix rate", "fix_rate"), ("fixed/runs", None), ("epochs to fix (median)", "median_epochs_to_fix"),
           ("epochs, unfixed = budget", "median_epochs_to_fix_censored"),
           ("trial-s to fix", "median_trial_s_to_fix"), ("patch keys", "median_patch_keys"),
           ("correct diagnosis", "correct_diagnosis_rate"), ("detection (reports)", "median_detection_reports"),
           ("controls touched", "false_alarm_rate"), ("loop bug relaunches", "loop_bug_relaunches"),
           ("late-onset compute ×1 run", "compute_rel_late_onset"))


def markdown(data: dict, summary: dict) -> str:
    """The Markdown report: header, overall table, per-case table, targets."""
    lines = [f"# Sick-zoo benchmark ({'quick' if data['quick'] else 'full'})", "",
             f"{data['date_utc']}, {data['cores']} cores, {data.get('jobs', 1)} bench process(es) sharing "
             f"one Ray, {data['wall_s']:.0f} s wall, commit {data.get('commit', '?')}, load average "
             f"{data.get('load_avg_start', ['?'])[0]} at the start, {data.get('load_avg_end', ['?'])[0]} at the end "
             f"(references {data['reference_s']:.0f} s); command: `{data['command']}`", ""]
    for b in data["blocks"]:
        lines.append(f"- block **{b['name']}**: epochs padded to {b['pad_s']} s, {b['space']} space, "
                     f"cases: {b['cases'] if b['cases'] == 'all' else ', '.join(b['cases'])}; {b['seeds']} seed(s)")
    if summary["errors"]:
        lines.append(f"- **{summary['errors']} run(s) raised** (counted as not healed; see their notes in the JSON)")
    if summary["skipped"]:
        lines.append(f"- **{summary['skipped']} run(s) skipped**: the time budget was spent "
                     "(excluded from every figure)")
    lines += ["", "| block | method | " + " | ".join(c for c, _ in COLUMNS) + " |",
              "|---|---|" + "---|" * len(COLUMNS)]
    for block, methods in summary["by_block"].items():
        for method, g in methods.items():
            cells = [f"{g['fixed']}/{g['fixable_runs']}" if key is None else _fmt(g[key]) for _, key in COLUMNS]
            lines.append(f"| {block} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "Total compute relative to one healthy run (all epochs run / the case's epochs), median over"
              " relaunched runs, warm-restart lineages vs cold relaunches only:", "",
              "| block | method | warm: runs | warm: ×1 run | cold: runs | cold: ×1 run |", "|---|---|---|---|---|---|"]
    for block, methods in summary["by_block"].items():
        for method, g in methods.items():
            lines.append(f"| {block} | {method} | {g['runs_warm']} | {_fmt(g['compute_rel_warm'])} | "
                         f"{g['runs_cold']} | {_fmt(g['compute_rel_cold'])} |")
    lines += ["", "Per case (fixed/runs, median epochs to the first healthy report; autofix: share of"
              " runs whose first acted-on symptom is in the case's label list):", ""]
    for block, cases in summary["by_case"].items():
        methods = list(next(iter(cases.values())))
        lines += [f"**{block}**", "", "| case | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for case, per in cases.items():
            cells = []
            for m in methods:
                g = per[m]
                if not g["runs"]:
                    cells.append("–")
                elif g["fixable_runs"]:
                    diag = g["correct_diagnosis_rate"]
                    cells.append(f"{g['fixed']}/{g['fixable_runs']}, {_fmt(g['median_epochs_to_fix'])}"
                                 + (f", diagnosis {_fmt(diag)}" if diag is not None else ""))
                else:
                    cells.append(_control_cell(g))
            lines.append(f"| {case} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _harm_table(runs_of(data))
    from bench_isolation import isolation_table

    lines += isolation_table(runs_of(data))
    lines += ["Targets:", ""] + [f"- {'MET' if t['met'] else 'MISSED' if t['met'] is False else 'n/a'}: "
                                 f"{t['target']}: {t['measured']}" for t in summary["targets"]]
    return "\n".join(lines) + "\n"


def runs_of(data: dict) -> list[dict]:
    """autofix's measured rows, once per (block, case, seed)."""
    return [r for r in data["runs"] if not r["skipped"] and r["method"] == "autofix" and r["space"] == "small"]


def _harm_table(rows: list[dict]) -> list[str]:
    """Per case: autofix's verdicts against the same run left alone (do no harm)."""
    lines = ["Do no harm, autofix against the same run left alone (per case: runs; controls touched = "
             "stopped or relaunched; verdicts; claims that hold = a healthy/fixed verdict keeping a model "
             "not below the run left alone - 0.02 and not at chance; median kept - alone):", "",
             "| block | case | runs | touched | verdicts | claims hold | kept - alone |",
             "|---|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["block"], r["case"]) for r in rows):
        group = [r for r in rows if (r["block"], r["case"]) == key]
        verdicts = ", ".join(f"{v} {sum(r.get('status') == v for r in group)}"
                             for v in ("healthy", "fixed", "unverified", "unfixed")
                             if any(r.get("status") == v for r in group))
        claims = [r["claim_ok"] for r in group if r.get("claim_ok") is not None]
        touched = [bool(r["false_alarm"]) for r in group if r["false_alarm"] is not None]
        gaps = [r["kept_score"] - r["left_alone"] for r in group
                if r.get("kept_score") is not None and r.get("left_alone") is not None]
        lines.append(f"| {key[0]} | {key[1]} | {len(group)} | "
                     f"{f'{sum(touched)}/{len(touched)}' if touched else '–'} | "
                     f"{verdicts or '–'} | {f'{sum(claims)}/{len(claims)}' if claims else '–'} | "
                     f"{_fmt(_median(gaps))} |")
    return lines + [""]


def _control_cell(g: dict) -> str:
    if g["false_alarm_rate"] is not None:
        return f"touched {_fmt(g['false_alarm_rate'])}, extra epochs {_fmt(g['controls_extra_epochs'])}"
    if g["loop_bug_relaunches"] is not None:
        return f"relaunches {_fmt(g['loop_bug_relaunches'])}, epochs {_fmt(g['loop_bug_epochs'])}"
    return f"extra epochs {_fmt(g['controls_extra_epochs'])}"


def write_outputs(data: dict, prefix: str) -> str:
    """Write PREFIX.json/.md/.png; return the Markdown."""
    summary = summarize(data)
    Path(prefix + ".json").write_text(json.dumps({**data, "summary": summary}, indent=1, default=str) + "\n")
    text = markdown(data, summary)
    Path(prefix + ".md").write_text(text)
    from bench_chart import chart

    chart(data, summary, prefix + ".png")
    return text
