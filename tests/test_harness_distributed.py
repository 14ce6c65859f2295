"""The managed loop as ranks of a DDP run (autofix.harness.distributed), without Ray.

Two gloo processes on 127.0.0.1 train with a global batch of 64 (32 per rank): each step they
see exactly the samples of one single-process step, so their reports must match a
single-process run's up to float rounding. Ray Train itself is covered by
tests/cluster/test_distributed.py.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from autofix.harness import run_training
from autofix.harness.data import Batches, blobs
from autofix.harness.distributed import Parallel, all_finite, per_rank_batch, shard_order, unwrap

# 160 blobs, 20% held out: 128 training samples, two full global batches of 64 per epoch.
from conftest import FIXTURES

CONFIG: dict[str, Any] = {
    "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3}},
    "data": {"factory": "blobs", "args": {"n_samples": 160}, "val_fraction": 0.2},
    "optimizer": {"name": "adam", "lr": 0.01},
    "batch_size": 64, "epochs": 2, "seed": 0,
}
# train_loss is not compared: each rank averages the losses of its own half of the batches.
COMPARED = ("val_loss", "val_accuracy", "grad_norm", "grad_norm_max", "lr")


def test_shard_order_is_disjoint_equal_and_drops_only_the_tail() -> None:
    order = torch.randperm(11, generator=torch.Generator().manual_seed(3))
    shards = [shard_order(order, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(torch.cat(shards).tolist()) == sorted(order[:9].tolist())
    assert per_rank_batch(64, 2) == 32 and per_rank_batch(1, 4) == 1


def test_sharded_batches_split_each_global_batch_between_ranks() -> None:
    train, _ = blobs(seed=0, n_samples=160)
    whole = list(Batches(train, 64, shuffle=True, seed=5).epoch(2))
    ranks = [list(Batches(train, 32, shuffle=True, seed=5, shard=(r, 2)).epoch(2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole) == 2
    for step, (x, _) in enumerate(whole):
        mine = torch.cat([ranks[0][step][0], ranks[1][step][0]])
        assert sorted(map(tuple, mine.tolist())) == sorted(map(tuple, x.tolist()))


def test_parallel_rejects_a_rank_outside_the_world() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        Parallel(2, 2)


def test_all_finite_and_unwrap_without_a_process_group() -> None:
    assert all_finite(torch.tensor(1.0)) and not all_finite(torch.tensor(float("nan")))
    inner = nn.Linear(2, 2)
    wrapper = nn.Module()
    wrapper.module = inner
    assert unwrap(wrapper) is inner and unwrap(inner) is inner


def _warm_config(out: str) -> dict[str, Any]:
    """A patched child of CONFIG: lr / 10, warm from its epoch-1 checkpoint, up to epoch 3."""
    return {**CONFIG, "optimizer": {"name": "adam", "lr": 0.001}, "epochs": 3,
            "warm_start": str(Path(out, "epoch1"))}


def _rank_main(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    runs: list[list[dict[str, Any]]] = [[], []]

    def report(run: int, metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        runs[run].append({**metrics, "checkpoint": ckpt_dir is not None})
        if ckpt_dir is not None and run == 0 and metrics["epoch"] == 1:
            shutil.copytree(ckpt_dir, Path(out, "epoch1"))  # the harness deletes its own copy

    parallel = Parallel(rank, 2, wrap=nn.parallel.DistributedDataParallel)
    try:
        run_training(CONFIG, lambda m, c: report(0, m, c), parallel=parallel)
        dist.barrier()  # rank 0 has written the checkpoint the warm start reads
        run_training(_warm_config(out), lambda m, c: report(1, m, c), parallel=parallel)
    finally:
        dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(runs))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> tuple[str, list[list[list[dict[str, Any]]]]]:
    """The output folder and, per rank, the reports of a cold run and of its warm-started child."""
    out = tmp_path_factory.mktemp("ddp")
    # fork: the children reuse the imported torch and autofix (spawn re-imports them, ~10x slower).
    mp.start_processes(_rank_main, args=(_free_port(), str(out)), nprocs=2, join=True, start_method="fork")
    return str(out), [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(2)]


def _assert_same(chief: list[dict[str, Any]], single: list[dict[str, Any]]) -> None:
    assert [r["epoch"] for r in chief] == [r["epoch"] for r in single]
    for mine, ref in zip(chief, single, strict=False):
        for key in COMPARED:
            assert math.isclose(mine[key], ref[key], rel_tol=1e-4, abs_tol=1e-6), (mine["epoch"], key)


def test_two_ranks_reproduce_the_single_process_run(ddp_runs) -> None:
    single: list[dict[str, Any]] = []
    run_training(CONFIG, lambda metrics, ckpt: single.append(metrics))
    chief = ddp_runs[1][0][0]
    assert [r["epoch"] for r in chief] == [0, 1, 2]
    _assert_same(chief, single)
    assert "dead_frac_max" in chief[1]  # the probes still see the wrapped model's layers


def test_a_warm_start_continues_like_a_single_process_one(ddp_runs) -> None:
    out, ranks = ddp_runs
    single: list[dict[str, Any]] = []
    run_training(_warm_config(out), lambda metrics, ckpt: single.append(metrics))
    warm = ranks[0][1]
    assert [r["epoch"] for r in warm] == [2, 3]  # epochs continue from the checkpoint's
    assert warm[0]["lr"] == 0.001
    _assert_same(warm, single)


def test_ranks_agree_and_only_rank_zero_checkpoints(ddp_runs) -> None:
    chief, other = (runs[0] for runs in ddp_runs[1])
    assert [r["val_loss"] for r in chief] == [r["val_loss"] for r in other]  # one replicated model
    assert [r["checkpoint"] for r in chief] == [False, True, True]
    assert not any(r["checkpoint"] for r in other)


# -- the spike guard under DDP: every rank judges the mean loss over the ranks ------------------

def _guarded_config() -> dict[str, Any]:
    """tests/fixtures/spiky_data.py (one corrupted training example) and the guard on, judged from
    step 10 over 16-step windows: one spike an epoch, on whichever rank draws that example."""
    return {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
            "data": {"factory": "spiky_data:burst", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
            "batch_size": 50, "epochs": 2, "seed": 0, "probes": {"enabled": False},
            "spike_guard": {"enabled": True, "snapshot_every_steps": 5}}


def _guard_rules() -> dict[str, Any]:
    from autofix.rules.intrial import in_trial_data
    from autofix.rules.policy import load_policies

    return in_trial_data(load_policies(["builtin"]), {"loss_spike": {"warmup_steps": 10, "window_steps": 16}})


def _guarded_rank(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    rows: list[dict[str, Any]] = []
    try:
        run_training(_guarded_config(), lambda m, c: rows.append(m),
                     parallel=Parallel(rank, 2, wrap=nn.parallel.DistributedDataParallel), in_trial=_guard_rules())
    finally:
        dist.destroy_process_group()
    Path(out, f"guarded{rank}.json").write_text(json.dumps(rows))


def test_under_ddp_every_rank_rewinds_the_same_spikes_as_one_process_would(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    mp.start_processes(_guarded_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    chief, other = (json.loads(Path(tmp_path, f"guarded{r}.json").read_text()) for r in range(2))
    single: list[dict[str, Any]] = []
    run_training(_guarded_config(), lambda m, c: single.append(m), in_trial=_guard_rules())
    keys = ("rewinds", "skipped_batches", "rewound_steps", "last_rewind_from")
    assert chief[-1]["rewinds"] >= 2  # one spike an epoch, each found
    assert [[r.get(k) for k in keys] for r in chief] == [[r.get(k) for k in keys] for r in other]  # ranks agree
    assert [[r.get(k) for k in keys] for r in chief] == [[r.get(k) for k in keys] for r in single]  # as one process
    _assert_same(chief, single)
