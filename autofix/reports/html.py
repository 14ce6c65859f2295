"""``report.html``: the run as one self-contained page (charts inlined as PNG, no network).

Three sections: ``chart`` (the watched metric of every attempt, with where a symptom fired and
where a patch took over), ``lineage`` (the tree of attempts, each with its patch, policy,
evidence and outcome) and ``winner`` (its per-epoch curves, read from the Tune trial's
``result.json``, and its final config as YAML). Every string from the run is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from autofix.reports.diagnose import attempt_rows
from autofix.reports.figures import figure, img
from autofix.reports.reporting import AttemptReport, Report
from autofix.reports.stepchart import steps_section

__all__ = ["render_html", "write_html"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CURVES = (("train_loss", "val_loss"), ("val_accuracy", "val_macro_f1"))
_CSS = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{border-bottom:1px solid #ccc;padding-bottom:4px}
table{border-collapse:collapse;margin:4px 0 8px}td,th{border:1px solid #ccc;padding:2px 6px;
font-size:13px;text-align:left;vertical-align:top}ul.tree{list-style:none;padding-left:28px;
border-left:2px solid #ddd}ul.tree.root{padding-left:0;border:none}.card{border:1px solid #bbb;
border-radius:6px;padding:6px 10px;margin:6px 0;background:#fafafa}.badge{padding:1px 6px;
border-radius:4px;color:#fff;font-size:12px}.healthy{background:#2a8a2a}.sick{background:#c0392b}
.other{background:#777}pre{background:#f4f4f4;padding:8px;overflow:auto;font-size:13px}
img{max-width:100%}.muted{color:#666;font-size:13px}"""


def write_html(report: Report, path: str | Path, tune_dir: str | Path | None = None) -> Path:
    """Write ``report.html`` for ``report`` at ``path``.

    Per-epoch metrics of the winner are read from ``tune_dir`` (default: the ``tune/`` folder
    next to ``path``); the page says so when they cannot be found.
    """
    path = Path(path)
    tune = Path(tune_dir) if tune_dir is not None else path.parent / "tune"
    path.write_text(render_html(report, tune), encoding="utf-8")
    return path


def render_html(report: Report, tune_dir: str | Path | None = None) -> str:
    """The page as a string (see :func:`write_html`)."""
    e = _esc
    head = report.summary().splitlines()[0] if report.attempts else f"autofix: {report.status}"
    facts = [("status", report.status), ("winner", report.winner or "none"),
             ("keep", f"{report.keep}: {report.keep_reason}" if report.keep else "none"),
             ("metric", f"{report.metric} ({report.mode})"),
             ("success", f"the loss falls by {report.min_drop:.0%} from its first report, not at chance; a fix "
                         "must beat the run left alone at the same step"),
             ("judged by", "; ".join(report.judged_by) or "-"),
             *(("not judged", line) for line in report.missing_inputs),
             *(("not detected", line) for line in report.blind_detectors),
             ("ended because", report.ended_because), ("duration", f"{report.duration_s:.1f} s")]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    return (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>autofix report: {e(report.name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>autofix report: {e(report.name)}</h1><p>{e(head)}</p><table>{rows}</table>"
        f"<section id=\"chart\"><h2>{e(report.metric)} of every attempt</h2>{_chart_section(report)}</section>"
        f"{steps_section(report)}"
        f"<section id=\"lineage\"><h2>Lineage</h2>{_tree(report, None)}</section>"
        f"{_isolation_section(report)}"
        f"<section id=\"winner\"><h2>Winner</h2>{_winner_section(report, tune_dir)}</section>"
        "</body></html>\n"
    )


# -- chart ---------------------------------------------------------------------------------
def _chart_section(report: Report) -> str:
    if not any(a.series for a in report.attempts):
        return "<p class=\"muted\">no attempt reported the watched metric</p>"
    fig = figure(10, 5)
    ax = fig.subplots()
    by_id = {a.id: a for a in report.attempts}
    decided = [a.id for a in report.attempts if a.decision]
    for n, a in enumerate(a for a in report.attempts if a.series):
        _plot_attempt(ax, a, by_id, f"C{n % 10}", decided)
    _finish_axes(ax, report.metric, [y for a in report.attempts for _, y in _points(a.series)])
    ax.margins(x=0.1, y=0.12)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + _marker_legend(), fontsize=9, loc="best")
    caption = ("X: a symptom a policy answered; diamond: where a patch took over; dashed: epochs a warm "
               "restart inherited from its parent's checkpoint; triangle at the top: a non-finite value.")
    return img(fig, f"{report.metric} per attempt") + f"<p class=\"muted\">{_esc(caption)}</p>"


def _plot_attempt(ax: Any, a: AttemptReport, by_id: dict[str, AttemptReport], color: str, decided: list[str]) -> None:
    pts = _points(a.series)
    xs, ys = [x for x, _ in pts], [y if math.isfinite(y) else math.nan for _, y in pts]
    k = _inherited(a, by_id)
    if k:
        ax.plot(xs[:k], ys[:k], ls="--", lw=2.5, color=color, alpha=0.6)
    start = max(k - 1, 0)
    warm = f", warm from {a.parent} at epoch {xs[k - 1]}" if k else ""
    ax.plot(xs[start:], ys[start:], color=color, marker="o", ms=3, label=f"{a.id} ({a.outcome}{warm})")
    if a.parent is not None and k < len(xs):
        ax.plot([xs[k]], [ys[k]], marker="D", ms=11, mfc="none", mew=2, color=color, ls="", zorder=6)
    bad = [x for x, y in pts if not math.isfinite(y)]
    if bad:
        ax.plot(bad, [0.97] * len(bad), marker="^", ms=9, color=color, ls="", transform=ax.get_xaxis_transform())
    if a.decision:
        it = a.decision["finding"]["iteration"]
        y = next((v for x, v in zip(xs, ys, strict=True) if x == it and math.isfinite(v)), None)
        y = y if y is not None else next((v for v in reversed(ys) if math.isfinite(v)), None)
        if y is not None:
            ax.plot([it], [y], marker="X", ms=12, color="#c0392b", mec="black", ls="", zorder=5)
            ax.annotate(f"{a.id}: {a.decision['finding']['symptom']}", (it, y), textcoords="offset points",
                        xytext=(8, 6 + 13 * decided.index(a.id)), fontsize=9, color="#c0392b")


def _inherited(a: AttemptReport, by_id: dict[str, AttemptReport]) -> int:
    """How many leading points of a warm restart's series are its parent's (up to the resume point)."""
    parent = by_id.get(a.parent or "")
    if a.start != "warm" or parent is None:
        return 0
    theirs = dict(_points(parent.series))
    k = 0
    for x, y in _points(a.series):
        if x not in theirs or not _same(theirs[x], y):
            break
        k += 1
    return k


def _marker_legend() -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], marker="X", color="#c0392b", mec="black", ls="", ms=10, label="symptom fired"),
            Line2D([], [], marker="D", mfc="none", color="#444", ls="", ms=8, label="patch took over"),
            Line2D([], [], ls="--", color="#444", label="inherited (warm)")]


