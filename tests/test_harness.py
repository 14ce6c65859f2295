"""Tests for the managed-training harness, called directly (no Ray)."""

from __future__ import annotations

import math
import os
import shutil
import sys
import types
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from autofix.harness import DATASETS, normalize_config, resolve, run_training
from autofix.harness.models import mlp, simple_cnn, small_cnn

KEYS = {
    "epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1",
    "lr", "grad_norm", "grad_norm_max",
}


def config(**overrides: Any) -> dict[str, Any]:
    """small_cnn on digits with Adam 1e-3, the harness's reference run."""
    cfg: dict[str, Any] = {
        "model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
        "data": {"factory": "digits", "args": {}, "val_fraction": 0.2},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "batch_size": 64,
        "epochs": 3,
        "seed": 0,
    }
    cfg.update(overrides)
    return cfg


class Recorder:
    """A report callback that keeps metrics and copies checkpoints, like Ray does."""

    def __init__(self, keep_dir: str | None = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.ckpts: dict[int, str] = {}
        self.seen_dirs: list[str] = []
        self.keep_dir = keep_dir

    def __call__(self, metrics: dict[str, Any], ckpt: str | None) -> None:
        self.rows.append(metrics)
        if ckpt is None:
            return
        assert os.path.isfile(os.path.join(ckpt, "state.pt"))
        self.seen_dirs.append(ckpt)
        if self.keep_dir is not None:
            dest = os.path.join(self.keep_dir, f"epoch{metrics['epoch']}")
            shutil.copytree(ckpt, dest)
            self.ckpts[metrics["epoch"]] = dest

    def curve(self, key: str) -> list[float]:
        return [row[key] for row in self.rows]


def train(cfg: dict[str, Any], keep_dir: str | None = None, **kw: Any) -> Recorder:
    rec = Recorder(keep_dir)
    run_training(cfg, rec, **kw)
    return rec


def test_reports_keys_types_and_epoch0_first() -> None:
    rec = train(config(epochs=2))
    assert [r["epoch"] for r in rec.rows] == [0, 1, 2]
    for row in rec.rows:
        assert KEYS <= set(row)
        assert type(row["epoch"]) is int
        assert all(type(v) is float for k, v in row.items() if k != "epoch")
    first = rec.rows[0]
    assert first["train_loss"] == pytest.approx(math.log(10), abs=0.1)  # untrained: chance
    assert first["grad_norm"] == first["grad_norm_max"] > 0
    assert first["lr"] == 1e-3
    # epochs 1 and 2 were checkpointed into temp dirs that are gone once report returned
    assert len(rec.seen_dirs) == 2
    assert not any(os.path.exists(d) for d in rec.seen_dirs)


def test_adam_small_lr_learns_digits() -> None:
    rec = train(config(epochs=8))
    val = rec.curve("val_loss")
    assert val[-1] <= 0.7 * val[0]
    assert rec.rows[-1]["val_accuracy"] > 0.85
    assert rec.rows[-1]["val_macro_f1"] > 0.8


def test_adam_huge_lr_does_not_learn() -> None:
    rec = train(config(epochs=8, optimizer={"name": "Adam", "lr": 1.0}))
    for value in rec.curve("val_loss")[1:]:
        assert not math.isfinite(value) or value > math.log(10) - 0.1
    assert rec.rows[-1]["val_accuracy"] < 0.2


def test_restore_continues_from_next_epoch_exactly(tmp_path: Any) -> None:
    cfg = config(epochs=4)
    full = train(cfg, keep_dir=str(tmp_path))
    resumed = train(cfg, restore_dir=full.ckpts[2])
    assert [r["epoch"] for r in resumed.rows] == [3, 4]
    assert resumed.rows == full.rows[3:]


def test_restore_with_scheduler_keeps_schedule(tmp_path: Any) -> None:
    cfg = config(epochs=4, scheduler={"name": "step", "kwargs": {"step_size": 1, "gamma": 0.5}})
    full = train(cfg, keep_dir=str(tmp_path))
    assert full.curve("lr") == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4])
    resumed = train(cfg, restore_dir=full.ckpts[2])
    assert resumed.rows == full.rows[3:]


