"""Block "isolation" (issue 18): where autofix localised each case, and what its ladder cost.

Per run: the part autofix named (``training_step`` / ``model`` / ``data``), from its isolation
ladder when one ran, else from the symptom the user's first attempt was stopped on (a training-
code bug names the training step; a model or data symptom its part); how many user attempts it
took to get there; the ladder's cost in examples (and seconds) against one attempt; and the
learning-rate or initialisation relaunches launched on a data or training-step case.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PART_OF", "isolation_table", "isolation_targets", "measure"]

# The part a symptom names when no ladder ran (the symptom autofix stopped the first attempt on).
PART_OF = {
    **dict.fromkeys(("detached_loss", "no_update", "missing_zero_grad", "loss_broadcast", "nan_metric",
                     "output_loss_mismatch"), "training_step"),
    **dict.fromkeys(("dying_relu", "vanishing_gradients", "saturated_activations", "nonfinite_at_init",
                     "baseline_learns"), "model"),
    **dict.fromkeys(("unnormalized_input", "label_imbalance", "constant_inputs"), "data"),
}
_LR_INIT = ("optimizer.lr", "scheduler", "init")


def _user_attempts(report: Any) -> list[Any]:
    return [a for a in report.attempts if a.trial_id is not None and a.role != "isolation"]


def measure(report: Any, result: Any) -> None:
    """Fill the isolation fields of ``result`` (a MethodResult) from autofix's report."""
    ladder = report.isolation or {}
    users = _user_attempts(report)
    rungs = [a for a in report.attempts if a.role == "isolation" and a.trial_id is not None]
    result.ladder_rungs = len(rungs)
    cost = ladder.get("cost") or {}
    result.ladder_share = cost.get("share")
    seconds, whole = cost.get("seconds"), cost.get("attempt_seconds")
    result.ladder_seconds_share = round(seconds / whole, 4) if seconds is not None and whole else None
    for index, attempt in enumerate(users):  # the first attempt that named a part: its ladder or its symptom
        symptom = ((attempt.decision or {}).get("finding") or {}).get("symptom")
        part = ladder.get("part") if attempt.id == ladder.get("attempt") else PART_OF.get(symptom)
        if part in ("training_step", "model", "data"):
            result.part, result.part_attempts = part, index + 1
            break
    result.lr_init_relaunches = sum(1 for a in users if any(str(c["path"]).split(".")[0] in ("scheduler", "init")
                                                            or c["path"] == "optimizer.lr" for c in a.patch))


def isolation_table(rows: list[dict]) -> list[str]:
    """Per run of the block: expected part, part named, user attempts, ladder rungs and cost."""
    rows = [r for r in rows if r["block"] == "isolation"]
    if not rows:
        return []
    lines = ["Isolation (block \"isolation\"): the part named (ladder, or the first attempt's symptom), user "
             "attempts until then, ladder rungs, ladder cost in examples (and seconds) / one attempt's, "
             "LR or init relaunches:", "",
             "| case | seed | expected | named | user attempts | rungs | cost (examples) | cost (s) "
             "| LR/init relaunches | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = f"{r['ladder_share']:.1%}" if r.get("ladder_share") is not None else "–"
        secs = f"{r['ladder_seconds_share']:.1%}" if r.get("ladder_seconds_share") is not None else "–"
        lines.append(f"| {r['case']} | {r['seed']} | {r.get('expected_part') or 'healthy'} | {r.get('part') or '–'} | "
                     f"{r.get('part_attempts') or '–'} | {r.get('ladder_rungs', 0)} | {share} | {secs} | "
                     f"{r.get('lr_init_relaunches', 0)} | {r.get('status')} |")
    return lines + [""]


def isolation_targets(af: list[dict], t: Any) -> list[dict[str, Any]]:
    """Issue 18's targets over the block's autofix rows (``t``: bench_targets._t)."""
    rows = [r for r in af if r["block"] == "isolation"]
    if not rows:
        return []
    sick = [r for r in rows if r.get("expected_part")]
    right = [r for r in sick if r.get("part") == r["expected_part"] and r.get("part_attempts") == 1]
    missed = [f"{r['case']} s{r['seed']}: {r.get('part')} after {r.get('part_attempts')}"
              for r in sick if r not in right]
    out = [t("isolation: each case localised to the right part with 1 user attempt (plus the ladder)",
             not missed if sick else None,
             f"{len(right)}/{len(sick)}" + (f"; missed: {'; '.join(missed)}" if missed else ""))]
    ran = [r for r in rows if r.get("ladder_share") is not None]
    over = [f"{r['case']} s{r['seed']} {r['ladder_share']:.1%}" for r in ran if r["ladder_share"] > 0.1]
    shares = sorted(r["ladder_share"] for r in ran)
    out.append(t("isolation: ladder cost <= 10% of one attempt (examples processed)", not over if ran else None,
                 f"{len(ran)} ladders, max {max(shares):.1%}" if shares else "no ladder ran"))
    secs = [r["ladder_seconds_share"] for r in ran if r.get("ladder_seconds_share") is not None]
    out.append(t("isolation: ladder cost in trial seconds (measured, for comparison; not a target)", None,
                 f"median {sorted(secs)[len(secs) // 2]:.1%}, max {max(secs):.1%}" if secs else "no timings"))
    ctrl = [r for r in rows if r["kind"] == "healthy"]
    laddered = [f"{r['case']} s{r['seed']}" for r in ctrl if r.get("ladder_rungs")]
    out.append(t("isolation: 0 ladders on healthy controls", not laddered if ctrl else None,
                 f"{len(laddered)}/{len(ctrl)} control runs" + (f": {', '.join(laddered)}" if laddered else "")))
    bad = [f"{r['case']} s{r['seed']} ({r['lr_init_relaunches']})" for r in sick
           if r["expected_part"] in ("data", "training_step") and r.get("lr_init_relaunches")]
    out.append(t("isolation: no LR or init relaunch on a data or training-step case", not bad if sick else None,
                 f"{len(bad)} run(s) with one" + (f": {', '.join(bad)}" if bad else "")))
    return out
