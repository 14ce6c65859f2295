"""The terminal view: plain lines off a terminal, a live table on one."""

from __future__ import annotations

import io

import pytest

from autofix.actions import Change
from autofix.reports.progress import Progress, event_line, sparkline
from autofix.rules.lineage import Attempt


def test_plain_mode_prints_one_line_per_event():
    out = io.StringIO()
    with Progress("val_loss", live=False, stream=out) as progress:
        progress.event({"event": "attempt_launched", "attempt": "a1", "start": "warm",
                        "patch": [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}]})
        progress.event({"event": "finding", "attempt": "a1", "iteration": 3, "symptom": "plateau", "reason": "stuck"})
        progress.event({"event": "attempt_finished", "attempt": "a1", "outcome": "sick", "reason": "x"})
        progress.event({"event": "attempt_finished", "attempt": "a1", "outcome": "healthy", "reason": "fell 90%"})
    assert out.getvalue().splitlines() == [
        "[a1] launched (warm) with optimizer.lr=0.1",
        "[a1] epoch 3: plateau: stuck",
        "[a1] healthy: fell 90%",
    ]


def test_live_mode_draws_attempts_with_parent_metric_trend_finding_and_patch():
    out = io.StringIO()
    attempt = Attempt(id="a1", parent="a0", config={}, patch=[Change("optimizer.lr", 1.0, 0.1)], outcome="running")
    for i, v in enumerate([2.3, 1.5, 0.9]):
        attempt.history.record(i, {"val_loss": v})
    attempt.active = ["overfitting"]
    with Progress("val_loss", live=True, stream=out) as progress:
        progress.report(attempt)
        progress.event({"event": "decision", "attempt": "a1", "reason": "policy 'x': launch a2"})
    text = out.getvalue()
    for fragment in ("a1", "a0", "0.9", "overfitting", "optimizer.lr=0.1", "running", "policy 'x': launch a2"):
        assert fragment in text


def test_sparkline_scales_to_the_window():
    assert sparkline([3.0, 2.0, 1.0]) == "█▄▁"
    assert sparkline([float("nan")]) == "nan"
    assert event_line({"event": "run_started"}) is None
    retried = {"event": "attempt_retried", "attempt": "a0", "failures": 1, "error": "ValueError: boom"}
    assert event_line(retried) == "[a0] raised (ValueError: boom); Ray Tune retries it (failure 1)"


@pytest.mark.parametrize("record, line", [
    pytest.param({"event": "attempt_launched", "attempt": "a2", "parent": "a0", "start": "warm", "patch": [],
                  "role": "control"},
                 "[a2] launched (warm): a0 continued unpatched, to compare the fixes with the run left alone at the "
                 "same step", id="control"),
    pytest.param({"event": "attempt_launched", "attempt": "a1", "parent": "a0", "start": "cold",
                  "patch": [{"path": "optimizer.lr", "from": 1.0, "to": 0.1}], "role": "treatment"},
                 "[a1] launched (cold) with optimizer.lr=0.1", id="treatment"),
    pytest.param({"event": "compared", "attempt": "a1", "reference": "a2", "step": 230.0, "beats": True,
                  "why": "val_loss 0.2 beats 0.9 of the run left alone (a2) at the same step 230"},
                 "[a1] compared: val_loss 0.2 beats 0.9 of the run left alone (a2) at the same step 230",
                 id="compared"),
    pytest.param({"event": "settled", "status": "fixed", "winner": "a1", "keep": "a1", "reason": "it beat a0"},
                 "settled (fixed): keep a1: it beat a0", id="settled"),
])
def test_event_lines_of_the_run_left_alone(record, line):
    assert event_line(record) == line