def test_warm_start_applies_new_lr(tmp_path: Any) -> None:
    first = train(config(epochs=2), keep_dir=str(tmp_path))
    warm = train(config(epochs=4, optimizer={"name": "adam", "lr": 2e-4},
                        warm_start=first.ckpts[2]))
    assert [r["epoch"] for r in warm.rows] == [3, 4]
    assert warm.curve("lr") == [2e-4, 2e-4]
    # weights came along: far better than an untrained model's ln(10)
    assert warm.rows[0]["val_loss"] < first.rows[0]["val_loss"] - 0.5


def test_warm_start_other_optimizer_and_new_scheduler(tmp_path: Any) -> None:
    first = train(config(epochs=2), keep_dir=str(tmp_path))
    cfg = config(epochs=4, optimizer={"name": "sgd", "lr": 0.05, "kwargs": {"momentum": 0.9}},
                 scheduler={"name": "exponential", "kwargs": {"gamma": 0.5}},
                 warm_start=first.ckpts[2])
    warm = train(cfg)
    assert warm.curve("lr") == pytest.approx([0.05, 0.025])
    assert warm.rows[0]["val_loss"] < first.rows[0]["val_loss"] - 0.5


def test_warm_start_same_scheduler_resumes_schedule_at_new_lr(tmp_path: Any) -> None:
    step = {"name": "step", "kwargs": {"step_size": 3, "gamma": 0.5}}
    first = train(config(epochs=2, scheduler=step), keep_dir=str(tmp_path))
    warm = train(config(epochs=4, scheduler=step, warm_start=first.ckpts[2],
                        optimizer={"name": "adam", "lr": 2e-4}))
    # the restored StepLR is at its 2nd step, so it halves after epoch 3, from the new lr
    assert warm.curve("lr") == pytest.approx([2e-4, 1e-4])


def test_checkpoint_every(tmp_path: Any) -> None:
    rec = train(config(epochs=4, checkpoint_every=2), keep_dir=str(tmp_path))
    assert sorted(rec.ckpts) == [2, 4]


@pytest.mark.parametrize(
    ("name", "args", "x_shape", "n_classes"),
    [
        ("digits", {}, (1, 8, 8), 10),
        ("digits", {"flatten": True, "classes": [3, 8]}, (64,), 2),
        ("blobs", {"n_features": 4, "centers": 5}, (4,), 5),
        ("circles", {}, (2,), 2),
        ("classification", {"n_features": 7, "n_informative": 3, "n_redundant": 1}, (7,), 2),
        ("fake", {"size": 50, "num_classes": 4}, (3, 32, 32), 4),
    ],
)
def test_builtin_datasets_shapes(
    name: str, args: dict[str, Any], x_shape: tuple[int, ...], n_classes: int
) -> None:
    train_ds, val_ds = DATASETS[name](seed=0, **args)
    for ds in (train_ds, val_ds):
        x, y = ds.tensors
        assert tuple(x.shape[1:]) == x_shape
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert int(y.max()) < n_classes
    total = len(train_ds) + len(val_ds)
    assert len(val_ds) == pytest.approx(0.2 * total, abs=1)


