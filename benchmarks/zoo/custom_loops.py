"""A user's own Ray Tune function trainable: the seed's SimpleCNN on CIFAR-like synthetic images.

Written as a user would write it with autofix: ``autofix.report`` with ``step``/``planned_steps``,
``autofix.judge_inputs`` for the scores and chance figures, ``Probe`` for the gradient and
update streams, checkpoints for warm starts. The zoo's "custom-loops" cases (cases.yaml) switch
one fault on through the config, each a mistake users make in their own loops:

* ``init: normal``: every weight drawn from N(0, 1) (a model at chance whose loss still falls);
* ``zero_grad: false``: ``optimizer.zero_grad()`` forgotten (gradients accumulate);
* ``target: broadcast``: MSE on (N, 1) targets against (N, 10) outputs;
* ``nan_epoch: k``: the accuracy is averaged over an empty slice at epoch k (NaN), the loss fine;
* ``majority: 0.9``: 90% of the labels in one class (``class_weights: balanced`` is the cure);
* ``lr``: too high; ``probe: false``: the same loop without ``Probe``.

:func:`run_loop` takes the report function, so the bench trains the same loop left alone
in-process (:func:`benchmarks.common.train_series`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import autofix
from autofix.harness.models import SimpleCNN
from autofix.probes import Probe

from zoo_models import imbalanced_images

__all__ = ["run_loop", "train_fn"]


def train_fn(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable autofix runs (spec: ``trainable: custom_loops:train_fn``)."""
    run_loop(config, autofix.report, autofix.get_checkpoint(config))


def _init(model: nn.Module, init: Any) -> None:
    """``normal``: N(0, 1) weights (the fault); a dict is autofix's ``reinitialize`` patch."""
    scheme = init.get("scheme") if isinstance(init, dict) else init
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if scheme == "normal":
                m.weight.normal_(0.0, 1.0)
                m.bias.normal_(0.0, 1.0)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.bias.zero_()


def _loss(out: torch.Tensor, y: torch.Tensor, config: dict[str, Any], weight: torch.Tensor | None) -> torch.Tensor:
    if config.get("target") == "broadcast":  # the fault: (N, 10) outputs against (N, 1) targets
        return F.mse_loss(out, y.float().unsqueeze(1))
    return F.cross_entropy(out, y, weight=weight)


def _balanced(y: torch.Tensor, classes: int) -> torch.Tensor:
    """scikit-learn's compute_class_weight('balanced'): n / (classes x count)."""
    counts = torch.bincount(y, minlength=classes).clamp(min=1).float()
    return len(y) / (classes * counts)


def run_loop(config: dict[str, Any], report: Callable[..., None], resume: str | None = None) -> None:
    """Train and report once before training (step 0) and after every epoch."""
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    train, val = imbalanced_images(seed, majority=config.get("majority", 0.1), noise=config.get("noise", 0.5))
    (xtr, ytr), (xva, yva) = train.tensors, val.tensors
    model = SimpleCNN(10)
    _init(model, config.get("init", "default"))
    lr, batch, epochs = float(config["lr"]), int(config.get("batch_size", 64)), int(config["epochs"])
    if config.get("optimizer", "sgd") == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(config.get("momentum", 0.9)))
    weight = _balanced(ytr, 10) if config.get("class_weights") == "balanced" else None
    probe = Probe(model, opt) if config.get("probe", True) else None
    planned = epochs * -(-len(ytr) // batch)
    step, first = 0, 1
    if resume:  # a warm start: the checkpoint's weights and optimizer state, this config's lr
        state = torch.load(Path(resume, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        for group in opt.param_groups:
            group["lr"] = lr
        first, step = state["epoch"] + 1, state["step"]
    else:  # the untrained model first: the baseline, and the loss at initialization
        _evaluate(model, config, (xva, yva, ytr), 0, [], probe, report, (0, planned), opt)
    gen = torch.Generator().manual_seed(seed + first)
    for epoch in range(first, epochs + 1):
        model.train()
        losses = []
        for idx in torch.randperm(len(ytr), generator=gen).split(batch):
            x, y = xtr[idx], ytr[idx]
            if probe is not None:
                probe.before_step(x)
            if config.get("zero_grad", True):
                opt.zero_grad()
            loss = _loss(model(x), y, config, weight)
            loss.backward()
            if probe is not None:
                probe.after_backward()
            opt.step()
            if probe is not None:
                probe.after_step()
            losses.append(float(loss))
        step += len(losses)
        _evaluate(model, config, (xva, yva, ytr), epoch, losses, probe, report, (step, planned), opt)


def _evaluate(model: nn.Module, config: dict[str, Any], data: tuple[torch.Tensor, ...], epoch: int,
              losses: list[float], probe: Probe | None, report: Callable[..., None], at: tuple[int, int],
              opt: torch.optim.Optimizer) -> None:
    xva, yva, ytr = data
    model.eval()
    with torch.no_grad():
        out = model(xva)
    val_loss = float(_loss(out, yva, config, None))  # unweighted: comparable across attempts
    metrics = {"epoch": epoch, "val_loss": val_loss,
               **autofix.judge_inputs(yva, out, train_labels=ytr, cross_entropy=config.get("target") != "broadcast")}
    if losses:
        metrics["train_loss"] = float(np.mean(losses))
    if probe is not None:
        metrics.update(probe.epoch_metrics())
    if epoch == config.get("nan_epoch"):  # the fault: accuracy averaged over an empty slice
        correct = (out.argmax(1) == yva).float()
        metrics["val_accuracy"] = float(correct[:0].mean())
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "step": at[0]},
                   Path(folder, "state.pt"))
        report(metrics, folder, step=at[0], planned_steps=at[1])
