"""autofix against a real 2-node Ray cluster on loopback (head + worker, 1 CPU each).

The CLI runs as a client in a subprocess with ``--address`` (token auth, as a user would);
the fixture trainable logs the Ray node id of every start, so placement is proven from the
trial side. Run with ``make test-cluster`` (not collected by the plain ``pytest`` run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid

import pytest

from loopback import BIN, ROOT, LoopbackCluster, client_env, lines, write_spec

FIXTURES = ROOT / "tests" / "fixtures"
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    """Head (dashboard and job server on) plus one worker node; always torn down."""
    c = LoopbackCluster()
    try:
        c.start_head()
        c.wait_for(1)
        c.add_worker()
        c.nodes_seen = c.wait_for(2)
        yield c
    finally:
        c.shutdown()
        shutil.rmtree(c.temp_dir, ignore_errors=True)


def _node_spec(path, log, nan_from, **extra):
    return write_spec(
        path, name="cluster", trainable="cluster_trainable:node_fn", python_path=[str(FIXTURES)],
        config={"lr": 5.0, "epochs": 20, "sleep_s": 0.4, "nan_from": nan_from, "log": str(log)},
        knobs={"optimizer.lr": "lr"},
        metric="loss", ledger=False, **extra)


def test_a_race_lands_on_both_nodes_and_uses_the_shared_storage(cluster, tmp_path):
    log, out, storage = tmp_path / "trials.jsonl", tmp_path / "out", tmp_path / "shared"
    spec = _node_spec(tmp_path / "spec.yaml", log, nan_from=3, policies=[str(FIXTURES / "race_policies.yaml")],
                      budget={"max_attempts": 3, "max_concurrent": 2, "wall_clock_s": 240},
                      ray={"storage_path": str(storage), "max_failures": 0})
    done = subprocess.run([str(BIN / "autofix"), "run", str(spec), "-o", str(out), "--plain",
                           "--address", cluster.address], env=client_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "fixed"
    a0 = report["attempts"][0]
    race = [a["id"] for a in report["attempts"] if a["parent"] == "a0"]
    assert a0["outcome"] == "sick" and len(race) == 2  # two siblings launched at once
    starts = [r for r in lines(log) if r["event"] == "start" and r["lr"] < 1]
    assert {r["node"] for r in starts} == {n["id"] for n in cluster.nodes_seen}  # one sibling per node
    # Both warm from a0's epoch-2 checkpoint, read by path from the shared storage on either node.
    assert [r["start"] for r in starts] == [3, 3]
    assert all(r["source"].startswith(f"{storage.resolve()}/") for r in starts), starts
    assert all(a["start"] == "warm" for a in report["attempts"] if a["id"] in race)
    # The experiment (checkpoints included) lives in ray.storage_path; OUTPUT/tune points there.
    (experiment,) = storage.iterdir()
    assert (experiment / "tuner.pkl").is_file() and list(experiment.glob("a0-*/checkpoint_*"))
    assert (out / "tune").resolve() == experiment.resolve()


def test_a_ray_job_runs_autofix_on_the_cluster(cluster, tmp_path):
    work, out, log = tmp_path / "job", tmp_path / "out", tmp_path / "trials.jsonl"
    work.mkdir()
    shutil.copy(FIXTURES / "cluster_trainable.py", work)
    spec = write_spec(work / "spec.yaml", name="job", trainable="cluster_trainable:node_fn",
                      config={"lr": 5.0, "epochs": 8, "sleep_s": 0.2, "log": str(log)},
                      knobs={"optimizer.lr": "lr"}, metric="loss", ledger=False,
                      budget={"max_attempts": 3, "wall_clock_s": 200})
    job_id = f"autofix-{uuid.uuid4().hex[:8]}"
    # The README's command, verbatim but for the paths.
    submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id,
              "--working-dir", str(work), "--", "autofix", "run", spec.name, "-o", str(out), "--plain"]
    done = subprocess.run(submit, env=client_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ask = ("from ray.job_submission import JobSubmissionClient as C; "
           f"print(C({cluster.dashboard!r}).get_job_status({job_id!r}).value)")
    status = subprocess.run([sys.executable, "-c", ask], env=client_env(), capture_output=True, text=True, timeout=60)
    assert status.stdout.strip() == "SUCCEEDED", status.stdout + status.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "fixed"
    winner = next(a for a in report["attempts"] if a["id"] == report["winner"])
    assert report["attempts"][0]["outcome"] == "sick" and winner["config"]["lr"] < 5.0
    assert {r["node"] for r in lines(log)} <= {n["id"] for n in cluster.nodes_seen}  # ran on the cluster