def test_dataset_options() -> None:
    train_ds, _val_ds = DATASETS["digits"](seed=0)
    assert 0.0 <= float(train_ds.tensors[0].min()) and float(train_ds.tensors[0].max()) <= 1.0
    tr, va = DATASETS["digits"](seed=0, classes=[0, 1], max_per_class={"0": 900, "1": 40})
    labels = torch.cat([tr.tensors[1], va.tensors[1]])
    assert int((labels == 1).sum()) == 40 and int((labels == 0).sum()) > 170
    assert int((va.tensors[1] == 1).sum()) == 8  # stratified split keeps the rare class in val
    big, _ = DATASETS["blobs"](seed=0, scale=100.0)
    small, _ = DATASETS["blobs"](seed=0)
    assert torch.allclose(big.tensors[0], small.tensors[0] * 100, rtol=1e-5)
    again, _ = DATASETS["blobs"](seed=0)
    assert torch.equal(again.tensors[0], small.tensors[0])


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("no_such_module_xyz:fn", "no_such_module_xyz"),
        ("autofix.harness.models:no_such_model", "no_such_model"),
        ("autofix.harness.models", "module:callable"),
    ],
)
def test_bad_reference_raises_value_error(ref: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        resolve(ref)
    with pytest.raises(ValueError, match=fragment):
        run_training(config(model={"factory": ref}), Recorder())


def test_unknown_builtin_data_raises() -> None:
    with pytest.raises(ValueError, match="mnist_offline"):
        run_training(config(data={"factory": "mnist_offline"}), Recorder())


def test_simple_cnn_on_fake_runs_one_epoch() -> None:
    cfg = config(model={"factory": "autofix.harness.models:simple_cnn"},
                 data={"factory": "fake", "args": {"size": 200}}, epochs=1)
    rec = train(cfg)
    assert [r["epoch"] for r in rec.rows] == [0, 1]
    assert all(math.isfinite(r["val_loss"]) for r in rec.rows)


def test_simple_cnn_matches_seed_article() -> None:
    model = simple_cnn()
    assert [name for name, _ in model.named_children()] == ["conv1", "pool", "fc1"]
    assert model.conv1.in_channels == 3 and model.conv1.out_channels == 16
    assert model.fc1.in_features == 16 * 16 * 16 and model.fc1.out_features == 10
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert small_cnn()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "elu", "selu"])
def test_mlp_activations(activation: str) -> None:
    model = mlp(5, 3, hidden=[8, 8, 8], activation=activation)
    assert model(torch.zeros(4, 5)).shape == (4, 3)
    assert len([m for m in model if isinstance(m, torch.nn.Linear)]) == 4


def test_mlp_bad_activation() -> None:
    with pytest.raises(ValueError, match="swish"):
        mlp(5, 3, activation="swish")


def test_normalize_config_fills_defaults() -> None:
    raw = {"model": {"factory": "m:f"}, "data": {"factory": "digits"},
           "optimizer": {"name": "adam", "lr": 0.1}}
    cfg = normalize_config(raw)
    assert cfg["loss"] == {"name": "cross_entropy", "args": {}}
    assert cfg["scheduler"] is None and cfg["grad_clip"] is None and cfg["warm_start"] is None
    assert cfg["checkpoint_every"] == 1 and cfg["seed"] == 0
    assert cfg["data"]["val_fraction"] == 0.2 and cfg["data"]["args"] == {}
    assert cfg["model"]["args"] == {} and cfg["optimizer"]["kwargs"] == {}
    assert "loss" not in raw  # the caller's dict is left alone


