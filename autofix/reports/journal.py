"""``journal.jsonl``: every decision appended as it happens, flushed to disk at once.

Strict JSON: non-finite floats are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (a NaN loss is exactly what a journal must be able to record).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["Journal", "jsonable", "read_journal"]


def jsonable(value: Any) -> Any:
    """A deep copy with non-finite floats as strings and tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class Journal:
    """Append-only event log; call it as ``journal("event", key=value, ...)``."""

    def __init__(self, path: str | Path, echo=None) -> None:
        self.path = Path(path)
        self.path.touch()
        self._echo = echo

    def __call__(self, event: str, **data: Any) -> None:
        record = jsonable({"ts": round(time.time(), 3), "event": event, **data})
        # Opened per record (a few per epoch at most): the journal stays picklable with the
        # engine that Tune stores in tuner.pkl, and each record is on disk before we go on.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a killed driver must not lose the decisions made so far
        if self._echo is not None:
            self._echo(record)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_echo": None}  # a terminal view is not part of a pickled run

    def close(self) -> None:
        """Nothing stays open between records; kept so callers can treat it like a file."""


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """All records of a journal; a torn last line (killed mid-write) is ignored."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
