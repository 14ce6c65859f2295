"""The spike guard's do-no-harm bench (benchmarks/spike_guard_do_no_harm.py): a guard that does
not fire leaves a zoo run as it was, and the targets read the rows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:  # the bench modules import each other as common, long_runs, ...
    sys.path.insert(0, str(BENCH))

import spike_guard_do_no_harm as dnh  # noqa: E402


def test_a_guard_that_never_fires_leaves_a_zoo_run_as_it_was():
    row = dnh.run_one("healthy_blobs_mlp", 0)
    assert row["kind"] == "healthy" and row["steps"] and row["steps"] > 100
    assert row["rewinds"] == 0 and row["skipped"] == 0
    assert row["same_run"] and row["guarded_val_loss"] == row["alone_val_loss"] and row["worse"] is False


def _row(kind: str = "healthy", rewinds: int = 0, same: bool = True, alone: float = 0.9,
         guarded: float = 0.9) -> dict[str, Any]:
    return {"case": f"c_{kind}", "kind": kind, "seed": 0, "rewinds": rewinds, "same_run": same,
            "alone": alone, "guarded": guarded, "worse": guarded < alone - dnh.CLAIM_SLACK}


@pytest.mark.parametrize("rows, failing", [
    ([_row(), _row("config", rewinds=3, same=False, guarded=0.95)], set()),
    ([_row(rewinds=1, same=False)], {0}),  # a healthy run rewound
    ([_row("config", same=False)], {1}),  # no rewind, yet not the same run
    ([_row("config", rewinds=2, same=False, alone=0.9, guarded=0.85)], {2}),  # acted, and ended worse
    ([_row("config", rewinds=2, same=False, alone=0.9, guarded=0.885)], set()),  # within the slack
])
def test_the_targets_read_the_rows(rows, failing):
    met = [t["met"] for t in dnh.targets(rows)]
    assert {i for i, ok in enumerate(met) if not ok} == failing
    assert "c_" in dnh.markdown({"date_utc": "d", "command": "c", "commit": "x", "cores": 2, "wall_s": 1.0,
                                 "rows": [{**r, "block": "zoo", "metric": "val_accuracy", "steps": 10, "skipped": 0,
                                           "alone_val_loss": 1.0, "guarded_val_loss": 1.0} for r in rows],
                                 "targets": dnh.targets(rows)})
