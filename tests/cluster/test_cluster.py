"""autofix against a real Ray cluster on loopback (head + worker, 1 CPU each; a third node joins
and is killed in the node-loss test).

The CLI runs as a client in a subprocess with ``--address`` (token auth, as a user would);
the fixture trainable logs the Ray node id of every start, so placement is proven from the
trial side. Run with ``make test-cluster`` (not collected by the plain ``pytest`` run).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from loopback import BIN, ROOT, LoopbackCluster, client_env, lines, release, write_spec

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
                      knobs={"optimizer.lr": "lr"}, metric="loss", ledger=True,
                      budget={"max_attempts": 3, "wall_clock_s": 200})
    job_id = f"autofix-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "autofix-home"  # the ledger's folder, carried into the job (docs/faults.md)
    runtime_env = json.dumps({"env_vars": {"AUTOFIX_HOME": str(home)}})
    # docs/clusters.md's command (also in the README's tour), verbatim but for the paths and the ledger's home.
    submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id,
              "--working-dir", str(work), "--runtime-env-json", runtime_env,
              "--", "autofix", "run", spec.name, "-o", str(out), "--plain"]
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
    ledger = [json.loads(line) for line in (home / "ledger.jsonl").read_text().splitlines()]
    assert any(r["attempt"] == winner["id"] and r["healed"] for r in ledger), ledger


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_removed_node_loses_no_run(cluster, tmp_path):
    """A third node joins; the CPUs of the other two are held, so a0 must start there; once it
    has saved a checkpoint that node is SIGKILLed (raylet, workers, all) and the CPUs released.
    Tune retries the trial (``ray.max_failures``) on a remaining node from the checkpoint in the
    run's storage, inside the same attempt. The cluster is back to its two nodes afterwards."""
    doomed = cluster.add_worker()
    before = {n["id"] for n in cluster.nodes_seen}
    (lost,) = {n["id"] for n in cluster.wait_for(3)} - before
    log, out = tmp_path / "trials.jsonl", tmp_path / "out"
    spec = write_spec(
        tmp_path / "spec.yaml", name="node-loss", trainable="cluster_trainable:node_fn",
        python_path=[str(FIXTURES)], config={"lr": 0.5, "epochs": 12, "sleep_s": 0.4, "log": str(log)},
        knobs={"optimizer.lr": "lr"}, metric="loss", ledger=False,
        budget={"max_attempts": 2, "wall_clock_s": 240}, ray={"max_failures": 2})
    try:
        with contextlib.ExitStack() as held:
            holders = [held.enter_context(cluster.holding_cpu(node)) for node in sorted(before)]
            run = subprocess.Popen([str(BIN / "autofix"), "run", str(spec), "-o", str(out), "--plain",
                                    "--address", cluster.address], env=client_env(), cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
            try:
                past_epoch_2 = lambda: any(r["event"] == "epoch" and r["epoch"] >= 2 for r in lines(log))  # noqa: E731
                assert _wait(past_epoch_2, 120), "a0 never reached epoch 2"
                assert {r["node"] for r in lines(log)} == {lost}
                doomed.kill()  # mid-trial
                for holder in holders:
                    release(holder)
                output, _ = run.communicate(timeout=200)
            finally:
                release(run)
    finally:
        doomed.kill()
        cluster.nodes.remove(doomed)
    assert run.returncode == 0, output[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "healthy" and [a["id"] for a in report["attempts"]] == ["a0"]
    starts = [r for r in lines(log) if r["event"] == "start"]
    assert starts[0]["node"] == lost and starts[-1]["node"] in before
    assert starts[-1]["start"] >= 1  # resumed from a checkpoint the lost node had saved
    finals = [r["node"] for r in lines(log) if r["event"] == "epoch" and r["epoch"] == 12]
    assert len(finals) == 1 and finals[0] in before
