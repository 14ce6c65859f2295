"""A custom trainable with the most common training-loop bug: ``optimizer.step()`` is missing.

The loss is computed and back-propagated, gradients are fine, nothing ever changes. autofix must
say so and stop: no configuration change can fix code.
"""

import torch
from sklearn.datasets import load_digits
from torch import nn

import autofix
from autofix.probes import Probe


def train_fn(config: dict) -> None:
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    xtr, ytr, xva, yva = x[:1400], y[:1400], x[1400:], y[1400:]
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    probe = Probe(model, opt, every_steps=5)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(config["epochs"] + 1):
        train_losses = []
        for idx in torch.randperm(len(xtr)).split(64) if epoch else []:
            with probe.step(xtr[idx]):
                opt.zero_grad()
                loss = loss_fn(model(xtr[idx]), ytr[idx])
                loss.backward()
                # BUG: opt.step() is missing
            train_losses.append(loss.item())
        with torch.no_grad():
            val = loss_fn(model(xva), yva).item()
        train = sum(train_losses) / len(train_losses) if train_losses else val
        metrics = {"epoch": epoch, "val_loss": val, "train_loss": train}
        metrics.update(probe.epoch_metrics())
        autofix.report(metrics)
