"""The torch side of the isolation ladder: run one rung of :mod:`autofix.rules.isolation` in a trial.

A rung is a short experiment on the user's own config, built exactly as a training attempt
builds it (:func:`autofix.harness.assemble.build_run`: data pipeline, model surgery and init,
loss, optimizer). It reports one row of plain numbers; :func:`autofix.rules.isolation.conclude` (pure,
on the driver) turns them into a verdict. ``examples`` in the row counts what the rung processed
(one example through one model's forward pass, with its backward pass when trained).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from autofix.harness.assemble import build_run
from autofix.harness.builders import build_optimizer, normalize_config
from autofix.harness.evaluate import class_targets, predict
from autofix.harness.losses import CLASS_ID_LOSSES

__all__ = ["batch_floor", "run_rung"]

Report = Callable[[dict[str, Any], str | None], None]
_EVAL_BATCH = 256


def run_rung(config: dict[str, Any], rung: dict[str, Any], report: Report) -> None:
    """Run the rung ``rung`` (``{"rung": name, **sizes}`` from :func:`autofix.rules.isolation.rung_budget`)
    on ``config`` and report its numbers once; an exception is reported as ``error``."""
    began = time.monotonic()
    cfg = normalize_config(config)
    torch.set_num_threads(1)
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    runner = {"overfit_batch": _overfit_batch, "simple_model": _simple_model,
              "shuffled_labels": _shuffled_labels}[rung["rung"]]
    try:
        row = runner(cfg, rung)
    except (RuntimeError, ValueError, TypeError) as exc:
        row = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    report({"epoch": 0, "isolation_seconds": time.monotonic() - began, **row}, None)


def batch_floor(x: torch.Tensor, y: torch.Tensor, loss_name: str) -> float:
    """The lowest loss a model can reach on one batch: examples with identical inputs get one
    output, so a class-id loss cannot go below the entropy of their labels (0 when every input
    is distinct); other losses are floored at 0."""
    if loss_name not in CLASS_ID_LOSSES or y.is_floating_point():
        return 0.0
    _, group = torch.unique(x.reshape(len(x), -1), dim=0, return_inverse=True)
    total = 0.0
    for g in group.unique():
        labels = y[group == g]
        shares = torch.bincount(labels).float()
        shares = shares[shares > 0] / len(labels)
        total += float(len(labels) * -(shares * shares.log()).sum())
    return total / len(y)


REFERENCE_OPTIMIZER = {"name": "adam", "lr": 1e-3, "kwargs": {}}
"""Tried when the user's optimizer does not move the batch: AUTOTRAINER's base rate for adaptive
optimizers. If it moves it, the optimizer's settings are at fault (config), not the step (code)."""
TINY_MLP_WIDTH = 64  # the simple model that overfits the batch with the user's loss: 64 hidden units


