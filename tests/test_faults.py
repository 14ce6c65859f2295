"""Faults inside a run on the shared Ray session: a trial that raises, a worker SIGKILLed.

Both are retried per Tune's ``FailureConfig`` (spec ``ray.max_failures``) and neither is taken
for a training symptom. The trainables log every start to a file (tests/fixtures/cluster_trainable.py),
so the tests count tries from the trial side, not from autofix's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

import autofix
from autofix.reports.journal import read_journal

from conftest import FIXTURES

pytestmark = pytest.mark.ray


def _spec(fn: str, log, max_failures: int, **config) -> dict:
    return {"name": "fault", "trainable": f"cluster_trainable:{fn}", "python_path": [str(FIXTURES)],
            "config": {"lr": 0.5, "log": str(log), **config}, "knobs": {"optimizer.lr": "lr"},
            "metric": "loss", "ray": {"max_failures": max_failures},
            "budget": {"max_attempts": 3, "wall_clock_s": 120}, "ledger": False}


def _lines(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _launches(out) -> list[str]:
    return [r["attempt"] for r in read_journal(out / "journal.jsonl") if r["event"] == "attempt_launched"]


def test_a_trial_that_raises_once_is_retried_and_the_run_completes(ray_session, tmp_path):
    log, out = tmp_path / "tries.jsonl", tmp_path / "out"
    report = autofix.run(_spec("raise_fn", log, max_failures=1, epochs=5, fail_times=1), out)
    starts = [r for r in _lines(log) if r["event"] == "start"]
    assert len(starts) == 2  # the failed try and its retry, both inside attempt a0
    assert report.status == "healthy" and [a.id for a in report.attempts] == ["a0"]
    assert report.attempts[0].outcome == "healthy" and report.attempts[0].findings == []
    assert _launches(out) == ["a0"]
    retried = [r for r in read_journal(out / "journal.jsonl") if r["event"] == "attempt_retried"]
    assert [(r["attempt"], r["failures"]) for r in retried] == [("a0", 1)]
    assert "flaky data source: read failed on start 1" in retried[0]["error"]


def test_a_trial_that_always_raises_is_tried_max_failures_plus_one_times(ray_session, tmp_path):
    log, out = tmp_path / "tries.jsonl", tmp_path / "out"
    report = autofix.run(_spec("raise_fn", log, max_failures=1, epochs=5, fail_times=99), out)
    assert len([r for r in _lines(log) if r["event"] == "start"]) == 2  # max_failures + 1
    assert report.status == "unfixed" and [a.id for a in report.attempts] == ["a0"]
    a0 = report.attempts[0]
    assert a0.outcome == "error" and a0.findings == []  # a code error, not a training symptom
    assert "flaky data source: read failed on start 2" in a0.error  # the last failure's text
    assert "RuntimeError" in a0.reason
    assert _launches(out) == ["a0"]


def _kill_once_past(log, epoch: int, killed: list, timeout_s: float = 90.0) -> None:
    """SIGKILL the worker process running the trial once it has logged ``epoch``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not killed:
        for line in _lines(log):
            if line["event"] == "epoch" and line["epoch"] >= epoch:
                os.kill(line["pid"], signal.SIGKILL)
                killed.append(line)
                return
        time.sleep(0.05)


def test_a_sigkilled_worker_is_resumed_from_its_checkpoint(ray_session, tmp_path):
    log, out, killed = tmp_path / "tries.jsonl", tmp_path / "out", []
    killer = threading.Thread(target=_kill_once_past, args=(log, 3, killed), daemon=True)
    killer.start()
    report = autofix.run(_spec("node_fn", log, max_failures=1, epochs=10, sleep_s=0.3), out)
    killer.join(timeout=5)
    assert killed, "the trial never reached epoch 3"
    starts = [r for r in _lines(log) if r["event"] == "start"]
    assert next(s["pid"] for s in starts) == killed[0]["pid"] and len(starts) == 2
    # The retry resumed after a checkpoint saved before the kill, not from scratch.
    assert 1 <= starts[1]["start"] <= killed[0]["epoch"] + 1
    assert report.status == "healthy" and [a.id for a in report.attempts] == ["a0"]
    assert _launches(out) == ["a0"]  # the retry is Tune's, inside a0: no attempt launched twice
    epochs = [e for e, _ in report.attempts[0].series]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 10  # replayed reports judged once


def test_a_trial_that_raises_is_one_line_naming_its_traceback_file(ray_session, tmp_path, capfd):
    """No traceback without -v: the terminal gets one line per event; the trial's traceback is in
    the file the line names (inside the run directory), Ray's own log in OUTPUT/driver.log."""
    from autofix.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"name": "raises", "trainable": "failing_trainable:train_fn",
                                "python_path": [str(FIXTURES)], "config": {"lr": 1.0}, "metric": "loss",
                                "ledger": False, "budget": {"max_attempts": 2}}))
    out = tmp_path / "out"
    code = main(["run", str(spec), "-o", str(out), "--plain"])
    captured = capfd.readouterr()
    assert code == 1
    assert "Traceback" not in captured.out + captured.err and captured.err.strip() == ""
    (line,) = [line for line in captured.out.splitlines() if line.startswith("[a0] error:")]
    assert "the trial raised: ValueError: boom: the data loader fell over; full traceback: " in line
    path = line.rsplit("full traceback: ", 1)[1]
    assert path.startswith(f"{out}/tune/a0-") and 'raise ValueError("boom' in open(path).read()  # the frames
    assert "Trial task failed" in (out / "driver.log").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["ended_because"].startswith("a0 failed (the trial raised: ValueError: boom")