def _finish_axes(ax: Any, ylabel: str, values: list[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("epoch (iteration)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


# -- lineage -------------------------------------------------------------------------------
def _tree(report: Report, parent: str | None) -> str:
    kids = [a for a in report.attempts if a.parent == parent]
    if not kids:
        return ""
    items = "".join(f"<li id=\"attempt-{_esc(a.id)}\">{_card(report, a)}{_tree(report, a.id)}</li>" for a in kids)
    return f"<ul class=\"tree{' root' if parent is None else ''}\">{items}</ul>"


def _card(report: Report, a: AttemptReport) -> str:
    e = _esc
    kind = a.outcome if a.outcome in ("healthy", "sick") else "other"
    star = " &#9733; winner" if a.id == report.winner else ""
    gain = f", improvement {a.improvement:.1%}" if a.improvement is not None else ""
    out = [f"<div class=\"card\"><b>{e(a.id)}</b>{star} <span class=\"badge {kind}\">{e(a.outcome)}</span> "
           f"<span class=\"muted\">{e(a.start)} start, trial {e(a.trial_id or '-')}{e(gain)}</span>"]
    if a.policy:
        rivals = [r for r in a.race if r != a.id]
        racing = f", racing {e(', '.join(rivals))}" if rivals else ""
        out.append(f"<div>launched by policy <b>{e(a.policy)}</b>{racing} with:</div>")
    if a.patch:
        cells = "".join(f"<tr><td>{e(c['path'])}</td><td>{e(_fmt(c['from']))}</td><td>{e(_fmt(c['to']))}</td></tr>"
                        for c in a.patch)
        out.append(f"<table><tr><th>path</th><th>from</th><th>to</th></tr>{cells}</table>")
    if a.findings:
        cells = "".join(f"<tr><td>{e(f['symptom'])}</td><td>{e(f['iteration'])}</td><td>{e(f['reason'])}</td>"
                        f"<td>{e(', '.join(f'{k}={_fmt(v)}' for k, v in f['evidence'].items()))}</td></tr>"
                        for f in a.findings)
        out.append("<table><tr><th>symptom</th><th>epoch</th><th>reason</th><th>evidence</th></tr>"
                   f"{cells}</table>")
    if a.decision:
        d = a.decision
        out.append(f"<div>decision: policy <b>{e(d['policy'])}</b>: {e(d['reason'])}</div>")
        out.extend(f"<div class=\"muted\">skipped: {e(s)}</div>" for s in d.get("skipped") or [])
    else:
        out.append(f"<div>outcome: {e(a.reason)}</div>")
    out.extend(f"<div class=\"muted\">hint: {e(h)}</div>" for h in a.hints)
    if a.error:
        trace = "\n".join(_ANSI.sub("", a.error).strip().splitlines()[-12:])
        out.append(f"<details><summary>the trial's error (last lines)</summary><pre>{e(trace)}</pre></details>")
    return "".join(out) + "</div>"


# -- isolation ladder ------------------------------------------------------------------------
def _isolation_section(report: Report) -> str:
    """The isolation ladder (autofix.rules.ladder): each rung's verdict and numbers, and its cost."""
    e, ladder = _esc, report.isolation
    if not ladder.get("attempt"):
        return ""
    if ladder.get("not_applicable"):
        return f"<section id=\"isolation\"><h2>Isolation ladder</h2><p>{e(ladder['not_applicable'])}</p></section>"
    rows = "".join(
        f"<tr><td>{e(r.get('attempt'))}</td><td>{e(r.get('rung'))}</td><td>{e(r.get('part') or '-')}</td>"
        f"<td>{e(r.get('conclusion'))}</td>"
        f"<td>{e(', '.join(f'{k}={_fmt(v)}' for k, v in (r.get('evidence') or {}).items()))}</td>"
        f"<td>{e(_fmt(r.get('examples')))}</td></tr>" for r in ladder.get("rungs") or [])
    cost = ladder.get("cost") or {}
    share = f"{cost['share']:.1%}" if cost.get("share") is not None else "-"
    return (f"<section id=\"isolation\"><h2>Isolation ladder on {e(ladder['attempt'])}</h2>"
            f"<p><b>{e(ladder.get('conclusion') or 'not concluded')}</b></p>"
            "<table><tr><th>attempt</th><th>rung</th><th>part</th><th>conclusion</th><th>evidence</th>"
            f"<th>examples</th></tr>{rows}</table><p class=\"muted\">cost: {e(_fmt(cost.get('examples')))} examples "
            f"= {e(share)} of one attempt's {e(_fmt(cost.get('attempt_examples')))} (counted as examples through a "
            f"model's forward pass, with its backward pass when trained); {e(_fmt(cost.get('seconds')))} s of rung "
            f"trials against {e(_fmt(cost.get('attempt_seconds')))} s for one attempt</p></section>")


# -- winner --------------------------------------------------------------------------------
def _winner_section(report: Report, tune_dir: str | Path | None) -> str:
    if report.winner is None:
        return f"<p>No attempt met the success criterion: {_esc(report.ended_because)}.</p>"
    w = report.attempt(report.winner)
    rows = attempt_rows(report, tune_dir, w.id) if tune_dir is not None else {}
    if rows:
        curves = _curves(rows, w.id)
    else:
        rows = {x: {report.metric: y} for x, y in _points(w.series)}
        curves = ("<p class=\"muted\">per-epoch metrics not found (no readable tune/"
                  f"{_esc(w.id)}-{_esc(w.trial_id)}/result.json); showing the watched metric only.</p>"
                  + _curves(rows, w.id))
    changed = "".join(f"<tr><td>{_esc(p)}</td><td>{_esc(_fmt(old))}</td><td>{_esc(_fmt(new))}</td></tr>"
                      for p, (old, new) in report.net_patch(w.id).items())
    net = (f"<h3>Changed from your spec</h3><table><tr><th>path</th><th>yours</th><th>winner</th></tr>{changed}"
           "</table>") if changed else "<p>The winner runs your config unchanged.</p>"
    final = {_config_key(w.config): w.config}
    dump = yaml.safe_dump(json.loads(json.dumps(final, default=str)), sort_keys=False)
    return (f"<p><b>{_esc(w.id)}</b>: {_esc(w.reason)}</p>{curves}{net}"
            f"<h3>Final config (paste into your spec)</h3><pre>{_esc(dump)}</pre>")


def _curves(rows: dict[int, dict[str, float]], name: str) -> str:
    groups = [[m for m in group if any(m in r for r in rows.values())] for group in CURVES]
    groups = [g for g in groups if g] or [sorted({k for r in rows.values() for k in r})[:1]]
    fig = figure(10, 4)
    for ax, group in zip(fig.subplots(1, len(groups), squeeze=False)[0], groups, strict=True):
        for m in group:
            xs = [i for i in rows if m in rows[i]]
            ax.plot(xs, [rows[i][m] if math.isfinite(rows[i][m]) else math.nan for i in xs], marker="o", ms=3, label=m)
        _finish_axes(ax, " / ".join(group), [rows[i][m] for m in group for i in rows if m in rows[i]])
        ax.legend(fontsize=9)
    fig.suptitle(f"{name}: per-epoch metrics")
    return img(fig, f"{name} per-epoch metrics")


# -- helpers -------------------------------------------------------------------------------
def _points(series: list) -> list[tuple[int, float]]:
    """``(iteration, value)`` with report strings ("NaN", "Infinity") back as floats."""
    out = []
    for x, y in series:
        try:
            out.append((int(x), float(y)))
        except (TypeError, ValueError):
            continue
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)


def _config_key(config: dict[str, Any]) -> str:
    from autofix.spec.training import TrainingSpec

    return "training" if config and set(config) <= set(TrainingSpec.model_fields) else "config"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)
