"""report.html's chart in optimizer steps: the training loss between epochs, from the reports the
managed harness sends between them (``training.step_reports``), with the spike guard's rewinds
marked where they went back from."""

from __future__ import annotations

import html
import math

from autofix.reports.figures import figure, img
from autofix.reports.reporting import Report

__all__ = ["steps_section"]


def steps_section(report: Report) -> str:
    """The ``steps`` section, or "" when no attempt reported between epochs."""
    shown = [a for a in report.attempts if len(a.steps) >= 2]
    if not shown:
        return ""
    fig = figure(10, 4)
    ax = fig.subplots()
    values: list[float] = []
    for n, a in enumerate(shown):
        color = f"C{n % 10}"
        points = [(p[0], p[1], p[2]) for p in a.steps if p[0] is not None]
        xs = [x for x, _, _ in points]
        means = [y if y is not None and math.isfinite(y) else math.nan for _, y, _ in points]
        ax.plot(xs, means, color=color, lw=1.2, label=f"{a.id}: mean of the steps")
        ax.plot(xs, [m if m is not None and math.isfinite(m) else math.nan for _, _, m in points], color=color,
                lw=0.6, alpha=0.4, label=f"{a.id}: largest")
        values += [v for v in means if math.isfinite(v)]
        rewound = sorted({p[3] for p in a.steps if len(p) > 3 and p[3] is not None})
        for k, step in enumerate(rewound):
            ax.axvline(step, color="#c0392b", ls=":", lw=1, label="rewound a spike" if (n, k) == (0, 0) else None)
    if values and min(values) > 0 and max(values) / min(values) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    caption = ("Reports made between epochs (training.step_reports): the mean and the largest training loss of "
               "the steps each covers; dotted red: a spike the guard rewound in place (the step it was found at).")
    return (f"<section id=\"steps\"><h2>Training loss in steps</h2>{img(fig, 'training loss per step')}"
            f"<p class=\"muted\">{html.escape(caption)}</p></section>")
