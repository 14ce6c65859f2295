"""A trial under ``ray.distributed``: each attempt runs as a Ray Train ``TorchTrainer`` (DDP).

Every Train worker runs the managed harness on its shard of the data
(:mod:`autofix.harness.distributed`); rank 0's reports and checkpoints become the Tune trial's
reports and checkpoints (:class:`_Relay`), so the scheduler, the engine, warm starts and Tune's
restores see the same stream as a single-process trial (:mod:`autofix.tune.trial`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import ray
import ray.tune
from ray.train import UserCallback

from autofix.tune.trial import RESERVED, _enter, _run_rung

__all__ = ["make_distributed_trainable"]


def _resume_point(config: Mapping[str, Any], training: dict[str, Any]) -> str | None:
    """Tune's checkpoint of this trial (a retry) if any; else set the warm start, if any."""
    tune_ckpt = ray.tune.get_checkpoint()
    if tune_ckpt is not None:
        # The path inside the run's storage, not a local copy: every Train worker reads it.
        return tune_ckpt.path
    meta = config.get(RESERVED) or {}
    if meta.get("warm_from"):
        training["warm_start"] = meta["warm_from"]
    return None


def make_distributed_trainable(workers: int, backend: str, use_gpu: bool,
                               cpus_per_worker: float) -> Callable[[dict[str, Any]], None]:
    """A Tune trainable that runs each attempt as a Ray Train ``TorchTrainer`` (DDP).

    Every Train worker runs :func:`autofix.harness.run_training` on its shard of the data
    (:mod:`autofix.harness.distributed`); rank 0's reports and checkpoints become this trial's
    Tune reports and checkpoints (:class:`_Relay`), so the scheduler, the engine, warm starts
    and Tune's restores see the same stream as a single-process trial.
    """

    def distributed_trainable(config: dict[str, Any]) -> None:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        meta = _enter(config)
        training = {k: v for k, v in config.items() if k != RESERVED}
        if meta.get("isolate"):  # a rung is a small single-process experiment, run in the trial itself
            _run_rung(training, meta["isolate"])
            return
        restore = _resume_point(config, training)
        # Train persists rank 0's checkpoints into this trial's folder of the run's storage (so
        # any node can reach them); the relay hands them to Tune and deletes Train's copies.
        storage = ray.tune.get_context().get_storage()
        relay = _Relay(f"{storage.trial_fs_path}/{_TRAIN_RUN}", storage.storage_filesystem)
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"training": training, "restore": restore, "meta": meta, "use_gpu": use_gpu,
                               "steps": relay.queue},  # rank 0's reports between epochs, around Train's barrier
            torch_config=TorchConfig(backend=backend),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": cpus_per_worker}),
            run_config=RunConfig(name=_TRAIN_RUN, storage_path=storage.trial_fs_path,
                                 storage_filesystem=storage.storage_filesystem,
                                 callbacks=[relay.callback()]),  # type: ignore[list-item]  # a Train UserCallback
        )
        relay.run(trainer.fit)

    return distributed_trainable


_TRAIN_RUN = "train"  # the Train run's folder inside the Tune trial's