class _TinyMLP(torch.nn.Module):
    """Flattened inputs -> 64 ReLU units -> as many outputs as the user's model gives."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(inputs, TINY_MLP_WIDTH), torch.nn.ReLU(),
                                       torch.nn.Linear(TINY_MLP_WIDTH, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _fit_batch(model: torch.nn.Module, loss_fn: Any, optimizer_spec: dict[str, Any], x: Any, y: Any,
               steps: int) -> dict[str, Any]:
    """Train ``model`` ``steps`` steps on the batch (x, y); the losses and how far the weights moved."""
    optimizer = build_optimizer(optimizer_spec, model.parameters())
    start = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    model.train()
    losses: list[float] = []
    note = ""
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        try:
            loss.backward()
        except RuntimeError as exc:  # no graph: the loss does not depend on any parameter
            note = f"loss.backward() raised: {str(exc).splitlines()[0]}"
            break
        optimizer.step()
    with torch.no_grad():
        final = float(loss_fn(model(x), y))
    moved = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - start
    way = (losses[0] if losses else final) - batch_floor(x, y, loss_fn.name)
    quarter = losses[(3 * len(losses)) // 4] if losses else final
    tail = (quarter - final) / way if way > 1e-6 and math.isfinite(final) else 0.0
    return {"initial_loss": losses[0] if losses else final, "final_loss": final, "steps": float(len(losses)),
            "tail_gain": tail, "param_change": float(moved.norm() / (start.norm() + 1e-12)),
            "examples": float((len(losses) + 1) * len(x)), "note": note}


def _fresh(cfg: dict[str, Any]) -> Any:
    """The run as a trial builds it (its seed: the same initial weights every time)."""
    torch.manual_seed(cfg["seed"])
    return build_run(cfg, _EVAL_BATCH)


def _overfit_batch(cfg: dict[str, Any], rung: dict[str, Any]) -> dict[str, Any]:
    """The user's model, loss and optimizer on one fixed batch. When that stalls: the same model
    and loss with :data:`REFERENCE_OPTIMIZER` (a learning rate far off is no bug), then a tiny MLP
    with the user's loss and that optimizer (a model that cannot fit is no broken step)."""
    from autofix.rules.isolation import overfit_state

    run = _fresh(cfg)
    x, y = next(iter(run.train.epoch(0)))
    x, y = x[: rung["batch"]], y[: rung["batch"]]
    row = _fit_batch(run.model, run.loss_fn, cfg["optimizer"], x, y, rung["steps"])
    row.update(floor=batch_floor(x, y, run.loss_fn.name), batch=float(len(x)))
    if overfit_state(row) == "stalled" and row["param_change"] > 0:
        ref = _fresh(cfg)
        extra = {"reference": _fit_batch(ref.model, ref.loss_fn, REFERENCE_OPTIMIZER, x, y, rung["steps"])}
        if overfit_state({**row, **_prefixed("reference", extra["reference"])}, "reference_") == "stalled":
            with torch.no_grad():
                out = ref.model(x)
            row["examples"] += len(x)  # that forward pass, for the output width
            mlp = _TinyMLP(x[0].numel(), out.shape[1] if out.dim() > 1 else 1)
            extra["mlp"] = _fit_batch(mlp, ref.loss_fn, REFERENCE_OPTIMIZER, x, y, rung["steps"])
        for name, fit in extra.items():
            row.update(_prefixed(name, fit))
            row["examples"] += fit["examples"]
    if not row["note"]:
        row.pop("note")
    return row


