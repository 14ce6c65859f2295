"""A node removed from the 2-node loopback cluster mid-run: the run completes on the other one.

The head's only CPU is held by a pinned actor, so attempt a0 must start on the worker node;
once it has saved a checkpoint the worker node is SIGKILLed (raylet, workers, all) and the head
CPU released. Tune retries the trial (``ray.max_failures``) on the head, from the checkpoint in
the run's storage, inside the same attempt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from loopback import BIN, ROOT, LoopbackCluster, client_env, lines, release, write_spec

FIXTURES = ROOT / "tests" / "fixtures"
pytestmark = pytest.mark.ray


@pytest.fixture
def cluster():
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


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_removed_node_loses_no_run(cluster, tmp_path):
    head = next(n["id"] for n in cluster.nodes_seen if n["head"])
    worker = next(n["id"] for n in cluster.nodes_seen if not n["head"])
    log, out = tmp_path / "trials.jsonl", tmp_path / "out"
    spec = write_spec(
        tmp_path / "spec.yaml", name="node-loss", trainable="cluster_trainable:node_fn",
        python_path=[str(FIXTURES)], config={"lr": 0.5, "epochs": 12, "sleep_s": 0.4, "log": str(log)},
        knobs={"optimizer.lr": "lr"}, metric="loss", ledger=False,
        budget={"max_attempts": 2, "wall_clock_s": 240}, ray={"max_failures": 2})
    with cluster.holding_cpu(head) as holder:
        run = subprocess.Popen([str(BIN / "autofix"), "run", str(spec), "-o", str(out), "--plain",
                                "--address", cluster.address], env=client_env(), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            on_worker = lambda: any(r["event"] == "epoch" and r["epoch"] >= 2 for r in lines(log))  # noqa: E731
            assert _wait(on_worker, 120), "a0 never reached epoch 2"
            assert {r["node"] for r in lines(log)} == {worker}
            cluster.nodes[1].kill()  # the worker node, mid-trial
            release(holder)
            output, _ = run.communicate(timeout=200)
        finally:
            release(run)
    assert run.returncode == 0, output[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "healthy" and [a["id"] for a in report["attempts"]] == ["a0"]
    starts = [r for r in lines(log) if r["event"] == "start"]
    assert starts[0]["node"] == worker and starts[-1]["node"] == head
    assert starts[-1]["start"] >= 1  # resumed from a checkpoint the worker node saved
    finals = [r for r in lines(log) if r["event"] == "epoch" and r["epoch"] == 12]
    assert [r["node"] for r in finals] == [head]