class _RankZeroCallback(UserCallback):
    """Runs in the Train controller: hands rank 0's report and the persisted checkpoint over."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        # metrics[i] is worker i's: rank 0's only, so one Tune report per epoch (train_workers
        # says how many workers reported it). Blocking on the one-slot queue paces the workers
        # to the Tune trial, as TuneReportCallback does.
        self.queue.put({"metrics": {**metrics[0], "train_workers": len(metrics)}, "checkpoint": checkpoint,
                        "controller": ray.get_runtime_context().current_actor})


class _Relay:
    """Turns a Train run's rank-0 reports into this Tune trial's reports *with* checkpoints.

    Ray 2.60's ``TuneReportCallback`` forwards metrics only (the checkpoint becomes a
    ``checkpoint_path`` metric), so Tune's ``trial.checkpoint`` and ``get_checkpoint()`` stay
    empty, and autofix's warm starts and retries need them. Here ``fit()`` runs in a thread
    and this (trial) thread calls ``ray.tune.report`` with each checkpoint, which Tune copies
    into the trial directory.
    """

    _POLL_S = 0.5
    _ABORT_WAIT_S = 1.5  # Tune waits 2 s for the trial thread before it discards the actor

    def __init__(self, train_dir: str, filesystem: Any) -> None:
        from ray.util.queue import Queue

        self.queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        self.controller: Any = None
        self.train_dir, self.filesystem = train_dir, filesystem

    def callback(self) -> _RankZeroCallback:
        """The Train callback feeding this relay."""
        return _RankZeroCallback(self.queue)

    def run(self, fit: Callable[[], Any]) -> None:
        """Run ``fit`` and relay its reports until it ends; re-raise its error."""
        outcome: dict[str, BaseException] = {}

        def target() -> None:
            try:
                fit()
            except BaseException as exc:  # noqa: BLE001  re-raised in the trial thread below
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="autofix-train-fit", daemon=True)
        thread.start()
        try:
            self._pump(thread)
        finally:
            if thread.is_alive():  # Tune stopped the trial (SystemExit from ray.tune.report)
                self._abort(thread)
            self.queue.shutdown(force=True)
            self._delete(self.train_dir)  # whatever Train kept: every reported one is Tune's now
        if "error" in outcome:
            raise outcome["error"]

    def _pump(self, thread: threading.Thread) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                item = self.queue.get(timeout=self._POLL_S)
            except Empty:
                if thread.is_alive() or not self.queue.empty():
                    continue
                return  # fit is over and every report was relayed
            self.controller = item["controller"] or self.controller  # None: rank 0's report between epochs
            train_ckpt = item["checkpoint"]
            ckpt = ray.tune.Checkpoint(train_ckpt.path, train_ckpt.filesystem) if train_ckpt else None
            try:
                ray.tune.report(item["metrics"], checkpoint=ckpt)  # SystemExit when Tune stops us
            finally:
                if train_ckpt is not None:
                    self._delete(train_ckpt.path)  # Tune copied it before it could stop us

    def _delete(self, path: str) -> None:
        try:
            self.filesystem.delete_dir(path)
        except (FileNotFoundError, OSError):
            pass  # already gone

    def _abort(self, thread: threading.Thread) -> None:
        # Else the Train workers would keep their CPUs while this actor runs the next attempt.
        # The controller may be blocked in after_report on the full queue: free it first.
        while not self.queue.empty():
            self.queue.get_nowait()
        if self.controller is None:
            return
        ref = self.controller.abort.remote()
        ready, _ = ray.wait([ref], timeout=self._ABORT_WAIT_S)
        if not ready:
            ray.kill(self.controller)  # its placement group is then freed by Train's cleaner
        thread.join(timeout=self._ABORT_WAIT_S)


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the managed harness as one rank of a DDP run."""
    import ray.train
    import ray.train.torch

    from autofix.harness import run_training
    from autofix.harness.distributed import Parallel

    _enter({RESERVED: loop_config["meta"]})
    context = ray.train.get_context()
    device = str(ray.train.torch.get_device()) if loop_config["use_gpu"] else "cpu"
    parallel = Parallel(context.get_world_rank(), context.get_world_size(), wrap=ray.train.torch.prepare_model,
                        device=device)

    def _report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        # Every rank reports (ray.train.report is a barrier); only rank 0 has checkpoints.
        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    steps = loop_config.get("steps") if parallel.is_chief else None
    run_training(loop_config["training"], _report, restore_dir=loop_config["restore"], parallel=parallel,
                 in_trial=loop_config["meta"].get("in_trial"),
                 step_report=None if steps is None else lambda metrics: _step_report(steps, metrics))


def _step_report(queue: Any, metrics: dict[str, float]) -> None:
    """Rank 0's report between epochs, straight onto the relay's queue: ``ray.train.report`` is a
    barrier every rank would have to meet at the same step. Best effort: when the one slot holds
    an epoch report still to relay, this one is dropped rather than wait (the next comes within
    ``training.step_reports``' bounds; the epoch report carries what the judges read), and so is
    one sent while the trial is being stopped (the relay's queue is gone)."""
    from ray.exceptions import RayActorError
    from ray.util.queue import Full

    try:
        queue.put_nowait({"metrics": metrics, "checkpoint": None, "controller": None})
    except (Full, RayActorError):
        pass
