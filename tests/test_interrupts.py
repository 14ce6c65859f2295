"""Ctrl-C is not a verdict, and the embedded Ray listens on loopback only: measured on a real run.

One scenario, real processes and real signals (the CLI in its own session, as a terminal's
foreground job; the embedded Ray it starts is in that process group too):

1. ``autofix run``: a0 turns NaN at epoch 3, a1 (the lowered learning rate, warm) trains. While
   a1 trains, the listening TCP sockets of the driver's whole process tree are read from
   ``/proc``; then SIGINT goes to the process group, as Ctrl-C does.
2. ``autofix resume``: once a1 has resumed, SIGTERM, then SIGINT: the second signal force-quits.
3. ``autofix resume`` again, to the end.

The scenario runs once (a module fixture) and the tests below read what it recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autofix.reports.journal import read_journal

from conftest import FIXTURES
from procnet import alive, listeners, loopback, tree

pytestmark = [pytest.mark.ray, pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")]


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _wait(predicate, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _a1_epochs(log: Path, after: int = 0) -> list[int]:
    """Epochs a1 (lr below 1) logged, from log line ``after`` on."""
    return [r["epoch"] for r in _lines(log)[after:] if r["event"] == "epoch" and r["lr"] < 1]


def _start(argv: list[str], cwd: Path, tag: str) -> subprocess.Popen:
    out, err = open(cwd / f"{tag}.out", "w"), open(cwd / f"{tag}.err", "w")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "AUTOFIX_HOME": str(cwd / "home")}  # a private ledger
    return subprocess.Popen([sys.executable, "-m", "autofix.cli", *argv], cwd=cwd, stdout=out, stderr=err,
                            start_new_session=True, env=env)


def _finish(process: subprocess.Popen, cwd: Path, tag: str, timeout_s: float = 120.0) -> dict:
    began = time.monotonic()
    try:
        code = process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return {"code": code, "after_s": time.monotonic() - began,
            "stdout": (cwd / f"{tag}.out").read_text(), "stderr": (cwd / f"{tag}.err").read_text()}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = tmp_path_factory.mktemp("interrupts")
    home = work / "home"
    log, out = work / "trials.jsonl", work / "run"
    spec = {"name": "interrupted", "trainable": "cluster_trainable:node_fn", "python_path": [str(FIXTURES)],
            "config": {"lr": 5.0, "epochs": 14, "sleep_s": 0.25, "nan_from": 3, "log": str(log)},
            "knobs": {"optimizer.lr": "lr"}, "metric": "loss", "ledger": True,
            "budget": {"max_attempts": 3, "wall_clock_s": 300}}
    (work / "spec.yaml").write_text(yaml.safe_dump(spec))
    seen: dict = {"out": out, "log": log, "home": home}

    # 1. run; while a1 trains: the sockets; then Ctrl-C (SIGINT to the process group)
    run = _start(["run", "spec.yaml", "-o", str(out), "--plain"], work, "run")
    assert _wait(lambda: len(_a1_epochs(log)) >= 2), "a1 never trained two epochs"
    seen["tree"] = tree(run.pid)
    seen["listeners"] = listeners(seen["tree"])
    os.killpg(run.pid, signal.SIGINT)
    seen["run"] = _finish(run, work, "run")
    seen["report_1"] = json.loads((out / "report.json").read_text())
    seen["ledger_1"] = (home / "ledger.jsonl").exists()

    # 2. resume; once a1 trains again: SIGTERM, then SIGINT (a force quit)
    mark = len(_lines(log))
    resumed = _start(["resume", str(out)], work, "resume1")
    assert _wait(lambda: len(_a1_epochs(log, mark)) >= 1), "a1 never resumed"
    seen["tree_2"] = tree(resumed.pid)
    os.kill(resumed.pid, signal.SIGTERM)
    time.sleep(0.3)
    os.kill(resumed.pid, signal.SIGINT)
    seen["resume_1"] = _finish(resumed, work, "resume1")
    time.sleep(2.0)
    seen["left_2"] = alive(seen["tree_2"])
    seen["report_2"] = json.loads((out / "report.json").read_text())

    # 3. resume to the end
    done = _start(["resume", str(out)], work, "resume2")
    seen["resume_2"] = _finish(done, work, "resume2", timeout_s=180)
    seen["report"] = json.loads((out / "report.json").read_text())
    seen["journal"] = read_journal(out / "journal.jsonl")
    seen["trials"] = _lines(log)
    return seen


def test_the_embedded_ray_listens_on_loopback_only(scenario):
    found = scenario["listeners"]
    # The GCS, the raylet (node manager and object manager), the agents, the workers, the driver.
    assert len({s.pid for s in found}) >= 4 and len(found) >= 6, found
    wide = [s for s in found if not loopback(s.host)]
    assert wide == [], "listening beyond loopback:\n" + "\n".join(map(str, wide))


def test_a_first_ctrl_c_stops_the_run_as_interrupted_with_exit_130(scenario):
    run, report = scenario["run"], scenario["report_1"]
    assert run["code"] == 130, run
    assert run["after_s"] < 30, "the trials were not stopped promptly"
    assert "Traceback" not in run["stderr"] and "Traceback" not in run["stdout"]
    assert "interrupted (SIGINT)" in run["stdout"] and "INTERRUPTED" in run["stdout"]
    assert report["status"] == "interrupted" and report["winner"] is None
    assert f"autofix resume {scenario['out']}" in report["ended_because"]
    outcomes = {a["id"]: a["outcome"] for a in report["attempts"]}
    assert outcomes == {"a0": "sick", "a1": "running"}  # a1 is not judged: it resumes
    assert not scenario["ledger_1"], "an interrupted run learnt an outcome"
    events = [(r["event"], r.get("status"), r.get("force")) for r in scenario["journal"]]
    assert ("run_interrupted", None, False) in events and ("run_finished", "interrupted", None) in events


def test_a_second_signal_quits_at_once_and_leaves_no_process(scenario):
    quit_ = scenario["resume_1"]
    assert quit_["code"] == 130 and quit_["after_s"] < 10, quit_
    assert "interrupted again (SIGINT): quitting now" in quit_["stdout"]
    assert "Traceback" not in quit_["stderr"]
    assert len(scenario["tree_2"]) > 3 and scenario["left_2"] == []  # Ray's processes went with it
    forced = [r for r in scenario["journal"] if r["event"] == "run_interrupted" and r["force"]]
    assert [r["signal"] for r in forced] == ["SIGINT"]
    assert scenario["report_2"] == scenario["report_1"]  # nothing was concluded by the forced quit


def test_resume_continues_the_same_run_to_its_verdict(scenario):
    done, report = scenario["resume_2"], scenario["report"]
    assert done["code"] == 0, done["stdout"][-2000:] + done["stderr"][-2000:]
    assert report["status"] == "fixed" and report["winner"] == "a1"
    assert [a["id"] for a in report["attempts"]] == ["a0", "a1"]
    launches = [r["attempt"] for r in scenario["journal"] if r["event"] == "attempt_launched"]
    assert launches == ["a0", "a1"]  # nothing launched twice across three driver sessions
    assert [r["event"] for r in scenario["journal"]].count("run_resumed") == 2
    starts = [r["start"] for r in scenario["trials"] if r["event"] == "start" and r["lr"] < 1]
    assert len(starts) == 3 and starts == sorted(starts) and starts[1] > starts[0], starts  # from checkpoints
    epochs = [e for e, _ in next(a for a in report["attempts"] if a["id"] == "a1")["series"]]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 14
    ledger = (scenario["home"] / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(line)["attempt"] for line in ledger] == ["a1"]  # learnt once, at the end
