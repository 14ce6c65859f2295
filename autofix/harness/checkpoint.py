"""Checkpoints of the managed loop: save, restore a crashed run, warm-start a patched one.

A checkpoint (``state.pt``) holds the model, optimizer and scheduler states, the scheduler
spec, the RNG states and the config parts that fix the model's structure (``model``,
``architecture``, ``init``). A warm start keeps the weights (and, for the same optimizer class,
its moments) when only training knobs changed: lr, weight decay, scheduler, class weights,
sampler, clipping. When the patched config changes the structure, the old weights no longer
describe this model (or undo the re-initialisation that was asked for), so the run starts cold
with a one-line warning on stderr; the engine marks such actions cold anyway.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import numpy as np
import torch

from autofix.harness.builders import optimizer_kwargs
from autofix.harness.schedules import build_scheduler

__all__ = ["STATE_FILE", "STRUCTURE_KEYS", "load_checkpoint", "prepare", "save_checkpoint",
           "structure"]

STATE_FILE = "state.pt"
STRUCTURE_KEYS = ("model", "architecture", "init")


def structure(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config parts that decide the model's parameters (shapes and initial values)."""
    return {key: cfg.get(key) for key in STRUCTURE_KEYS}


def _rng_state() -> dict[str, Any]:
    # numpy's state holds an ndarray; stored as a tensor so torch.load(weights_only=True) works.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),  # type: ignore[attr-defined]  # the legacy tuple
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def save_checkpoint(trainer: Any, epoch: int) -> str:
    """Write ``state.pt`` for ``trainer`` after ``epoch`` into a new temp directory."""
    directory = tempfile.mkdtemp(prefix="autofix-ckpt-")
    state = {
        "epoch": epoch,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "optimizer_class": type(trainer.optimizer).__name__,
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler else None,
        "scheduler_spec": trainer.cfg["scheduler"],
        "structure": structure(trainer.cfg),
        "rng": _rng_state(),
        # the spike guard's rules and totals: a retried trial goes on judging as the run was
        "guard": trainer.guard.state_dict() if trainer.guard is not None else None,
    }
    torch.save(state, os.path.join(directory, STATE_FILE))
    return directory


def load_checkpoint(directory: str) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint` in ``directory``."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint directory {directory!r} has no {STATE_FILE}")
    # A GPU rank's checkpoint must load anywhere; load_state_dict then copies to the model's device.
    return torch.load(path, weights_only=True, map_location="cpu")


def _structure_change(trainer: Any, state: dict[str, Any]) -> str | None:
    """What makes the checkpoint's weights unfit for this model, or None when they fit."""
    saved = state.get("structure")
    if saved is not None:
        now = structure(trainer.cfg)
        changed = [key for key in STRUCTURE_KEYS if saved.get(key) != now[key]]
        return ", ".join(changed) or None
    # A checkpoint without the record (older harness): the parameter shapes decide.
    mine = {k: tuple(v.shape) for k, v in trainer.model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state["model"].items()}
    return None if mine == theirs else "parameter names or shapes"


def prepare(trainer: Any, restore_dir: str | None) -> int:
    """Load any checkpoint, build the scheduler, return the first epoch to run (0 = evaluate).

    ``restore_dir`` (a Ray retry of this very config) wins over ``warm_start``.
    """
    cfg = trainer.cfg
    source = restore_dir or cfg["warm_start"]
    state = load_checkpoint(source) if source else None
    if state is not None and not restore_dir:
        changed = _structure_change(trainer, state)
        if changed:
            print(f"autofix: warm start from {source} ignored: the model structure changed "
                  f"({changed}); training from scratch", file=sys.stderr)
            state = None
    if state is not None:
        trainer.model.load_state_dict(state["model"])
        # Another optimizer's moments mean nothing to this one: weights only, then.
        if state["optimizer_class"] == type(trainer.optimizer).__name__:
            trainer.optimizer.load_state_dict(state["optimizer"])
        if not restore_dir:
            _apply_config_hyperparams(trainer)
    # Built after the optimizer state is loaded so its base lr is the lr in force (the patched
    # one for a warm start), not the one from the config's first launch.
    lrs = [group["lr"] for group in trainer.optimizer.param_groups]
    trainer.scheduler = build_scheduler(cfg["scheduler"], trainer.optimizer, cfg["epochs"])
    if state is None:
        return 0
    same_schedule = restore_dir or state["scheduler_spec"] == cfg["scheduler"]
    if trainer.scheduler is not None and state["scheduler"] is not None and same_schedule:
        trainer.scheduler.load_state_dict(state["scheduler"])
        # Constructing a scheduler takes its first step (LinearLR scales the lr down by
        # start_factor); a loaded schedule continues from the lr in force at the checkpoint.
        # strict=False: a group the checkpoint has no lr for keeps its own.
        for group, lr in zip(trainer.optimizer.param_groups, lrs, strict=False):
            group["lr"] = lr
        if not restore_dir:
            _rebase_scheduler(trainer.scheduler, trainer.optimizer)
    if restore_dir:
        _set_rng_state(state["rng"])
        trainer.restored_guard = state.get("guard")  # a retry goes on with it; a warm start is a new attempt
    return state["epoch"] + 1


def _apply_config_hyperparams(trainer: Any) -> None:
    """Warm start: the checkpoint's moments stay, the config's lr and kwargs win."""
    spec = trainer.cfg["optimizer"]
    for group in trainer.optimizer.param_groups:
        group.pop("initial_lr", None)  # else a new scheduler would resume from the old lr
        group["lr"] = spec["lr"]
        group.update(optimizer_kwargs(spec))


def _rebase_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    """A resumed schedule continues from the patched lr; SequentialLR's children too."""
    lrs = [group["lr"] for group in optimizer.param_groups]
    for sched in [scheduler, *getattr(scheduler, "_schedulers", [])]:
        for attr in ("base_lrs", "_last_lr"):
            if hasattr(sched, attr):
                setattr(sched, attr, list(lrs))
