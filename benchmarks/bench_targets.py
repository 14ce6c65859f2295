"""The issue's targets, checked against a bench run's own rows (met / missed / n/a, with numbers)."""

from __future__ import annotations

from typing import Any

__all__ = ["targets"]

DIVERGENCE = {"diverging_loss", "nonfinite_loss"}


def _t(target: str, met: bool | None, measured: str) -> dict[str, Any]:
    return {"target": target, "met": met, "measured": measured}


def _unique_autofix(runs: list[dict]) -> list[dict]:
    """autofix rows once per (case, seed, padding): the large-space rows repeat the small ones."""
    seen, out = set(), []
    for r in runs:
        key = (r["case"], r["seed"], r["pad_s"])
        if r["method"] == "autofix" and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _ratio_target(by_block: dict, blocks: list[str], key: str, rival: str, factor: float, label: str) -> dict:
    parts, verdicts = [], []
    for b in blocks:
        ours, theirs = by_block[b]["autofix"][key], by_block[b].get(rival, {}).get(key)
        if ours is None or theirs is None:
            parts.append(f"{b}: autofix {ours} vs {rival} {theirs}")
            continue
        verdicts.append(ours <= factor * theirs)
        parts.append(f"{b}: autofix {ours} vs {rival} {theirs} (limit {factor:g}x = {factor * theirs:.2f})")
    return _t(label, all(verdicts) if verdicts else None, "; ".join(parts) or "no such block in this run")


def _ported(af: list[dict]) -> list[dict[str, Any]]:
    """Issue 14's targets on models autofix did not write (block "ported-models"), and its two
    invariants on every autofix run that measured them."""
    out = []
    ported = [r for r in af if r["block"] == "ported-models"]
    broken = [r for r in ported if r["kind"] != "healthy"]
    healed = sum(r["healed"] for r in broken)
    out.append(_t("ported models: >= 90% of the broken cases healed (independent judge)",
                  healed >= 0.9 * len(broken) if broken else None, f"{healed}/{len(broken)} runs healed"))
    ctrl = [r for r in ported if r["kind"] == "healthy"]
    touched = [f"{r['case']} s{r['seed']}" for r in ctrl if r["false_alarm"]]
    out.append(_t("ported models: 0 healthy cases touched", not touched if ctrl else None,
                  f"{len(touched)}/{len(ctrl)} control runs touched"
                  + (f": {', '.join(touched[:6])}" if touched else "")))
    measured = [r for r in af if r.get("head_changed") is not None]
    heads = [f"{r['case']} s{r['seed']} {r['head_changed']}" for r in measured if r["head_changed"]]
    out.append(_t("no patch changes the output head except an output action", not heads if measured else None,
                  f"{len(measured) - len(heads)}/{len(measured)} runs clean"
                  + (f"; {'; '.join(heads[:6])}" if heads else "")))
    lr = [f"{r['case']} s{r['seed']}" for r in af if r.get("lr_at_init")]
    out.append(_t("no learning-rate action answers a loss non-finite since iteration 0",
                  not lr if measured else None,
                  f"{len(lr)} run(s) with one" + (f": {', '.join(lr[:6])}" if lr else "")))
    return out


