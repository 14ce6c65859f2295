"""A user's own Ray Tune function trainable, judged and healed by autofix through its ``lr`` key.

``train_fn`` is the loop of docs/custom_trainables.md ("A complete judged and managed loop"): ``autofix.report`` (with
``step``/``planned_steps``) instead of ``ray.tune.report``, ``Probe`` for the gradient and update
streams, ``autofix.judge_inputs`` for the scores and chance figures. ``build`` is ordinary code:
a two-layer MLP on scikit-learn's ``make_classification``, trained with SGD.
"""

import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from torch import nn

import autofix
from autofix.probes import Probe


def build(config: dict):
    """The model, its optimizer and the (train, validation) tensors."""
    torch.manual_seed(config.get("seed", 0))
    x, y = make_classification(n_samples=1200, n_features=20, n_informative=8, n_classes=3,
                               random_state=config.get("seed", 0))
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config.get("momentum", 0.9))
    as_t = lambda a, t: torch.tensor(a, dtype=t)  # noqa: E731
    return model, opt, (as_t(xtr, torch.float32), as_t(ytr, torch.long)), (as_t(xva, torch.float32), as_t(yva, torch.long))


def train_fn(config):
    model, opt, (xtr, ytr), (xva, yva) = build(config)
    probe, loss_fn, n = Probe(model, opt), torch.nn.CrossEntropyLoss(), len(xtr.split(32))
    for epoch in range(config["epochs"] + 1):  # epoch 0: the untrained model
        for x, y in (zip(xtr.split(32), ytr.split(32)) if epoch else []):
            with probe.step(x):
                opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()  # noqa: E702
        with torch.no_grad():
            out, train_loss = model(xva), loss_fn(model(xtr), ytr).item()
        autofix.report({"epoch": epoch, "val_loss": loss_fn(out, yva).item(), "train_loss": train_loss,
                        **probe.epoch_metrics(), **autofix.judge_inputs(yva, out, train_labels=ytr)},
                       step=epoch * n, planned_steps=config["epochs"] * n)
