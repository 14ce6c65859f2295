"""Every remediation knob of the managed harness does what it says, measured on real objects.

Unit-level facts (loss weights, sampler frequencies, normalisation statistics, augmentation,
init, surgery, schedules, warm start) and short end-to-end healing runs on the broken models
of ``examples/symptoms/models.py``. No Ray: ``run_training`` is called with a list-appending
report.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from autofix.actions import ACTIONS
from autofix.harness import normalize_config, run_training
from autofix.harness.assemble import build_run
from autofix.harness.builders import build_model
from autofix.harness.checkpoint import STATE_FILE, prepare
from autofix.harness.loop import _Trainer
from autofix.harness.transforms import Augment
from autofix.spec.training import TrainingSpec

SYMPTOMS = Path(__file__).resolve().parent.parent / "examples" / "symptoms"
if str(SYMPTOMS) not in sys.path:
    sys.path.insert(0, str(SYMPTOMS))  # factories named "models:<fn>", as the examples do

MLP = "autofix.harness.models:mlp"
CNN = "autofix.harness.models:small_cnn"
SGD_1E3 = {"name": "sgd", "lr": 1e-3, "kwargs": {"momentum": 0.9}}
IMBALANCED = {"factory": "classification",
              "args": {"n_samples": 2000, "n_features": 20, "n_informative": 3,
                       "weights": [0.95, 0.05], "class_sep": 0.5, "flip_y": 0}}


def config(**overrides: Any) -> dict[str, Any]:
    """small_cnn on digits images, Adam 1e-3: the harness's reference run."""
    cfg: dict[str, Any] = {
        "model": {"factory": CNN, "args": {"num_classes": 10}},
        "data": {"factory": "digits", "args": {}},
        "optimizer": {"name": "adam", "lr": 1e-3}, "batch_size": 64, "epochs": 2, "seed": 0,
    }
    cfg.update(overrides)
    return cfg


def digits_mlp(factory: str, **overrides: Any) -> dict[str, Any]:
    """A 64-input MLP factory on flattened digits, 8 epochs."""
    base = {"model": {"factory": factory, "args": {"in_features": 64, "num_classes": 10}},
            "data": {"factory": "digits", "args": {"flatten": True}}, "epochs": 8}
    return config(**{**base, **overrides})


def imbalanced(**overrides: Any) -> dict[str, Any]:
    """examples/symptoms/class_collapse.yaml: a 95/5 binary set, one hidden layer, plain SGD."""
    base = {"model": {"factory": MLP, "args": {"in_features": 20, "num_classes": 2, "hidden": [32]}},
            "data": copy.deepcopy(IMBALANCED), "optimizer": {"name": "sgd", "lr": 0.01}, "epochs": 12}
    return config(**{**base, **overrides})


def run(cfg: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics), **kw)
    return rows


CORE = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "grad_norm_max")


