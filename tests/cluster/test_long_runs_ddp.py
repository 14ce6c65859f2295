"""The long-runs bench's DDP case through Ray Train itself (benchmarks/long_runs_ddp.py): a short
corrupted burst trained by a 2-worker gloo ``TorchTrainer`` and by two forked ranks gives the same
run (same val_loss, same rewinds), and the guard answers the burst there. A subprocess owns its Ray."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300  # measured ~40 s for the two Ray Train runs and the two forked ones on 2 cores

SCRIPT = textwrap.dedent("""
    import json, logging, os, sys, tempfile, warnings
    warnings.filterwarnings("ignore")
    root = sys.argv[1]
    sys.path[:0] = [root, os.path.join(root, "benchmarks")]
    import ray
    from long_runs_cases import Case, Injection
    from long_runs_ddp import train_ddp
    path = os.pathsep.join([root, os.path.join(root, "benchmarks")])
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR,
             _temp_dir=tempfile.mkdtemp(prefix="ray_lr_"), runtime_env={"env_vars": {"PYTHONPATH": path}})
    tiny = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
            "data": {"factory": "blobs", "args": {"n_samples": 600, "n_features": 4}},
            "optimizer": {"name": "sgd", "lr": 0.05}, "batch_size": 20}
    case = Case("tiny_burst", tiny, 200, Injection("corrupt", onset=120, length=4, input_scale=100.0), tags=("ddp",))
    out = {}
    for launcher in ("ray", "fork"):
        run = train_ddp(case, 0, launcher, guard="guard")
        out[launcher] = {"val_loss": run.val_loss, "rewinds": run.rewinds, "compute": run.compute,
                         "corrupted_at": run.corrupted_at}
    ray.shutdown()
    print("RESULT " + json.dumps(out), flush=True)
""")


@pytest.mark.ray
def test_the_ddp_case_runs_through_ray_train_as_through_forked_ranks():
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    runs = json.loads(line[len("RESULT "):])
    ray_run, fork_run = runs["ray"], runs["fork"]
    assert ray_run["rewinds"] == fork_run["rewinds"] and ray_run["compute"] == fork_run["compute"]
    assert ray_run["val_loss"] == pytest.approx(fork_run["val_loss"], rel=1e-6)
    # the burst was met and answered: every corrupted batch rejected, none trained on
    assert ray_run["corrupted_at"] and {p for p, *_ in ray_run["rewinds"]} >= set(ray_run["corrupted_at"])