def targets(runs: list[dict], by_block: dict) -> list[dict[str, Any]]:
    """Each target with its verdict and the measured numbers behind it."""
    af = _unique_autofix(runs)
    fixable = [r for r in af if r["kind"] in ("config", "late_onset")]
    out = []
    rates = {b: g["autofix"]["fix_rate"] for b, g in by_block.items() if g["autofix"]["fix_rate"] is not None}
    out.append(_t("fix rate >= 98% on config-fixable cases (autofix)",
                  all(v is not None and v >= 0.98 for v in rates.values()) if rates else None,
                  ", ".join(f"{b} {v}" for b, v in rates.items())))
    diag = [r["diagnosis_correct"] for r in af if r["kind"] != "healthy"]
    out.append(_t("correct diagnosis >= 90% (autofix, fixable + loop-bug cases)",
                  (sum(diag) / len(diag) >= 0.9) if diag else None, f"{sum(diag)}/{len(diag)} correct"))
    ctrl = [r for r in af if r["kind"] == "healthy"]
    alarms = sum(bool(r["false_alarm"]) for r in ctrl)
    out.append(_t("zero healthy controls touched (stopped or relaunched)", alarms == 0 if ctrl else None,
                  f"{alarms}/{len(ctrl)} control runs stopped or relaunched"))
    claims = [r for r in af if r.get("claim_ok") is not None]
    bad = [f"{r['case']} s{r['seed']}: {r['status']} kept {r['kept_score']} vs alone {r['left_alone']}"
           for r in claims if not r["claim_ok"]]
    out.append(_t("no healthy/fixed claim below the run left alone - 0.02 or at chance", not bad if claims else None,
                  f"{len(claims) - len(bad)}/{len(claims)} claims hold"
                  + (f"; broken: {'; '.join(bad[:6])}" if bad else "")))
    native = [r for r in fixable if r["block"] == "native-small"]
    fixed = sum(r["healed"] for r in native)
    out.append(_t("the sick zoo's fix rate does not fall (native-small >= 65/80, the 2026-11-27 bench)",
                  fixed >= 65 * len(native) / 80 if native else None, f"{fixed}/{len(native)}"))
    div = [r for r in af if r["kind"] != "healthy" and r["fault"] in ("lr_too_high", "lr_too_high_late", "oscillating")]
    within = [r["detection_reports"] is not None and r["detection_reports"] <= 2 for r in div]
    out.append(_t("divergence / NaN detected within 2 reports of the onset "
                  "(LR-too-high, late-onset, oscillating cases)",
                  all(within) if within else None, f"{sum(within)}/{len(within)} runs"))
    sizes = sorted(len(r["patch_keys"]) for r in fixable if r["healed"])
    median = sizes[len(sizes) // 2] if sizes else None
    out.append(_t("median patch size <= 2 keys (autofix, healed runs)",
                  median <= 2 if median is not None else None, f"median {median} over {len(sizes)} healed runs"))
    parts, verdicts = [], []
    for b, g in by_block.items():
        if "random_repair" in g and g["random_repair"]["runs"]:
            verdicts.append(g["autofix"]["fixed"] > g["random_repair"]["fixed"])
            parts.append(f"{b}: {g['autofix']['fixed']} vs {g['random_repair']['fixed']}")
    out.append(_t("strictly more fixes than random repair at equal budget", all(verdicts) if verdicts else None,
                  "; ".join(parts)))
    small = [b for b in by_block if b.endswith("-small")]
    large = [b for b in by_block if b.endswith("-large")]
    out.append(_ratio_target(by_block, small, "median_epochs_config", "asha", 1.0,
                             "config faults, small space: autofix median epochs-to-fix <= ASHA's (unfixed = budget)"))
    out.append(_ratio_target(by_block, large, "median_epochs_to_fix_censored", "asha", 1 / 3,
                             "15+-knob space: autofix median epochs-to-fix <= 1/3 of ASHA's"))
    out.append(_ratio_target(by_block, large, "median_epochs_to_fix_censored", "pbt", 1 / 5,
                             "15+-knob space: autofix median epochs-to-fix <= 1/5 of PBT's"))
    out.append(_ratio_target(by_block, list(by_block), "median_epochs_late_onset", "asha", 1 / 5,
                             "late-onset: autofix median epochs-to-fix <= 1/5 of ASHA's"))
    late = {b: g["autofix"]["compute_rel_late_onset"] for b, g in by_block.items()}
    late = {b: v for b, v in late.items() if v is not None}
    out.append(_t("late-onset: autofix total compute <= 1.1x one healthy run",
                  all(v <= 1.1 for v in late.values()) if late else None,
                  ", ".join(f"{b} {v}x" for b, v in late.items())))
    out += _ported(af)
    from bench_isolation import isolation_targets

    out += isolation_targets(af, _t)
    bug = [r for r in af if r["kind"] == "loop_bug"]
    burned = {b: g[m]["loop_bug_epochs"] for b, g in by_block.items() for m in g if m != "autofix" and g[m]["runs"]}
    out.append(_t("training-loop bug: zero relaunches (autofix)",
                  all(r["relaunches"] == 0 for r in bug) if bug else None,
                  f"relaunches {[r['relaunches'] for r in bug]}; searches' median epochs there: "
                  + ", ".join(f"{k} {v}" for k, v in burned.items() if v is not None)))
    named = [r for r in bug if r.get("first_named") is not None]
    missed = [f"{r['case']} s{r['seed']}: {r['diagnosis']} in {r['trials']} attempt(s)" for r in named
              if not (r["first_named"] and r["trials"] == 1)]
    out.append(_t("every loop-bug case named in its first attempt, 1 attempt in all (autofix)",
                  not missed if named else None,
                  f"{len(named) - len(missed)}/{len(named)} named at once" + (f"; missed: {'; '.join(missed[:6])}"
                                                                               if missed else "")))
    skipped = sum(r.get("skipped_remedies") or 0 for r in af)
    hinted = sum(r.get("skipped_hinted") or 0 for r in af)
    out.append(_t("every remedy skipped for want of a knob names the knob to map (autofix)",
                  hinted == skipped if skipped else None,
                  f"{hinted}/{skipped} skipped remedies name their knob; paths: "
                  + (", ".join(sorted({k for r in af for k in r.get("knob_hints") or []})) or "none")))
    extra = [r["total_epochs"] - r["case_epochs"] for r in ctrl]
    out.append(_t("healthy controls: zero extra compute (autofix)",
                  all(e <= 0 for e in extra) and all(r["relaunches"] == 0 for r in ctrl) if ctrl else None,
                  f"extra epochs per control run {extra}"))
    return out
