"""Smoke test of benchmarks/engine_throughput.py: it drives every run to its end (no timing)."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import engine_throughput

from autofix.judge.history import History


def test_every_report_reaches_the_engine_and_every_run_ends():
    result = engine_throughput.run_benchmark(trials=6, epochs=4, seed=1)
    # each launched attempt reports epoch 0 and then until it is stopped or reaches ``epochs``
    assert result["suggests"] == result["completes"] == sum(result["outcomes"].values())
    assert result["suggests"] <= result["results"] <= result["suggests"] * 5
    assert result["stops"] <= result["completes"]
    assert "running" not in result["outcomes"] and "queued" not in result["outcomes"]
    assert result["engine_cpu_s"] > 0 and result["results_per_cpu_s"] > 0


def test_sick_scenarios_are_caught_and_healthy_ones_heal():
    result = engine_throughput.run_benchmark(trials=30, epochs=8, seed=0)
    assert result["outcomes"].get("sick", 0) > 0
    assert result["winners"] > 0


def test_synthetic_reports_carry_the_harness_streams():
    report = engine_throughput.synthetic_report("dying_relu", 2, __import__("random").Random(0),
                                                {"optimizer": {"lr": 1}}, "t")
    assert report["dead_frac_max"] > 0.9 and report["epoch"] == 2
    assert {"grad_norm/0", "update_ratio/0", "val_recall/9", "pred_classes", "config"} <= set(report)
    assert math.isnan(engine_throughput.synthetic_report("nan", 3, __import__("random").Random(0),
                                                         {"optimizer": {"lr": 1}}, "t")["val_loss"])


def test_history_order_survives_out_of_order_records_and_pickling():
    # the cached iteration order (kept for speed) must agree with sorting
    history = History()
    for i in (3, 1, 2, 5, 4, 2):
        history.record(i, {"loss": float(i), "name": "x"})
    assert history.iterations == [1, 2, 3, 4, 5] and history.last_iteration == 5
    assert history.series("loss") == [(i, float(i)) for i in range(1, 6)]
    assert history.last("loss") == 5.0 and history.last("missing") is None
    assert [pos for pos, _ in history.tail(2)] == [4, 3]
    copy = pickle.loads(pickle.dumps(history))
    copy.record(0, {"loss": 0.0})
    assert copy.iterations == [0, 1, 2, 3, 4, 5]


def test_finding_to_dict_matches_asdict():
    # to_dict is spelled out for speed: it must stay what dataclasses.asdict gives
    import dataclasses

    from autofix.symptoms import Finding

    finding = Finding("plateau", 3, "val_loss", "flat", {"window": 4.0})
    assert finding.to_dict() == dataclasses.asdict(finding)
    assert finding.to_dict()["evidence"] is not finding.evidence
    assert Finding.from_dict(finding.to_dict()) == finding
