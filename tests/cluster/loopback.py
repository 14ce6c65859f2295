"""A real multi-node Ray cluster on 127.0.0.1, built from ``ray start --block`` subprocesses.

Each node is its own process group (``start_new_session``), so removing a node is one
``killpg`` and teardown never touches Ray instances other people run on this machine (no
``ray stop``). Every port is explicit and each node has a private temp dir: ``ray start``
records the cluster address in ``TEMP/ray_current_cluster``, not in ``/tmp/ray``, so no other
``ray.init()`` on the host joins this cluster by accident.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's ray and autofix
# Clients given an explicit address must say they use the token (docs/ray-tune.md).
CLIENT_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
              "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}

# A killed node is declared dead after ~3 s instead of ~15-30 s (Ray system config via env).
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                      "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a process talking to the cluster: venv first on PATH, token auth."""
    env = {**os.environ, **CLIENT_ENV, **extra}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    return env


@dataclass
class Node:
    process: subprocess.Popen
    log: Path
    head: bool

    def kill(self) -> None:
        """SIGKILL the node's whole process group: raylet, its workers, ``ray start`` itself."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class LoopbackCluster:
    """Head (with the dashboard, hence the job server) and worker nodes, 1 CPU each by default."""

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="afc-", dir="/tmp")))
    port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, args: list[str], head: bool, fixed: dict[str, int] | None = None) -> Node:
        # Every port explicit: Ray's fixed defaults (the dashboard agent's 52365) are taken on a
        # host that runs another Ray, and then `ray job submit` fails with "No available agent".
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        chosen = {p: (fixed or {}).get(p) or free_port() for p in ports}
        # A temp dir per node, as on separate machines: nodes sharing one would unpack a job's
        # working_dir into the same folder, replacing it under the running driver's feet.
        temp = self.temp_dir / f"n{len(self.nodes)}"
        cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
               "--disable-usage-stats", f"--temp-dir={temp}", *args, *(f"{p}={n}" for p, n in chosen.items())]
        log = self.temp_dir / f"node{len(self.nodes)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(cmd, env=client_env(**FAST_HEALTH_CHECKS), stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=ROOT)
        node = Node(process, log, head)
        self.nodes.append(node)
        return node

    def start_head(self, agent_listen_port: int | None = None) -> Node:
        """The head; ``agent_listen_port``: its dashboard agent's HTTP port (default: a free one)."""
        return self._start([
            "--head", f"--port={self.port}",
            f"--ray-client-server-port={free_port()}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
        ], head=True, fixed={"--dashboard-agent-listen-port": agent_listen_port} if agent_listen_port else None)

    def add_worker(self) -> Node:
        return self._start([f"--address={self.address}"], head=False)

    def alive_nodes(self) -> list[dict]:
        """The cluster's live nodes as the GCS sees them (asked from a short-lived client)."""
        code = (f"import json, ray; ray.init(address={self.address!r}, log_to_driver=False); "
                "print(json.dumps([{'id': n['NodeID'], 'head': 'node:__internal_head__' in n['Resources']} "
                "for n in ray.nodes() if n['Alive']]))")
        done = subprocess.run([sys.executable, "-c", code], env=client_env(), capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            return []
        return json.loads(done.stdout.strip().splitlines()[-1])

    def wait_for(self, count: int, timeout_s: float = 90.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise RuntimeError(f"a node exited early:\n{node.log.read_text()[-3000:]}")
            nodes = self.alive_nodes()
            if len(nodes) == count:
                return nodes
            time.sleep(1)
        raise TimeoutError(f"the cluster never reached {count} live nodes")

    @contextlib.contextmanager
    def holding_cpu(self, node_id: str) -> Iterator[subprocess.Popen]:
        """Occupy ``node_id``'s CPU with a pinned actor until the block ends (or ``release``)."""
        code = HOLD % (self.address, node_id)
        holder = subprocess.Popen([sys.executable, "-c", code], env=client_env(), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            if holder.stdout.readline().strip() != node_id:
                raise RuntimeError("the CPU holder never started on the requested node")
            yield holder
        finally:
            release(holder)

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            node.kill()


HOLD = """
import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=%r, log_to_driver=False)

@ray.remote(num_cpus=1)
class Hold:
    def node(self):
        return ray.get_runtime_context().get_node_id()

hold = Hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(%r, soft=False)).remote()
print(ray.get(hold.node.remote()), flush=True)
sys.stdin.read()  # until killed
"""


def release(process: subprocess.Popen) -> None:
    """SIGKILL a helper's process group (a driver: its actors die with it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def write_spec(path: Path, **spec) -> Path:
    """A spec file for the fixture trainables (tests/fixtures/cluster_trainable.py)."""
    import yaml

    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def lines(log: Path) -> list[dict]:
    """The JSON lines a fixture trainable logged (none yet: empty)."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
