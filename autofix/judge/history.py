"""The history of one attempt's reports, keyed by iteration.

Keyed by iteration (not appended) because a trial restored by Ray Tune replays the reports
after its last checkpoint: a replay must overwrite, not look like a new jump in the loss.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PLANNED", "STEP", "STEP_REPORT", "History", "as_float"]

STEP = "step"  # optimizer steps done when a report was made (reported by the harness / trainable)
PLANNED = "planned_steps"  # optimizer steps the run plans in all
STEP_REPORT = "step_report"  # 1 on a report made between epochs (autofix.harness.stepreports): not an epoch's


def as_float(value: Any) -> float | None:
    """A reported value as a float, or None when it is not a number (strings, lists, bools)."""
    kind = type(value)
    if kind is float or kind is int:  # nearly every reported value: skip the checks below
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy  # numpy scalars are common in user metrics

            if isinstance(value, numpy.generic) and numpy.issubdtype(type(value), numpy.number):
                return float(value)
        except ImportError:  # pragma: no cover - numpy ships with every dependency we use
            pass
        return None
    return float(value)


class History:
    """Numeric metrics per iteration for one attempt; a window view per metric for detectors."""

    def __init__(self, rows: Mapping[int, Mapping[str, float]] | None = None) -> None:
        self._rows: dict[int, dict[str, float]] = {int(k): dict(v) for k, v in (rows or {}).items()}
        # Iterations in order, kept between reports: every detector reads the history on every
        # report, and sorting it each time made the engine O(n log n) per lookup.
        self._order: list[int] = sorted(self._rows)

    def record(self, iteration: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Keep the numeric values of one report; returns what was kept."""
        row: dict[str, float] = {}
        for key, value in metrics.items():  # a loop, not as_float per value: the engine's hot path
            kind = type(value)
            if kind is float:
                row[key] = value
            elif kind is int:
                row[key] = float(value)
            elif (number := as_float(value)) is not None:
                row[key] = number
        iteration = int(iteration)
        if iteration not in self._rows:
            if self._order and iteration < self._order[-1]:
                bisect.insort(self._order, iteration)
            else:
                self._order.append(iteration)
        self._rows[iteration] = row
        return row

    def __getstate__(self) -> dict[str, Any]:
        return {"_rows": self._rows}  # the order is derived: older pickles lack it

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._rows = state["_rows"]
        self._order = sorted(self._rows)

    @property
    def iterations(self) -> list[int]:
        return list(self._order)

    @property
    def last_iteration(self) -> int | None:
        return self._order[-1] if self._order else None

    def last(self, metric: str) -> float | None:
        """The last report's value of ``metric`` (NaN/Inf included); None when it lacks it."""
        return self._rows[self._order[-1]].get(metric) if self._order else None

    def rows_view(self, iteration: int) -> dict[str, float]:
        """The report at ``iteration`` (the history's own dict: read, do not change it)."""
        return self._rows[iteration]

    def last_row(self) -> dict[str, float]:
        """The last report's numeric values (the history's own dict: read, do not change it)."""
        return self._rows[self._order[-1]] if self._order else {}

    def tail(self, count: int) -> list[tuple[int, dict[str, float]]]:
        """The last ``count`` reports newest first, as (position from the first report, row);
        the rows are the history's own dicts: read, do not change them."""
        start = max(0, len(self._order) - count)
        return [(i, self._rows[self._order[i]]) for i in range(len(self._order) - 1, start - 1, -1)]

    def position(self, iteration: int | None) -> float:
        """Where the report at ``iteration`` stands in training: its ``step``, else the iteration.
        ``None`` (the ``last_iteration`` of a history without reports) is a ``KeyError``."""
        if iteration is None:
            raise KeyError("no report yet")
        step = self._rows[iteration].get(STEP)
        return step if step is not None and math.isfinite(step) else float(iteration)

    def recent(self, metric: str, steps: float, before: int = 0) -> list[tuple[float, float]]:
        """``(step, value)`` of the finite ``metric`` values of the reports made in the last
        ``steps`` optimizer steps (the last report included), and of the ``before`` reports
        just before them, oldest first. Reads back from the end only as far as that reaches
        (a bounded window, not the whole history)."""
        if not self._order:
            return []
        since = self.position(self._order[-1]) - steps
        out: list[tuple[float, float]] = []
        for i in reversed(self._order):
            at = self.position(i)
            if at < since:
                if before <= 0:
                    break
            value = self._rows[i].get(metric)
            if value is not None and math.isfinite(value):
                before -= at < since
                out.append((at, value))
        out.reverse()
        return out

    def series(self, metric: str) -> list[tuple[int, float]]:
        """``(iteration, value)`` pairs of one metric in iteration order, non-finite values included."""
        rows = self._rows
        return [(i, row[metric]) for i in self._order if metric in (row := rows[i])]

    def finite(self, metric: str) -> list[float]:
        """The finite values of one metric, in order (detectors of trends ignore NaN/Inf)."""
        return [v for _, v in self.series(metric) if math.isfinite(v)]

    def rows(self) -> dict[int, dict[str, float]]:
        return {i: dict(self._rows[i]) for i in self._order}

    def extend(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> History:
        for i, m in rows:
            self.record(i, m)
        return self