@pytest.fixture
def user_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of user factories, as a 'module:callable' config would name."""
    module = types.ModuleType("autofix_test_user_factories")

    def poisoned(n: int = 64) -> tuple[TensorDataset, TensorDataset]:
        x = torch.rand(n, 1, 8, 8)
        x[0, 0, 0, 0] = float("inf")  # one bad sample poisons its batch, not the run
        y = torch.arange(n) % 10
        return TensorDataset(x, y), TensorDataset(torch.rand(16, 1, 8, 8), torch.arange(16) % 10)

    def constant(n: int = 64, spread: float = 0.0) -> tuple[TensorDataset, TensorDataset]:
        x = torch.rand(1, 1, 8, 8).expand(n, 1, 8, 8).clone()  # a loader that returns one example
        x[-1] += spread
        y = torch.arange(n) % 10
        return TensorDataset(x, y), TensorDataset(x[:16].clone(), y[:16])

    module.poisoned = poisoned  # type: ignore[attr-defined]
    module.constant = constant  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def test_nonfinite_loss_is_reported_not_raised(user_module: str) -> None:
    cfg = config(data={"factory": f"{user_module}:poisoned", "args": {"n": 128}}, epochs=2)
    rec = train(cfg)
    assert [r["epoch"] for r in rec.rows] == [0, 1, 2]
    assert not math.isfinite(rec.rows[1]["train_loss"])
    # the poisoned batch was skipped, so the weights (and val loss) stay finite
    assert all(math.isfinite(r["val_loss"]) for r in rec.rows)


@pytest.mark.parametrize("args, spread", [
    pytest.param({"spread": 0.0}, 0.0, id="every-input-the-same"),
    pytest.param({"spread": 0.25}, 0.25, id="the-last-example-differs"),
    pytest.param({"n": 1}, None, id="one-example-says-nothing"),
])
@pytest.mark.filterwarnings("ignore:A single label:UserWarning", "ignore:y_pred contains classes:UserWarning")
def test_input_spread_at_epoch_0(user_module: str, args: dict[str, Any], spread: float | None) -> None:
    rec = train(config(data={"factory": f"{user_module}:constant", "args": args}, epochs=1, batch_size=16))
    assert rec.rows[0].get("input_spread") == (None if spread is None else pytest.approx(spread))
    assert "input_spread" not in rec.rows[1], "a property of the data set: reported once, before training"


def test_mse_and_bce_losses_on_class_labels() -> None:
    mse = train(config(
        model={"factory": "autofix.harness.models:mlp",
               "args": {"in_features": 2, "num_classes": 3}},
        data={"factory": "blobs"}, loss={"name": "mse"}, epochs=3,
        optimizer={"name": "adam", "lr": 1e-2}))
    assert mse.rows[-1]["val_accuracy"] > 0.8
    bce = train(config(
        model={"factory": "autofix.harness.models:mlp",
               "args": {"in_features": 2, "num_classes": 1, "hidden": [32, 32]}},
        data={"factory": "circles"}, loss={"name": "bce_with_logits"}, epochs=10,
        optimizer={"name": "adam", "lr": 1e-2}))
    assert bce.rows[-1]["val_accuracy"] > 0.8


def test_grad_clip_and_plateau_scheduler() -> None:
    cfg = config(epochs=2, grad_clip={"kind": "norm", "max": 0.01},
                 scheduler={"name": "reduce_on_plateau", "kwargs": {"patience": 0}})
    rec = train(cfg)
    clipped_loss = rec.rows[-1]["val_loss"]
    free = train(config(epochs=2))
    assert clipped_loss > free.rows[-1]["val_loss"]  # tiny clip slows learning
    rec = train(config(epochs=1, grad_clip={"kind": "value", "max": 0.001}))
    assert rec.rows[-1]["grad_norm"] > 0  # measured before clipping


# -- where a report stands, and what chance scores ---------------------------------------------

def tabular(**overrides: Any) -> dict[str, Any]:
    """A small MLP on 400 samples of the 2-class ``classification`` set (320 train, 80 val)."""
    cfg: dict[str, Any] = {
        "model": {"factory": "autofix.harness.models:mlp",
                  "args": {"in_features": 8, "num_classes": 2, "hidden": [8]}},
        "data": {"factory": "classification", "args": {"n_samples": 400, "n_features": 8}},
        "optimizer": {"name": "adam", "lr": 1e-2}, "batch_size": 64, "epochs": 2, "seed": 0,
        "probes": {"enabled": False},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def optimizer_steps() -> Any:
    """Counts every ``optimizer.step()`` taken while the test runs (torch's global hook)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    count = [0]
    handle = register_optimizer_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    yield lambda: count[0]
    handle.remove()


@pytest.mark.parametrize(("overrides", "steps_per_epoch"), [
    pytest.param({"batch_size": 32}, 10, id="320/32"),
    pytest.param({"batch_size": 64, "epochs": 3}, 5, id="320/64"),
    pytest.param({"batch_size": 100}, 4, id="partial-last-batch"),
    pytest.param({"batch_size": 400, "epochs": 1}, 1, id="one-batch"),
    pytest.param({"data": {"factory": "classification", "args": {"n_samples": 400, "n_features": 8},
                           "sampler": "balanced"}}, 5, id="balanced-sampler"),
])
def test_reports_stand_at_optimizer_steps(overrides: dict[str, Any], steps_per_epoch: int,
                                          optimizer_steps: Any) -> None:
    cfg = tabular(**overrides)
    seen: list[tuple[int, float, float, int]] = []
    run_training(cfg, lambda m, _: seen.append((m["epoch"], m["step"], m["planned_steps"], optimizer_steps())))
    assert [e for e, *_ in seen] == list(range(cfg["epochs"] + 1))
    for epoch, step, planned, taken in seen:
        assert step == epoch * steps_per_epoch == taken  # the steps actually taken by then
        assert planned == cfg["epochs"] * steps_per_epoch


@pytest.mark.parametrize("resume", ["warm_start", "restore_dir"])
def test_a_resumed_run_counts_its_parents_steps(resume: str, tmp_path: Any) -> None:
    first = train(tabular(epochs=2), keep_dir=str(tmp_path))
    cfg = tabular(epochs=4)
    rec = train({**cfg, "warm_start": first.ckpts[2]}) if resume == "warm_start" else \
        train(cfg, restore_dir=first.ckpts[2])
    assert [(r["epoch"], r["step"], r["planned_steps"]) for r in rec.rows] == [(3, 15.0, 20.0), (4, 20.0, 20.0)]


class Logits(torch.nn.Module):
    """A "model" whose input is its output: the validation inputs are the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("logits", "accuracy"), [
    pytest.param([[2.0, 0.0]] * 4, 0.75, id="finite-all-class-0"),
    pytest.param([[0.0, 2.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], 1.0, id="finite-right"),
    pytest.param([[NAN, NAN]] * 4, NAN, id="all-nan"),  # argmax of NaN is class 0: 0.75
    pytest.param([[2.0, 0.0], [NAN, 0.0], [2.0, 0.0], [2.0, 0.0]], NAN, id="one-nan-logit"),
    pytest.param([[2.0, 0.0], [2.0, 0.0], [INF, 0.0], [2.0, 0.0]], NAN, id="one-inf-logit"),
    pytest.param([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, -INF]], NAN, id="one-minus-inf-logit"),
])
def test_nonfinite_outputs_have_nan_accuracy(logits: list[list[float]], accuracy: float) -> None:
    from autofix.harness.builders import LossFn
    from autofix.harness.data import Batches
    from autofix.harness.evaluate import evaluate

    labels = torch.tensor([1, 0, 0, 0]) if accuracy != 1.0 else torch.tensor([1, 0, 0, 1])
    val = Batches(TensorDataset(torch.tensor(logits), labels), batch_size=2, shuffle=False, seed=0)
    metrics = evaluate(Logits(), LossFn("cross_entropy", {}), val, probes=False)
    if math.isnan(accuracy):
        assert math.isnan(metrics["val_accuracy"]) and math.isnan(metrics["val_macro_f1"])
    else:
        assert metrics["val_accuracy"] == accuracy and math.isfinite(metrics["val_macro_f1"])


def _constant_predictor_scores(prior: Any, true: Any, with_entropy: bool) -> dict[str, float]:
    """scikit-learn's scores of always predicting the prior's majority class, and scipy's entropy."""
    import warnings

    import numpy as np
    from scipy.stats import entropy
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    true = np.asarray(true)
    source = np.asarray(prior if prior is not None else true)
    classes, counts = np.unique(source, return_counts=True)
    constant = np.full_like(true, classes[counts.argmax()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        out = {"chance_accuracy": accuracy_score(true, constant),
               "chance_macro_f1": f1_score(true, constant, average="macro", zero_division=0),
               "chance_balanced_accuracy": balanced_accuracy_score(true, constant)}
    if with_entropy:
        out["label_entropy"] = float(entropy(counts))
    return out


@pytest.mark.parametrize(("prior", "true"), [
    pytest.param([0] * 6 + [1] * 2 + [2] * 2, [0, 0, 0, 1, 1, 2], id="same-majority"),
    pytest.param([1, 1, 1, 0], [0, 0, 0, 1, 2], id="train-majority-is-a-val-minority"),
    pytest.param(None, [2, 2, 2, 0, 1], id="no-prior-uses-val"),
    pytest.param([0] * 95 + [1] * 5, [0] * 19 + [1], id="95-5"),
    pytest.param([3, 3, 3, 0, 1], [0, 1, 1, 2], id="majority-absent-from-val"),
    pytest.param(torch.tensor([4, 4, 1, 2]), torch.tensor([1, 2, 4, 4, 4]), id="tensors"),
])
@pytest.mark.parametrize("with_entropy", [True, False])
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_chance_metrics_are_sklearns_scores_of_the_majority_class(prior: Any, true: Any, with_entropy: bool) -> None:
    from autofix.harness.evaluate import chance_metrics

    got = chance_metrics(prior, true, with_entropy)
    expected = _constant_predictor_scores(prior, true, with_entropy)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("overrides", "entropy"), [
    pytest.param({}, True, id="cross-entropy"),
    pytest.param({"loss": {"name": "nll"}}, True, id="nll"),
    pytest.param({"loss": {"name": "bce_with_logits"},
                  "model": {"factory": "autofix.harness.models:mlp",
                            "args": {"in_features": 8, "num_classes": 1, "hidden": [8]}}}, True, id="bce-one-logit"),
    pytest.param({"loss": {"name": "cross_entropy", "class_weights": "balanced"}}, False, id="class-weights"),
    pytest.param({"loss": {"name": "cross_entropy", "class_weights": [1.0, 3.0]}}, False, id="class-weight-list"),
    pytest.param({"data": {"factory": "classification", "args": {"n_samples": 400, "n_features": 8},
                           "sampler": "balanced"}}, False, id="balanced-sampler"),
    pytest.param({"loss": {"name": "mse"}}, False, id="mse"),
])
def test_label_entropy_only_for_an_unweighted_cross_entropy_on_natural_shares(
        overrides: dict[str, Any], entropy: bool) -> None:
    from scipy.stats import entropy as scipy_entropy

    rows = train(tabular(epochs=1, **overrides)).rows
    assert all({"chance_accuracy", "chance_macro_f1", "chance_balanced_accuracy"} <= set(r) for r in rows)
    if not entropy:
        assert not any("label_entropy" in r for r in rows)
        return
    labels = DATASETS["classification"](seed=0, n_samples=400, n_features=8)[0].tensors[1]
    shares = torch.bincount(labels).double()
    assert all(r["label_entropy"] == pytest.approx(scipy_entropy(shares.numpy()), rel=1e-9) for r in rows)


@pytest.mark.parametrize("args, shape", [({}, (1, 8, 8)), ({"channels": 3, "upscale": 4}, (3, 32, 32)),
                                         ({"flatten": True, "channels": 3}, (64,))])
def test_digits_as_rgb_images_for_image_models(args, shape):
    from autofix.harness.data import digits

    train, _ = digits(0, **args)
    x = train.tensors[0]
    assert tuple(x.shape[1:]) == shape
    if shape[0] == 3:  # grey repeated into each channel, each pixel a 4x4 block
        assert torch.equal(x[:, 0], x[:, 2]) and torch.equal(x[:, :, ::4, ::4], x[:, :, 3::4, 3::4])
