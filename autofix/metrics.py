"""The history of one attempt's reports, keyed by iteration.

Keyed by iteration (not appended) because a trial restored by Ray Tune replays the reports
after its last checkpoint: a replay must overwrite, not look like a new jump in the loss.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

__all__ = ["History", "as_float"]


def as_float(value: Any) -> float | None:
    """A reported value as a float, or None when it is not a number (strings, lists, bools)."""
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

    def record(self, iteration: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Keep the numeric values of one report; returns what was kept."""
        row = {k: f for k, v in metrics.items() if (f := as_float(v)) is not None}
        self._rows[int(iteration)] = row
        return row

    @property
    def iterations(self) -> list[int]:
        return sorted(self._rows)

    @property
    def last_iteration(self) -> int | None:
        return max(self._rows) if self._rows else None

    def series(self, metric: str) -> list[tuple[int, float]]:
        """``(iteration, value)`` pairs of one metric in iteration order, non-finite values included."""
        return [(i, self._rows[i][metric]) for i in sorted(self._rows) if metric in self._rows[i]]

    def finite(self, metric: str) -> list[float]:
        """The finite values of one metric, in order (detectors of trends ignore NaN/Inf)."""
        return [v for _, v in self.series(metric) if math.isfinite(v)]

    def rows(self) -> dict[int, dict[str, float]]:
        return {i: dict(self._rows[i]) for i in sorted(self._rows)}

    def extend(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> "History":
        for i, m in rows:
            self.record(i, m)
        return self
