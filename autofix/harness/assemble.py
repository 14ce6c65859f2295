"""Build every object of one managed run from its (normalised) config.

The order matters and is fixed here: data, then the input pipeline (normalisation statistics
come from the training split only), the sampler, the model (factory, architecture surgery,
init), and last the loss, whose class weights need both the labels and the model's width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from autofix.harness.builders import LossFn, build_data, build_loss, build_model, normalize_config
from autofix.harness.data import Batches
from autofix.harness.distributed import Parallel, per_rank_batch
from autofix.harness.transforms import input_transforms
from autofix.harness.weighting import dataset_labels, loss_weight_kwargs, output_width, sampler_weights

__all__ = ["Run", "build_run", "first_batch", "preview_model"]


@dataclass
class Run:
    """The built objects: the raw training set (for labels and lengths) and its batches."""

    train_set: Dataset
    train: Batches
    val: Batches
    model: nn.Module
    loss_fn: LossFn


def _batches(cfg: dict[str, Any], train: Dataset, val: Dataset, eval_batch: int,
             parallel: Parallel | None) -> tuple[Batches, Batches]:
    data, seed, size = cfg["data"], cfg["seed"], cfg["batch_size"]
    shard = device = None
    if parallel is not None:  # each rank trains on its share; evaluation stays whole
        shard, size = (parallel.rank, parallel.world_size), per_rank_batch(size, parallel.world_size)
        device = parallel.device
    train_tf, val_tf = input_transforms(data, train)
    weights = None
    if data.get("sampler", "uniform") == "balanced":
        labels = dataset_labels(train, cfg["loss"]["name"], "data.sampler 'balanced'")
        weights = sampler_weights(labels)
    elif data.get("sampler", "uniform") != "uniform":
        raise ValueError(f"data.sampler {data['sampler']!r} is not 'uniform' or 'balanced'")
    return (Batches(train, size, shuffle=data.get("shuffle", True), seed=seed, weights=weights, transform=train_tf,
                    shard=shard, device=device),
            Batches(val, max(size, eval_batch), shuffle=False, seed=seed, transform=val_tf, device=device))


def first_batch(batches: Batches) -> Any:
    """The inputs of the first training batch (epoch 0), which surgery traces the model with.

    Taken under a forked RNG so the model's initial weights are those of a run built without
    it (a sampler draws from the global generator)."""
    with torch.random.fork_rng(devices=[]):
        x, _ = next(iter(batches.epoch(0)))
    return x.cpu() if isinstance(x, torch.Tensor) else x  # the model is built on the CPU


def preview_model(config: dict[str, Any]) -> nn.Module:
    """The model a trial of ``config`` builds, built here with the same seed and first batch
    (the driver's check of a patch before it is launched); the caller's RNG states are kept."""
    cfg = normalize_config(config)
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            np.random.seed(cfg["seed"])
            train, val = build_data(cfg["data"], cfg["seed"])
            batches, _ = _batches(cfg, train, val, 1, None)
            return build_model(cfg["model"], cfg.get("architecture"), cfg.get("init"), first_batch(batches))
    finally:
        np.random.set_state(state)


def build_run(cfg: dict[str, Any], eval_batch: int, parallel: Parallel | None = None) -> Run:
    """Data, batches, model and loss for ``cfg`` (validation batches at least ``eval_batch``);
    with ``parallel``, the training batches are this rank's shard."""
    train, val = build_data(cfg["data"], cfg["seed"])
    train_batches, val_batches = _batches(cfg, train, val, eval_batch, parallel)
    model = build_model(cfg["model"], cfg.get("architecture"), cfg.get("init"), first_batch(train_batches))
    loss_spec = cfg["loss"]
    extra = {}
    if loss_spec.get("class_weights") is not None:
        labels = lambda: dataset_labels(train, loss_spec["name"], "loss.class_weights")  # noqa: E731
        extra = loss_weight_kwargs(loss_spec, labels, output_width(model, train))
    loss_fn = build_loss(loss_spec, extra)
    if parallel is not None:
        loss_fn.module.to(parallel.device)  # class weights live beside the logits
    return Run(train, train_batches, val_batches, model, loss_fn)