def _prefixed(prefix: str, fit: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{k}": v for k, v in fit.items() if k != "note"}


def _pool(batches: Any, count: int, loss_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` examples of the (seeded) order of ``batches``: inputs and class ids."""
    xs, ys, have = [], [], 0
    for x, y in batches.epoch(0):
        target = class_targets(y, loss_name)
        if target is None:
            raise ValueError("regression targets: the class baselines do not apply")
        xs.append(x)
        ys.append(target)
        have += len(x)
        if have >= count:
            break
    return torch.cat(xs)[:count], torch.cat(ys)[:count]


def _baselines(xf: np.ndarray, yf: np.ndarray, xe: np.ndarray, ye: np.ndarray) -> dict[str, float]:
    """Held-out accuracy of scikit-learn's ridge classifier (linear) and 5-nearest neighbours,
    each on standardised flattened inputs."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    if len(np.unique(yf)) < 2:  # one class in the subsample: a constant predictor, no fit needed
        value = float(np.mean(ye == yf[0]))
        return {"linear_accuracy": value, "knn_accuracy": value}
    for name, model in (("linear", RidgeClassifier()), ("knn", KNeighborsClassifier(min(5, len(yf))))):
        pipe = make_pipeline(StandardScaler(), model).fit(xf, yf)
        out[f"{name}_accuracy"] = float(pipe.score(xe, ye))
    return out


def _chance(yf: np.ndarray, ye: np.ndarray) -> float:
    """The best constant predictor's held-out accuracy: the larger of the fit labels' majority
    class and the held-out labels' own majority share (the stricter bar)."""
    values, counts = np.unique(yf, return_counts=True)
    _, held = np.unique(ye, return_counts=True)
    return float(max(np.mean(ye == values[counts.argmax()]), held.max() / len(ye)))


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.reshape(len(x), -1).cpu().numpy().astype(np.float64)


def _simple_model(cfg: dict[str, Any], rung: dict[str, Any]) -> dict[str, Any]:
    """scikit-learn baselines on a subsample, scored on held-out validation examples."""
    run = build_run(cfg, _EVAL_BATCH)
    xf, yf = _pool(run.train, rung["fit"], run.loss_fn.name)
    xe, ye = _pool(run.val, rung["evaluate"], run.loss_fn.name)
    scores = _baselines(_flat(xf), yf.numpy(), _flat(xe), ye.numpy())
    return {**scores, "chance": _chance(yf.numpy(), ye.numpy()), "fitted": float(len(xf)),
            "evaluated": float(len(xe)), "examples": float(2 * (len(xf) + len(xe)))}


def _train_scored(cfg: dict[str, Any], x: torch.Tensor, y: torch.Tensor, xe: torch.Tensor, ye: torch.Tensor,
                  rung: dict[str, Any]) -> float:
    """A freshly built user model trained ``steps`` minibatches on (x, y); its held-out accuracy."""
    torch.manual_seed(cfg["seed"])
    run = build_run(cfg, _EVAL_BATCH)
    optimizer = build_optimizer(cfg["optimizer"], run.model.parameters())
    run.model.train()
    batch = rung["batch"]
    for step in range(rung["steps"]):
        start = (step * batch) % max(len(x), 1)
        xb, yb = x[start:start + batch], y[start:start + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = run.loss_fn(run.model(xb), yb)
        if not torch.isfinite(loss):
            break
        loss.backward()
        optimizer.step()
    run.model.eval()
    with torch.no_grad():
        return float((predict(run.model(xe)) == ye).float().mean())


def _shuffled_labels(cfg: dict[str, Any], rung: dict[str, Any]) -> dict[str, Any]:
    """The user's model and the baselines on the real and on shuffled labels, same budget."""
    run = build_run(cfg, _EVAL_BATCH)
    name = run.loss_fn.name
    count = max(rung["steps"] * rung["batch"], rung["fit"])
    x_all, y_raw = _pool_raw(run.train, count)
    y_ids = class_targets(y_raw, name)
    if y_ids is None:
        raise ValueError("regression targets: real vs shuffled class labels do not apply")
    xe, ye = _pool(run.val, rung["evaluate"], name)
    perm = torch.randperm(len(y_raw), generator=torch.Generator().manual_seed(cfg["seed"] + 1))
    row: dict[str, Any] = {"chance": _chance(y_ids.numpy(), ye.numpy()), "evaluated": float(len(xe))}
    fit = rung["fit"]
    for label, ys in (("real", y_raw), ("shuffled", y_raw[perm])):
        row[f"model_{label}_accuracy"] = _train_scored(cfg, x_all, ys, xe, ye, rung)
        ids = class_targets(ys, name)
        assert ids is not None  # the real labels are class ids (checked above), so is their shuffle
        scores = _baselines(_flat(x_all[:fit]), ids[:fit].numpy(), _flat(xe), ye.numpy())
        row[f"baseline_{label}_accuracy"] = max(scores.values())
    trained = min(rung["steps"] * rung["batch"], rung["steps"] * max(len(x_all), 1))
    row["examples"] = float(2 * (trained + len(xe)) + 2 * 2 * (min(fit, len(x_all)) + len(xe)))
    return row


def _pool_raw(batches: Any, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training examples with their targets as the loss takes them."""
    xs, ys, have = [], [], 0
    for x, y in batches.epoch(0):
        xs.append(x)
        ys.append(y)
        have += len(x)
        if have >= count:
            break
    return torch.cat(xs)[:count], torch.cat(ys)[:count]