def core(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loop's own metrics (probe keys may be carried over between sampled epochs)."""
    return [{k: row[k] for k in CORE} for row in rows]


def built(cfg: dict[str, Any]) -> Any:
    torch.manual_seed(0)
    return build_run(normalize_config(cfg), 256)


def epoch_data(batches: Any, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches.epoch(epoch), strict=False)
    return torch.cat(xs), torch.cat(ys)


def drop(rows: list[dict[str, Any]], key: str = "val_loss") -> float:
    """Relative fall of ``key`` from epoch 0 to the last report."""
    return 1 - rows[-1][key] / rows[0][key]


# --- loss.class_weights ------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["cross_entropy", "nll"])
def test_balanced_class_weights_are_sklearns(loss: str) -> None:
    run_ = built(imbalanced(loss={"name": loss, "class_weights": "balanced"}))
    y = run_.train_set.tensors[1].numpy()
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    assert run_.loss_fn.module.weight.tolist() == pytest.approx(expected.tolist())
    assert expected[1] > 5 * expected[0]  # the 5% class counts ~19x more per sample


def test_a_class_without_training_samples_gets_weight_one_not_an_error() -> None:
    """A language model's vocabulary holds characters the corpus never uses: reweighting by class
    (the label-imbalance remedy) crashed its trial."""
    from autofix.harness.weighting import balanced_class_weights

    labels = torch.tensor([0, 0, 0, 2])  # class 1 never occurs, class 3 neither
    expected = compute_class_weight("balanced", classes=np.array([0, 2]), y=labels.numpy())
    assert balanced_class_weights(labels, 4) == pytest.approx([expected[0], 1.0, expected[1], 1.0])


def test_bce_balanced_pos_weight_and_explicit_list() -> None:
    model = {"factory": MLP, "args": {"in_features": 20, "num_classes": 1, "hidden": [8]}}
    run_ = built(imbalanced(model=model, loss={"name": "bce_with_logits", "class_weights": "balanced"}))
    y = run_.train_set.tensors[1]
    assert run_.loss_fn.module.pos_weight.tolist() == pytest.approx([float((y == 0).sum() / (y == 1).sum())])
    given = built(imbalanced(loss={"name": "cross_entropy", "class_weights": [1.0, 3.5]}))
    assert given.loss_fn.module.weight.tolist() == [1.0, 3.5]
    assert built(imbalanced()).loss_fn.module.weight is None  # default: unweighted


@pytest.mark.parametrize(("loss", "match"), [
    ({"name": "cross_entropy", "class_weights": [1.0, 2.0, 3.0]}, "3 values but the model has 2"),
    ({"name": "mse", "class_weights": "balanced"}, "applies to"),
    ({"name": "cross_entropy", "class_weights": "balanced", "args": {"weight": [1, 1]}}, "both set"),
])
def test_invalid_class_weights_raise(loss: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run(imbalanced(loss=loss, epochs=1))


# --- data.sampler ------------------------------------------------------------------------------

def test_balanced_sampler_draws_classes_equally_and_deterministically() -> None:
    uniform, balanced = built(imbalanced()), built(imbalanced(data={**IMBALANCED, "sampler": "balanced"}))
    n = len(uniform.train_set)
    _, y_uniform = epoch_data(uniform.train, 1)
    assert float(y_uniform.float().mean()) == pytest.approx(0.05, abs=0.005)  # a permutation
    x1, y1 = epoch_data(balanced.train, 1)
    assert len(y1) == n and float(y1.float().mean()) == pytest.approx(0.5, abs=0.05)
    assert torch.equal(epoch_data(balanced.train, 1)[0], x1)  # same (seed, epoch), same draw
    assert not torch.equal(epoch_data(balanced.train, 2)[0], x1)
    assert float(epoch_data(balanced.val, 0)[1].float().mean()) == pytest.approx(0.05, abs=0.01)


# --- data.normalize ----------------------------------------------------------------------------

def test_normalize_uses_train_statistics_per_channel() -> None:
    raw = built(config(data={"factory": "digits", "args": {"scale": 15.9375}}))
    norm = built(config(data={"factory": "digits", "args": {"scale": 15.9375}, "normalize": True}))
    x_train, _ = epoch_data(norm.train, 1)
    assert float(x_train.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x_train.std()) == pytest.approx(1.0, abs=1e-3)
    raw_train = raw.train_set.tensors[0].double()
    mean, std = raw_train.mean(), raw_train.std(unbiased=False)
    x_val, _ = epoch_data(norm.val, 0)
    expected = (raw.val.dataset.tensors[0].double() - mean) / std
    assert torch.allclose(x_val.double(), expected, atol=1e-4)  # val uses the *train* stats
    assert abs(float(x_val.mean())) > 1e-3  # ... so it is not exactly centred itself


def test_normalize_tabular_per_feature_and_constant_features() -> None:
    norm = built(config(model={"factory": MLP, "args": {"in_features": 3, "num_classes": 3}},
                        data={"factory": "blobs", "args": {"n_features": 3, "scale": 100.0},
                              "normalize": True}))
    x, _ = epoch_data(norm.train, 1)
    assert x.mean(0).tolist() == pytest.approx([0, 0, 0], abs=1e-4)
    assert x.std(0, unbiased=False).tolist() == pytest.approx([1, 1, 1], abs=1e-4)
    # flattened digits: pixel 24 is always 0 in this training split but not in val; a constant
    # feature keeps scale 1 instead of being divided by the 1e-8 floor
    flat = built(config(data={"factory": "digits", "args": {"flatten": True}, "normalize": True}))
    assert float(epoch_data(flat.val, 0)[0].abs().max()) < 100


# --- data.augment ------------------------------------------------------------------------------

def test_augment_changes_train_batches_only_and_replays() -> None:
    plain = built(config())
    aug = built(config(data={"factory": "digits", "args": {}, "augment":
                             {"flip": True, "rotation": 15, "crop_padding": 2}}))
    assert isinstance(aug.train.transform, Augment) and aug.val.transform is None
    x_plain, y_plain = epoch_data(plain.train, 1)
    x_aug, y_aug = epoch_data(aug.train, 1)
    assert torch.equal(y_plain, y_aug)  # same order: augmentation does not touch the sampler
    changed = (x_plain - x_aug).flatten(1).abs().amax(1) > 1e-6
    assert float(changed.float().mean()) > 0.5
    assert torch.equal(epoch_data(aug.train, 1)[0], x_aug)  # seeded by (seed, epoch, batch)
    assert not torch.equal(epoch_data(aug.train, 2)[0], epoch_data(plain.train, 2)[0])
    assert torch.equal(epoch_data(aug.val, 0)[0], epoch_data(plain.val, 0)[0])


def test_augment_flip_only_mirrors_some_samples() -> None:
    plain = built(config())
    flip = built(config(data={"factory": "digits", "args": {}, "augment": {"flip": True}}))
    x, x_flip = epoch_data(plain.train, 1)[0], epoch_data(flip.train, 1)[0]
    same = (x == x_flip).flatten(1).all(1)
    mirrored = (x.flip(-1) == x_flip).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0.3 < float(mirrored.float().mean()) < 0.7


def test_augment_rejects_non_image_data() -> None:
    cfg = digits_mlp(MLP, data={"factory": "digits", "args": {"flatten": True}, "augment": {"flip": True}})
    with pytest.raises(ValueError, match=r"augment applies to image data \(N,C,H,W\); got shape \(\d+, 64\)"):
        run(cfg)


# --- init --------------------------------------------------------------------------------------

def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize(("init", "changed"), [
    ({"scheme": "kaiming"}, {"0", "2"}),  # the output layer (4) is the head: left alone
    ({"scheme": "kaiming", "head": True}, {"0", "2", "4"}),
    ({"scheme": "xavier", "pattern": r"^2$"}, {"2"}),
    ({"scheme": "orthogonal", "pattern": r"^[02]$"}, {"0", "2"}),
    ({"scheme": "default", "pattern": "4", "head": True}, {"4"}),
    ({"scheme": "lecun_normal", "pattern": "^[24]$"}, {"2"}),
])
def test_init_changes_exactly_the_matching_layers(init: dict[str, Any], changed: set[str]) -> None:
    spec = {"factory": "models:large_init_mlp", "args": {"depth": 2}}
    torch.manual_seed(0)
    before = build_model(spec).state_dict()
    torch.manual_seed(0)
    model = build_model(spec, init={"types": ["Linear"], **init})
    after = model.state_dict()
    assert {k.split(".")[0] for k in _changed(before, after)} == changed
    for name in changed:
        layer = model[int(name)]
        if init["scheme"] != "default":
            assert not layer.bias.any()  # zero bias
        if init["scheme"] == "orthogonal":
            w = layer.weight
            assert torch.allclose(w @ w.T, torch.eye(w.shape[0]), atol=1e-5)
    if init["scheme"] == "kaiming":  # N(0, 2/fan_in) instead of the model's N(0, 0.36)
        assert float(model[2].weight.detach().std()) == pytest.approx(math.sqrt(2 / 64), rel=0.1)


def test_init_by_type_and_no_match_error() -> None:
    torch.manual_seed(0)
    before = build_model({"factory": CNN}).state_dict()
    torch.manual_seed(0)
    after = build_model({"factory": CNN}, init={"scheme": "kaiming", "types": ["Conv2d"]}).state_dict()
    assert {k.split(".")[0] for k in _changed(before, after)} == {"0", "2"}  # the two convs
    with pytest.raises(ValueError, match=r"init matched no module.*0 \(Conv2d\).*6 \(Linear\)"):
        build_model({"factory": CNN}, init={"scheme": "kaiming", "pattern": "^head"})


# --- architecture ------------------------------------------------------------------------------

def kinds(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model]


def test_activation_swap_by_surgery_and_by_factory() -> None:
    swapped = build_model({"factory": "models:negative_bias_mlp"}, {"activation": "leaky_relu"})
    assert kinds(swapped) == ["Linear", "LeakyReLU"] * 3 + ["Linear"]
    factory = build_model({"factory": MLP, "args": {"in_features": 4, "num_classes": 2,
                                                    "activation": "tanh"}}, {"activation": "selu"})
    assert kinds(factory) == ["Linear", "SELU"] * 2 + ["Linear"]  # the knob wins over args
    cnn = build_model({"factory": CNN}, {"activation": "elu"})
    assert kinds(cnn).count("ELU") == 3 and "ReLU" not in kinds(cnn)


def test_batch_norm_after_hidden_linears_only() -> None:
    model = build_model({"factory": "models:negative_bias_mlp"}, {"batch_norm": True})
    assert kinds(model) == ["Linear", "BatchNorm1d", "ReLU"] * 3 + ["Linear"]
    assert [m.num_features for m in model if isinstance(m, nn.BatchNorm1d)] == [64, 64, 64]
    by_factory = build_model({"factory": MLP, "args": {"in_features": 64, "num_classes": 10,
                                                       "hidden": [64, 64, 64]}}, {"batch_norm": True})
    assert kinds(by_factory) == kinds(model)  # surgery builds what the factory would
    cnn = build_model({"factory": CNN}, {"batch_norm": True})
    assert [k for k in kinds(cnn) if k.startswith("Batch")] == ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d"]
    assert model(torch.zeros(4, 64)).shape == (4, 10) and cnn(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_dropout_before_hidden_linears() -> None:
    model = build_model({"factory": "models:wide_mlp", "args": {"width": 32}}, {"dropout": 0.25})
    assert kinds(model) == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert all(m.p == 0.25 for m in model if isinstance(m, nn.Dropout))
    by_factory = build_model({"factory": MLP, "args": {"in_features": 64, "num_classes": 10,
                                                       "hidden": [32, 32]}}, {"dropout": 0.25})
    assert kinds(by_factory) == kinds(model)
    # batch norm by the factory, dropout by surgery; both Linears read hidden (conv) features
    cnn = build_model({"factory": CNN}, {"dropout": 0.5, "batch_norm": True})
    assert kinds(cnn) == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                          "MaxPool2d", "Flatten", "Dropout", "Linear", "BatchNorm1d", "ReLU",
                          "Dropout", "Linear"]


@pytest.mark.parametrize("knob, found", [
    ({"activation": "selu"}, "found no hidden activation module to replace"),
    ({"batch_norm": True}, "found no hidden Linear/Conv layer followed by an activation module"),
])
def test_surgery_on_a_model_with_functional_activations_says_what_it_found(knob: dict[str, Any], found: str) -> None:
    spec = {"factory": "autofix.harness.models:simple_cnn"}  # nn.Module with F.relu, no Sequential
    with pytest.raises(ValueError, match=found) as err:
        build_model(spec, knob)
    assert "conv1 Conv2d, pool MaxPool2d | head: fc1 Linear" in str(err.value)  # the traced path


def test_dropout_reaches_a_linear_that_is_a_plain_attribute() -> None:
    model = build_model({"factory": "autofix.harness.models:simple_cnn"}, {"dropout": 0.3})
    assert kinds(model.fc1) == ["Dropout", "Linear"]  # wrapped in place: forward() still calls fc1
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


# --- schedulers --------------------------------------------------------------------------------

def blobs_mlp(**overrides: Any) -> dict[str, Any]:
    return config(model={"factory": MLP, "args": {"in_features": 2, "num_classes": 3, "hidden": [8]}},
                  data={"factory": "blobs", "args": {"n_samples": 200}}, **overrides)


@pytest.mark.parametrize(("scheduler", "lrs"), [
    ({"name": "linear_warmup", "kwargs": {"warmup_epochs": 3}},
     [0.25, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]),
    ({"name": "warmup_cosine", "kwargs": {"warmup_epochs": 2, "T_max": 4}},
     [1 / 3, 1 / 3, 2 / 3, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5,
      0.5 * (1 + math.cos(3 * math.pi / 4))]),
])
def test_warmup_schedules(scheduler: dict[str, Any], lrs: list[float], tmp_path: Path) -> None:
    # "lr" is the rate used during the epoch; epoch 0 shows the rate the first epoch will use
    cfg = blobs_mlp(epochs=6, optimizer={"name": "sgd", "lr": 0.1}, scheduler=scheduler)
    rows: list[dict[str, Any]] = []
    ckpts: dict[int, str] = {}

    def report(metrics: dict[str, Any], ckpt: str | None) -> None:
        rows.append(metrics)
        if ckpt:
            ckpts[metrics["epoch"]] = shutil.copytree(ckpt, tmp_path / str(metrics["epoch"]))

    run_training(cfg, report)
    assert [r["lr"] for r in rows] == pytest.approx([0.1 * f for f in lrs])
    assert core(run(cfg, restore_dir=str(ckpts[3]))) == core(rows[4:])  # resumes exactly


@pytest.mark.parametrize("scheduler", [
    {"name": "linear_warmup", "kwargs": {"warmup_epochs": 2, "T_max": 3}},
    {"name": "step", "kwargs": {"step_sizes": 2}},
    {"name": "linear_warmup", "kwargs": {"warmup_epochs": 0}},
])
def test_bad_scheduler_kwargs_raise(scheduler: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="scheduler"):
        run(blobs_mlp(epochs=1, scheduler=scheduler))


# --- every action, through the schema, reaches the built objects -------------------------------

def _trainer(cfg: dict[str, Any]) -> _Trainer:
    torch.manual_seed(0)
    trainer = _Trainer(normalize_config(cfg))
    prepare(trainer, None)
    return trainer


ACTION_EFFECTS: list[tuple[dict[str, Any], Any]] = [
    ({"action": "scale", "path": "optimizer.lr", "factor": 0.1}, lambda t: t.lr()),
    ({"action": "scale", "path": "batch_size", "factor": 2}, lambda t: len(next(t.train.epoch(1))[1])),
    ({"action": "add_scheduler", "kind": "reduce_on_plateau"}, lambda t: type(t.scheduler).__name__),
    ({"action": "warmup", "epochs": 2}, lambda t: type(t.scheduler).__name__),
    ({"action": "warmup", "then": "cosine"}, lambda t: type(t.scheduler).__name__),
    ({"action": "switch_optimizer", "to": "sgd", "momentum": 0.9},
     lambda t: (type(t.optimizer).__name__, t.optimizer.param_groups[0].get("momentum"))),
    ({"action": "weight_decay", "value": 1e-3}, lambda t: t.optimizer.param_groups[0]["weight_decay"]),
    ({"action": "clip_gradients", "max": 1e-3}, lambda t: _clipped_norm(t)),
    ({"action": "reweight_classes", "method": "loss"}, lambda t: t.loss_fn.module.weight is not None),
    ({"action": "reweight_classes", "method": "sampler"}, lambda t: t.train.weights is not None),
    ({"action": "normalize_inputs"}, lambda t: float(next(t.val.epoch(0))[0].mean())),
    ({"action": "augment"}, lambda t: float(next(t.train.epoch(1))[0].sum())),
    ({"action": "reinitialize", "scheme": "orthogonal"}, lambda t: float(t.model[0].weight.detach().sum())),
    ({"action": "swap_activation", "to": "selu"}, lambda t: kinds(t.model)),
    ({"action": "add_batch_norm"}, lambda t: kinds(t.model)),
    ({"action": "add_dropout", "p": 0.2}, lambda t: kinds(t.model)),
]


def _clipped_norm(trainer: _Trainer) -> float:
    """Gradient norm left by the last step of one epoch (after any clipping)."""
    trainer.train_epoch(1)
    return float(torch.linalg.vector_norm(torch.stack(
        [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None])))


def _action_id(action: dict[str, Any]) -> str:
    detail = [str(v) for k, v in action.items() if k != "action"]
    return "-".join([action["action"], *detail])


@pytest.mark.parametrize(("action", "effect"), ACTION_EFFECTS,
                         ids=[_action_id(a) for a, _ in ACTION_EFFECTS])
def test_every_action_changes_the_built_run(action: dict[str, Any], effect: Any) -> None:
    base = TrainingSpec.model_validate(config(epochs=1, probes={"enabled": False})).model_dump(mode="json")
    patched, changes = ACTIONS[action["action"]].model_validate(action).apply(base)
    patched = TrainingSpec.model_validate(patched).model_dump(mode="json")  # as the engine does
    assert changes
    before, after = effect(_trainer(base)), effect(_trainer(patched))
    assert before != after, f"{action} changed nothing the harness built"
    if action["action"] == "clip_gradients":
        assert after <= 1e-3 * 1.001 < before


# --- warm start --------------------------------------------------------------------------------

def _first_run(tmp_path: Path, cfg: dict[str, Any]) -> str:
    kept: dict[int, str] = {}

    def report(metrics: dict[str, Any], ckpt: str | None) -> None:
        if ckpt:
            kept[metrics["epoch"]] = shutil.copytree(ckpt, tmp_path / f"e{metrics['epoch']}")

    run_training(cfg, report)
    return str(kept[max(kept)])


def test_warm_start_survives_training_knob_changes(tmp_path: Path, capsys: Any) -> None:
    ckpt = _first_run(tmp_path, imbalanced(epochs=2))
    patched = imbalanced(epochs=4, optimizer={"name": "sgd", "lr": 0.02, "kwargs": {"weight_decay": 1e-4}},
                         loss={"name": "cross_entropy", "class_weights": "balanced"},
                         data={**IMBALANCED, "sampler": "balanced"}, grad_clip={"kind": "norm", "max": 1.0},
                         scheduler={"name": "linear_warmup", "kwargs": {"warmup_epochs": 1}},
                         warm_start=ckpt)
    rows = run(patched)
    assert [r["epoch"] for r in rows] == [3, 4] and rows[0]["lr"] == pytest.approx(0.01)
    assert "ignored" not in capsys.readouterr().err


NARROWER = {"factory": MLP, "args": {"in_features": 20, "num_classes": 2, "hidden": [16]}}


@pytest.mark.parametrize("change", [{"architecture": {"batch_norm": True}},
                                    {"init": {"scheme": "kaiming"}}, {"model": NARROWER}])
def test_warm_start_with_a_new_structure_starts_cold(
    change: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    ckpt = _first_run(tmp_path, imbalanced(epochs=2))
    capsys.readouterr()
    rows = run(imbalanced(epochs=2, warm_start=ckpt, **change))
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warm start" in err[0] and "training from scratch" in err[0]


def test_warm_start_from_a_checkpoint_without_structure_record(tmp_path: Path, capsys: Any) -> None:
    ckpt = _first_run(tmp_path, imbalanced(epochs=2))
    path = os.path.join(ckpt, STATE_FILE)
    state = torch.load(path, weights_only=True)
    del state["structure"]  # as written before the record existed
    torch.save(state, path)
    assert [r["epoch"] for r in run(imbalanced(epochs=3, warm_start=ckpt))] == [3]
    grown = imbalanced(epochs=3, warm_start=ckpt, architecture={"batch_norm": True})
    assert next(r["epoch"] for r in run(grown)) == 0  # shapes differ: cold
    assert "parameter names or shapes" in capsys.readouterr().err


def test_restore_is_exact_with_augment_sampler_and_normalize(tmp_path: Path) -> None:
    data = {"factory": "digits", "args": {"max_per_class": {"0": 150, "1": 30}, "classes": [0, 1]},
            "normalize": True, "sampler": "balanced", "augment": {"flip": True, "crop_padding": 1}}
    cfg = config(epochs=3, data=data, model={"factory": CNN, "args": {"num_classes": 2}},
                 architecture={"dropout": 0.2})
    kept: dict[int, str] = {}
    rows: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], ckpt: str | None) -> None:
        rows.append(metrics)
        if ckpt:
            kept[metrics["epoch"]] = shutil.copytree(ckpt, tmp_path / str(metrics["epoch"]))

    run_training(cfg, report)
    assert core(run(cfg, restore_dir=kept[1])) == core(rows[2:])


# --- end-to-end healing facts (numbers in the docstrings are measured, seed 0) -----------------

def test_selu_heals_the_deep_sigmoid_mlp() -> None:
    """Adam 1e-3, 8 epochs: val_loss 2.33 -> 2.30 (-1%) as is, 2.31 -> 0.65 (-72%) with SELU."""
    broken = run(digits_mlp("models:deep_sigmoid_mlp"))
    assert abs(drop(broken)) < 0.05
    healed = run(digits_mlp("models:deep_sigmoid_mlp", architecture={"activation": "selu"}))
    assert drop(healed) >= 0.30


def test_kaiming_heals_negative_bias_relus_but_leaky_relu_alone_does_not() -> None:
    """val_loss -0.05% as is; kaiming (zero bias) -92%, acc 0.94. LeakyReLU(0.01) keeps the
    -6 biases: every unit stays in its 0.01-slope part, the signal shrinks 1e6x over three
    layers and val_loss moves -0.08% in 8 epochs (still flat after 30)."""
    assert abs(drop(run(digits_mlp("models:negative_bias_mlp")))) < 0.05
    assert drop(run(digits_mlp("models:negative_bias_mlp", init={"scheme": "kaiming"}))) >= 0.30
    leaky = run(digits_mlp("models:negative_bias_mlp", architecture={"activation": "leaky_relu"}))
    assert abs(drop(leaky)) < 0.05


def test_reinit_tames_the_large_init_mlp() -> None:
    """SGD 1e-3 momentum 0.9: epoch-0 loss 3.1e3 as is; 'default' init brings it to 2.31 = ln 10
    but the 6-layer net then barely moves (-0.1% by epoch 8); 'kaiming' also learns (-60%)."""
    broken = run(digits_mlp("models:large_init_mlp", optimizer=SGD_1E3, epochs=1))
    assert broken[0]["train_loss"] > 100
    default = run(digits_mlp("models:large_init_mlp", optimizer=SGD_1E3, init={"scheme": "default"}))
    assert default[0]["train_loss"] < 5
    assert abs(drop(default)) < 0.05
    kaiming = run(digits_mlp("models:large_init_mlp", optimizer=SGD_1E3, init={"scheme": "kaiming"}))
    assert kaiming[0]["train_loss"] < 5 and drop(kaiming) >= 0.30


def test_normalize_fixes_raw_pixel_inputs() -> None:
    """digits at 0-255: input_std ~96 as is, ~1.0 normalised."""
    data = {"factory": "digits", "args": {"scale": 15.9375}}
    sgd = {"name": "sgd", "lr": 0.01, "kwargs": {"momentum": 0.9}}
    raw = run(config(data=data, optimizer=sgd, epochs=1))
    norm = run(config(data={**data, "normalize": True}, optimizer=sgd, epochs=1))
    assert raw[0]["input_std"] > 50
    assert all(r["input_std"] == pytest.approx(1.0, abs=0.1) for r in norm)
    assert all(abs(r["input_mean"]) < 0.1 for r in norm)


def test_reweighting_ends_class_collapse_on_the_95_5_set() -> None:
    """class_sep 0.5 (examples/symptoms/class_collapse.yaml), 12 epochs of SGD 0.01. As is: all
    majority (pred_frac_max 1.0, balanced acc 0.50, macro-F1 0.487). Balanced loss: balanced
    acc 0.53, minority recall 0.30, macro-F1 0.474; balanced sampler: 0.60, 0.60, 0.437. The
    classes overlap so much that even a balanced LogisticRegression scores macro-F1 0.455:
    reweighting trades majority precision for minority recall and macro-F1 does not rise."""
    broken = run(imbalanced())[-1]
    assert broken["val_macro_f1"] < 0.55 and broken["pred_frac_max"] == 1.0
    for knob in ({"loss": {"name": "cross_entropy", "class_weights": "balanced"}},
                 {"data": {**IMBALANCED, "sampler": "balanced"}}):
        healed = run(imbalanced(**knob))[-1]
        assert healed["pred_frac_max"] < 0.9 and healed["val_recall/1"] >= 0.25
        assert healed["val_balanced_accuracy"] > broken["val_balanced_accuracy"] + 0.02


def test_reweighting_raises_macro_f1_on_a_separable_95_5_set() -> None:
    """class_sep 1.5, same run: macro-F1 0.487 as is, 0.642 balanced loss, 0.589 balanced sampler."""
    data = {**IMBALANCED, "args": {**IMBALANCED["args"], "class_sep": 1.5}}
    broken = run(imbalanced(data=data))[-1]["val_macro_f1"]
    assert broken < 0.55
    by_loss = run(imbalanced(data=data, loss={"name": "cross_entropy", "class_weights": "balanced"}))
    by_sampler = run(imbalanced(data={**data, "sampler": "balanced"}))
    assert by_loss[-1]["val_macro_f1"] > broken + 0.05
    assert by_sampler[-1]["val_macro_f1"] > broken + 0.05
