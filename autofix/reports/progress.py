"""What ``autofix run`` shows while it works.

On a terminal: a live, compact table (rich) with one row per attempt (parent, epoch, watched
metric and its trend, active findings, the patch it carries, outcome) and one printed line per
decision as it happens. Elsewhere (CI logs, pipes) or with ``--plain``: one plain line per
event. The data shown are the engine's own attempts and journal records.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from autofix.rules.lineage import Attempt

__all__ = ["Progress", "event_line"]

_BARS = "▁▂▃▄▅▆▇█"


def _step_line(who: str, record: dict[str, Any]) -> str | None:
    step, planned, steps = record.get("step"), record.get("planned"), record.get("steps") or 0
    if not step or not planned or math.floor(10 * step / planned) == math.floor(10 * (step - steps) / planned):
        return None
    mean = record.get("loss_mean")
    loss = f"{mean:.4g}" if isinstance(mean, float) else "?"
    return f"{who} step {step:g}/{planned:g}: training loss {loss} (mean of the last {steps:g} steps)"


def event_line(record: dict[str, Any]) -> str | None:
    """The one-line text of a journal record, or None for records not worth a line."""
    event, who = record["event"], f"[{record.get('attempt', '')}]"
    if event == "attempt_launched":
        if record.get("role") == "control":
            return (f"{who} launched ({record['start']}): {record.get('parent')} continued unpatched, to compare "
                    "the fixes with the run left alone at the same step")
        patch = ", ".join(f"{c['path']}={c['to']}" for c in record["patch"]) or "the spec's config"
        return f"{who} launched ({record['start']}) with {patch}"
    if event == "compared":
        return f"{who} compared: {record['why']}"
    if event == "settled":
        return f"settled ({record['status']}): keep {record['keep']}: {record['reason']}"
    if event == "finding":
        return f"{who} epoch {record['iteration']}: {record['symptom']}: {record['reason']}"
    if event == "decision":
        return f"{who} {record['reason']}"
    if event == "judgement_inputs":
        lines = ["judged by: " + "; ".join(record["judged_by"])]
        return "\n".join(lines + [f"not judged: {line}" for line in record["missing"]])
    if event == "rewind":  # the trial's spike guard answered a spike in place (autofix.harness.spikes)
        so_far = f"({record['rewinds']:g} so far, {record['rewound_steps']:g} steps given back)"
        if record.get("restored") == 0.0:  # the weights were sound: the batch alone was skipped
            return f"{who} skipped a loss spike's batch at step {record['from_step']:g}, weights sound {so_far}"
        return f"{who} rewound a loss spike: step {record['from_step']:g} -> {record['to_step']:g} {so_far}"
    if event == "step_report":  # between epochs: a line each tenth of the planned steps
        return _step_line(who, record)
    if event == "detectors_blind":  # detectors no report feeds: they can find nothing
        return "\n".join(f"not detected: {line}" for line in record["lines"])
    if event == "knob_hint":
        return f"{who} skipped a remedy: {record['hint']}"
    if event == "notice":  # something autofix cannot check for this run, said once at its start
        return f"notice: {record['text']}"
    if event == "attempt_retried":  # Tune retries a raising trial (ray.max_failures)
        return f"{who} raised ({record['error']}); Ray Tune retries it (failure {record['failures']})"
    if event == "run_interrupted":
        if record.get("force"):
            return (f"interrupted again ({record['signal']}): quitting now; the run stays resumable: "
                    f"{record['resume']}")
        return (f"interrupted ({record['signal']}): stopping the trials at their last checkpoint "
                "(again to quit at once)")
    if event == "attempt_finished" and record["outcome"] != "sick":  # a sick one was just explained
        return f"{who} {record['outcome']}: {record['reason']}"
    return None


def sparkline(values: list[float], width: int = 10) -> str:
    tail = [v for v in values[-width:] if math.isfinite(v)]
    if not tail:
        return "nan"
    lo, hi = min(tail), max(tail)
    span = (hi - lo) or 1.0
    return "".join(_BARS[int((v - lo) / span * (len(_BARS) - 1))] for v in tail)


class Progress:
    """Feed it journal records (:meth:`event`) and attempts after each report (:meth:`report`)."""

    def __init__(self, metric: str, live: bool | None = None, stream: Any = None) -> None:
        self.metric = metric
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.rows: dict[str, Attempt] = {}
        self._live: Any = None

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)
            self._live = None

    def event(self, record: dict[str, Any]) -> None:
        line = event_line(record)
        if line is None:
            return
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
            self._live.update(self._table())
        else:
            print(line, file=self.stream, flush=True)

    def report(self, attempt: Attempt) -> None:
        self.rows[attempt.id] = attempt
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("attempt", "parent", "epoch", self.metric, "trend", "active", "patch", "state"):
            table.add_column(col, no_wrap=col not in ("active", "patch"), overflow="fold")
        for a in self.rows.values():
            values = [v for _, v in a.history.series(self.metric)]
            last = f"{values[-1]:.4g}" if values else "-"
            patch = ", ".join(f"{c.path}={c.new}" for c in a.patch) or "-"
            table.add_row(a.id, a.parent or "-", str(a.history.last_iteration), last, sparkline(values),
                          ", ".join(a.active) or "-", patch, a.outcome)
        return table
