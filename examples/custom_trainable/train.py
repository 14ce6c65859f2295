"""A user's own Ray Tune function trainable, healed by autofix through its ``lr`` key.

Nothing here is autofix-specific except ``autofix.report`` (instead of ``ray.tune.report``):
a two-layer MLP on scikit-learn's ``make_classification``, trained with plain SGD.
"""

import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from torch import nn

import autofix


def _data(seed: int):
    x, y = make_classification(n_samples=1200, n_features=20, n_informative=8, n_classes=3,
                               random_state=seed)
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    as_t = lambda a, t: torch.tensor(a, dtype=t)  # noqa: E731
    return as_t(xtr, torch.float32), as_t(ytr, torch.long), as_t(xva, torch.float32), as_t(yva, torch.long)


def train_fn(config: dict) -> None:
    """Reports ``loss`` (validation) and ``accuracy`` once before training and after each epoch."""
    torch.manual_seed(config.get("seed", 0))
    xtr, ytr, xva, yva = _data(config.get("seed", 0))
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config.get("momentum", 0.9))
    loss_fn = nn.CrossEntropyLoss()

    def evaluate(epoch: int) -> None:
        with torch.no_grad():
            out = model(xva)
            acc = (out.argmax(1) == yva).float().mean().item()
            autofix.report({"epoch": epoch, "loss": loss_fn(out, yva).item(), "accuracy": acc})

    evaluate(0)
    for epoch in range(1, config["epochs"] + 1):
        for idx in torch.randperm(len(xtr)).split(config.get("batch_size", 32)):
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
        evaluate(epoch)
