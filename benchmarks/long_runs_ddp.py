"""Block "long runs" (issue 17): the spike case under DDP, each run a Ray Train ``TorchTrainer``.

Issue 17 asks for "a spike under Ray Train DDP". Each run of the DDP case is :func:`train` on
every worker of a ``TorchTrainer`` (2 CPU workers, gloo), the model wrapped by Ray Train's own
``prepare_model`` as ``autofix run`` wraps it under ``ray.distributed``
(:func:`autofix.tune.ddp.make_distributed_trainable`); each rank draws its shard of every batch
and, with the guard on, judges the mean loss over the ranks (:mod:`autofix.harness.distributed`).
Rank 0's :class:`long_runs_methods.Run` comes back as the training function's return value (Ray
Train's ``Result.return_value`` is rank 0's; the ranks agree on every rewind, as
tests/test_harness_distributed.py checks with two processes). ``launcher="fork"`` runs the same two ranks as
forked processes joined by a gloo process group instead, without Ray (quicker; what the block ran
before it used Ray Train).
"""

from __future__ import annotations

import json
import socket
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from long_runs_cases import Case
from long_runs_methods import Run, _row, stop_and_restart, train, with_loss_onset

__all__ = ["LAUNCHERS", "run_ddp_case", "train_ddp"]

LAUNCHERS = ("ray", "fork")
WORKERS = 2


def _run_of(data: dict[str, Any]) -> Run:
    data["curve"] = [tuple(p) for p in data["curve"]]
    data["rewinds"] = [tuple(r) for r in data["rewinds"]]
    return Run(**data)


def _ray_worker(config: dict[str, Any]) -> str:
    """One Ray Train worker: :func:`train` as one rank; its run as JSON (Ray Train keeps rank 0's)."""
    import ray.train
    import ray.train.torch

    from autofix.harness.distributed import Parallel

    context = ray.train.get_context()
    parallel = Parallel(context.get_world_rank(), context.get_world_size(), wrap=ray.train.torch.prepare_model)
    run = train(config["case"], config["seed"], parallel=parallel, **config["kwargs"])
    return json.dumps(asdict(run))


def _train_ray(case: Case, seed: int, kwargs: dict[str, Any]) -> Run:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    with tempfile.TemporaryDirectory() as storage:
        trainer = TorchTrainer(
            _ray_worker, train_loop_config={"case": case, "seed": seed, "kwargs": kwargs},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=WORKERS, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="long_runs_ddp", storage_path=storage))
        result = trainer.fit()
    if result.error is not None:
        raise result.error
    return _run_of(json.loads(result.return_value))


def _fork_rank(rank: int, port: int, out: str, case: Case, seed: int, kwargs: dict[str, Any]) -> None:
    import torch.distributed as dist
    from torch import nn

    from autofix.harness.distributed import Parallel

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORKERS)
    try:
        run = train(case, seed, parallel=Parallel(rank, WORKERS, wrap=nn.parallel.DistributedDataParallel), **kwargs)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        Path(out, "run.json").write_text(json.dumps(asdict(run)))


def _train_fork(case: Case, seed: int, kwargs: dict[str, Any]) -> Run:
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_fork_rank, args=(port, out, case, seed, kwargs), nprocs=WORKERS, join=True,
                           start_method="fork")
        return _run_of(json.loads(Path(out, "run.json").read_text()))


def train_ddp(case: Case, seed: int, launcher: str = "ray", **kwargs: Any) -> Run:
    """:func:`train` on two gloo ranks (see the module); rank 0's run."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    return _train_ray(case, seed, kwargs) if launcher == "ray" else _train_fork(case, seed, kwargs)


def run_ddp_case(case: Case, seed: int, launcher: str = "ray") -> list[dict[str, Any]]:
    """A DDP case: the clean twin (alone and guarded), left alone, the ideal skip, the shipped
    guard, detect-and-stop and the restart at a lower rate after it (every rank stops at the same
    step: they judge the mean loss over the ranks, as the guard does)."""
    clean = train_ddp(case, seed, launcher, inject=False)
    runs = {"clean": clean, "clean_guard": train_ddp(case, seed, launcher, inject=False, guard="guard"),
            "left_alone": train_ddp(case, seed, launcher), "ideal_skip": train_ddp(case, seed, launcher, drop=True),
            "guard": train_ddp(case, seed, launcher, guard="guard")}
    rows = [_row(case, seed, method, run, clean, 0) for method, run in runs.items()]
    rows += stop_and_restart(case, seed, clean, lambda **kwargs: train_ddp(case, seed, launcher, **kwargs))
    return [{**row, "launcher": launcher} for row in with_loss_onset(rows)]
