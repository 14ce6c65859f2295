"""The driver is SIGKILLed mid-run; `autofix resume DIR` finishes it with the whole lineage and
without launching any attempt twice. Runs the CLI in subprocesses (each with its own Ray)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autofix.reports.journal import read_journal

from conftest import FIXTURES

pytestmark = pytest.mark.ray


def _wait_for(path, predicate, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and predicate(read_journal(path)):
            return True
        time.sleep(0.1)
    return False


def _wait_persisted(experiment, attempt_id, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in experiment.glob("searcher-state-*.pkl"):
            try:
                state = pickle.loads(path.read_bytes())["engine"]
            except Exception:  # noqa: BLE001 - being written: a torn pickle fails in many ways
                continue
            if any(a["id"] == attempt_id and a["trial_id"] for a in state["attempts"]):
                return True
        time.sleep(0.1)
    return False


def test_a_killed_driver_is_resumed_without_losing_or_repeating_attempts(tmp_path):
    # The user's own module sits beside the spec and the run starts from that folder; the
    # resume runs from another folder: the run directory holds what resume needs to find it.
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    shutil.copy(FIXTURES / "failing_trainable.py", project / "usertrain.py")
    spec = {"name": "killed", "trainable": "usertrain:slow_fn",
            "config": {"lr": 5.0, "epochs": 12}, "knobs": {"optimizer.lr": "lr"}, "metric": "loss",
            "budget": {"max_attempts": 4, "wall_clock_s": 300}, "ledger": True}  # in the test's AUTOFIX_HOME
    (project / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen([sys.executable, "-m", "autofix.cli", "run", "spec.yaml", "-o", str(out), "--plain"],
                              cwd=project, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        launched_a1 = lambda records: any(r["event"] == "attempt_launched" and r["attempt"] == "a1" for r in records)  # noqa: E731
        assert _wait_for(out / "journal.jsonl", launched_a1), "a1 was never launched"
        # Kill once Tune has saved a1 in its experiment state (at least every second): the
        # decisions of the last second before a kill are the documented loss window.
        assert _wait_persisted(out / "tune", "a1"), "a1 never reached Tune's experiment state"
        assert not (out / "report.json").exists()  # a1 is still training
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait(timeout=30)
    assert not (out / "report.json").exists()

    done = subprocess.run([sys.executable, "-m", "autofix.cli", "resume", str(out)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300, start_new_session=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "fixed"
    ids = [a["id"] for a in report["attempts"]]
    assert ids[:2] == ["a0", "a1"] and len(ids) == len(set(ids))
    trials = [a["trial_id"] for a in report["attempts"] if a["trial_id"]]
    assert len(trials) == len(set(trials))
    records = read_journal(out / "journal.jsonl")
    launches = [r["attempt"] for r in records if r["event"] == "attempt_launched"]
    assert len(launches) == len(set(launches))  # nothing launched twice across the kill
    assert [r["event"] for r in records].count("run_resumed") == 1
    a0 = report["attempts"][0]
    assert a0["outcome"] == "sick" and a0["findings"][0]["symptom"] == "nonfinite_loss"
    winner = next(a for a in report["attempts"] if a["id"] == report["winner"])
    assert winner["config"]["lr"] < 5.0
    # The resumed segment is seen (the terminal lines) and learnt (the ledger) like any other.
    assert f"[{winner['id']}] healthy" in done.stdout
    ledger = [json.loads(line) for line in (Path(os.environ["AUTOFIX_HOME"]) / "ledger.jsonl").read_text().splitlines()]
    assert any(r["attempt"] == winner["id"] and r["healed"] for r in ledger), ledger


def test_resume_refuses_what_it_cannot_resume(tmp_path, capsys):
    from autofix.cli import main

    assert main(["resume", str(tmp_path)]) == 2
    assert "not an autofix run directory" in capsys.readouterr().err


def test_resume_says_clearly_when_the_users_module_has_moved(tmp_path, capsys):
    from autofix.cli import main
    from autofix.tune.runner import SPEC_COPY

    project = tmp_path / "project"
    project.mkdir()
    (project / "usertrain.py").write_text("def fn(config):\n    pass\n")
    spec = {"name": "moved", "trainable": "usertrain:fn", "config": {"lr": 1.0}, "metric": "loss"}
    run = tmp_path / "run"
    (run / "tune").mkdir(parents=True)
    (run / "tune" / "tuner.pkl").write_bytes(b"")
    (run / SPEC_COPY).write_text(json.dumps({"spec": spec, "base_dir": str(project)}))
    (project / "usertrain.py").rename(tmp_path / "usertrain.py")  # the user moved their module
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot import module 'usertrain'" in err[0], err
    assert f"started with its spec in {project}" in err[0] and "moved since" in err[0]
