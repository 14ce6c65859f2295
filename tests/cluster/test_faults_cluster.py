"""Faults around a cluster run (``make test-cluster``): a head whose dashboard-agent port is
taken, a client that does not send the token the cluster requires, and a data factory that
raises on the cluster. One loopback head serves all three (its agent's HTTP port is held by this
test, as another Ray on the same host holds Ray's default 52365)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from loopback import BIN, ROOT, LoopbackCluster, client_env, write_spec

FIXTURES = ROOT / "tests" / "fixtures"
pytestmark = pytest.mark.ray
# Ray's connect window when the cluster refuses: ~5 s instead of ~40 s.
SHORT_CONNECT = {"RAY_gcs_server_port_wait_time_s": "1", "RAY_py_gcs_connect_timeout_s": "2",
                 "RAY_gcs_rpc_server_connect_timeout_s": "1"}


@pytest.fixture(scope="module")
def head():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    c = LoopbackCluster()
    try:
        c.start_head(agent_listen_port=taken.getsockname()[1])
        c.nodes_seen = c.wait_for(1)
        yield c
    finally:
        c.shutdown()
        taken.close()
        shutil.rmtree(c.temp_dir, ignore_errors=True)


def _spec(tmp_path, **training):
    base = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3}},
            "data": {"factory": "blobs"}, "optimizer": {"name": "adam", "lr": 0.01}, "epochs": 2}
    return write_spec(tmp_path / "spec.yaml", name="cluster-faults", training={**base, **training},
                      python_path=[str(FIXTURES)], ledger=False)


def _autofix(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "autofix"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("existed", [False, True], ids=["new-output", "existing-empty-output"])
def test_a_cluster_that_wants_a_token_gets_a_hint_and_no_half_written_output(head, tmp_path, existed):
    out = tmp_path / "out"
    if existed:
        out.mkdir()
    env = client_env(**SHORT_CONNECT)
    env.pop("RAY_AUTH_MODE")  # as a user who did not set it
    done = _autofix(["run", str(_spec(tmp_path)), "-o", str(out), "--address", head.address], env, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0] and "--address" in lines[0], lines
    assert "Traceback" not in done.stdout + done.stderr
    assert out.is_dir() == existed and (not existed or list(out.iterdir()) == [])  # never a folder that existed


def test_a_factory_that_raises_on_the_cluster_is_one_line_exit_2(head, tmp_path):
    spec = _spec(tmp_path, data={"factory": "broken_factories:remote_data"})
    out = tmp_path / "out"
    process = subprocess.Popen([str(BIN / "autofix"), "run", str(spec), "-o", str(out), "--address", head.address],
                               env=client_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    stdout, stderr = process.communicate(timeout=180)
    lines = stderr.strip().splitlines()
    assert process.returncode == 2, stdout + stderr
    assert len(lines) == 1 and "Traceback" not in stdout + stderr, lines
    line_no = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if "remote_data" in text)
    assert lines[0].startswith(f"autofix: error: {spec}:{line_no}: training.data.factory: building the data raised "
                               "FileNotFoundError: /data/train.npz missing on node ")
    assert "built once on the cluster before any trial starts" in lines[0]
    node, pid = lines[0].split("missing on node ")[1].split(" (built")[0].split(" in pid ")
    assert node == head.nodes_seen[0]["id"] and int(pid) != process.pid  # a Ray task, not the driver
    assert not out.exists()


def test_ray_job_submit_to_a_head_whose_agent_port_is_taken_fails_no_available_agent(head, tmp_path):
    """The fault docs/faults.md describes; the fix (`ray start --dashboard-agent-listen-port=<free
    port>`) is what LoopbackCluster passes, and tests/cluster/test_cluster.py submits a job with it."""
    submit = [str(BIN / "ray"), "job", "submit", "--address", head.dashboard, "--", sys.executable, "-c", "print(1)"]
    done = subprocess.run(submit, env=client_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode != 0 and "No available agent" in done.stdout + done.stderr, done.stderr[-2000:]
