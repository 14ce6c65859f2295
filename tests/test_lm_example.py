"""examples/loss_spike_lm.yaml: a character-level transformer whose corpus holds a burst of
corrupted batches mid-run, healed in place by the spike guard; and what the harness needed for
it (a training set read in its own order, a class per position, token-id inputs). No Ray:
``run_training`` is called with a list-appending ``report``, as tests/test_spike.py does."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from autofix.harness.builders import build_loss
from autofix.harness.data import Batches
from autofix.harness.evaluate import evaluate, predict
from autofix.harness.loop import run_training
from autofix.judge.history import History
from autofix.judge.judging import blind
from autofix.probes import Probe
from autofix.spec.schema import load_spec
from autofix.symptoms import build_detectors

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "loss_spike_lm.yaml"


# -- the example ----------------------------------------------------------------------------------

def _example(burst: bool, guard: bool) -> list[dict[str, Any]]:
    """The example's own config (loaded through the spec, which puts examples/ on sys.path), scaled
    down to run in seconds: width 32, context 32, batches of 16, 3 epochs of 200 steps; the burst
    is the example's (6 batches of random targets) at step 300, half way. The guard keeps the
    example's settings (only ``enabled`` is given there)."""
    cfg = copy.deepcopy(load_spec(EXAMPLE).training.model_dump(mode="json"))
    cfg["model"]["args"].update(context=32, width=32)
    cfg["data"]["args"].update(context=32, train_windows=3200, val_windows=256, batch_size=16,
                               burst_epoch=2 if burst else None, burst_at=100)
    cfg.update(batch_size=16, epochs=3, scheduler={"name": "cosine", "kwargs": {"T_max": 3}},
               probes={"enabled": False})
    cfg["spike_guard"]["enabled"] = guard
    rows: list[dict[str, Any]] = []
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics))
    return rows


@pytest.fixture(scope="module")
def runs() -> dict[str, list[dict[str, Any]]]:
    return {"clean": _example(burst=False, guard=True), "left alone": _example(burst=True, guard=False),
            "guarded": _example(burst=True, guard=True)}


def test_the_example_spec_turns_the_guard_on_and_keeps_the_burst_together():
    spec = load_spec(EXAMPLE)
    assert spec.training.spike_guard.enabled and spec.training.data.shuffle is False
    assert spec.training.data.args["burst_epoch"] is not None


def test_the_clean_run_is_never_rewound(runs):
    assert all(r["rewinds"] == 0 for r in runs["clean"][1:])


def test_left_alone_the_burst_costs_the_run(runs):
    # the whole point of the example: without the guard the run ends clearly worse than clean
    assert runs["left alone"][-1]["val_loss"] > 1.1 * runs["clean"][-1]["val_loss"]


def test_the_guard_rewinds_the_burst_and_ends_where_the_clean_run_does(runs):
    guarded, left, clean = runs["guarded"][-1], runs["left alone"][-1], runs["clean"][-1]
    assert guarded["rewinds"] >= 1
    assert guarded["val_loss"] < 0.9 * left["val_loss"]
    # healed as issue "Long runs" defines it: within 2% of the clean run's final val_loss
    assert guarded["val_loss"] <= 1.02 * clean["val_loss"]
    assert all(math.isfinite(r["val_loss"]) and 0 < r["val_accuracy"] <= 1 for r in runs["guarded"])


# -- what the harness needed ------------------------------------------------------------------------

class _Epochs(TensorDataset):
    """Rows 0..n-1 in epoch e's own order: reversed on odd epochs."""

    def __init__(self, n: int) -> None:
        self.rows = torch.arange(n, dtype=torch.float32)
        super().__init__(self.rows[:, None], self.rows.long())
        self.told: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.told.append(epoch)
        rows = self.rows.flip(0) if epoch % 2 else self.rows
        self.tensors = (rows[:, None], rows.long())


@pytest.mark.parametrize("shuffle, epoch, expected", [
    (False, 1, list(range(9, -1, -1))),  # the dataset's epoch-1 order, as it set it
    (False, 2, list(range(10))),
    (True, 2, None),  # shuffled: the harness's own seeded permutation of the dataset's rows
])
def test_batches_tell_the_dataset_its_epoch_and_keep_its_order_unshuffled(shuffle, epoch, expected):
    data = _Epochs(10)
    seen = [int(v) for _, y in Batches(data, 3, shuffle=shuffle, seed=0).epoch(epoch) for v in y]
    assert data.told == [epoch]
    if expected is None:
        assert sorted(seen) == list(range(10)) and seen != list(range(10)) and seen != list(range(9, -1, -1))
    else:
        assert seen == expected


@pytest.mark.parametrize("out, expected", [
    (torch.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 1.0]]), [1, 0]),  # [N, C]
    (torch.tensor([[[0.1, 9.0], [2.0, 0.0], [0.3, 1.0]]]), [1, 0]),  # [N=1, C=3, T=2]: a class per position
    (torch.tensor([[-1.0], [2.0]]), [0, 1]),  # one logit: binary
    (torch.tensor([[[-1.0, 2.0, 0.5]]]), [0, 1, 1]),  # [N=1, 1, T=3]: a binary decision per position
])
def test_predictions_are_flat_in_the_order_of_flattened_targets(out, expected):
    assert predict(out).tolist() == expected


def test_accuracy_of_a_class_per_position_counts_every_position():
    """A "model" that predicts each input token: accuracy is the share of positions whose target
    equals the input, 5 of 8 here; the loss is torch's cross-entropy over (N, C, T)."""
    x = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    y = torch.tensor([[0, 1, 2, 0], [3, 2, 0, 1]])

    class Echo(nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return 10 * F.one_hot(ids, 4).float().transpose(1, 2)

    metrics = evaluate(Echo(), build_loss({"name": "cross_entropy", "args": {}}),
                       Batches(TensorDataset(x, y), 2, shuffle=False, seed=0), probes=True)
    assert metrics["val_accuracy"] == pytest.approx(5 / 8)
    assert metrics["val_loss"] == pytest.approx(float(F.cross_entropy(Echo()(x), y)))


@pytest.mark.parametrize("inputs, stats", [
    (torch.randint(0, 30, (8, 5)), False),  # int64 token ids index an embedding: no scale to judge
    (torch.randint(0, 30, (8, 5), dtype=torch.int32), False),
    (torch.randint(0, 30, (8, 5)).float(), True),  # the same numbers as features are judged
])
def test_input_statistics_only_for_numeric_inputs(inputs, stats):
    model = nn.Sequential(nn.Embedding(30, 4), nn.Flatten(), nn.Linear(20, 3))
    probe = Probe(model, every_steps=1)
    with probe.step(inputs):
        model(inputs.long()).sum().backward()
    assert ("input_mean" in probe.epoch_metrics()) is stats


def test_a_probed_run_of_token_ids_leaves_unnormalized_input_unjudged_not_blind():
    history = History()
    for i in range(3):  # the probes ran (probe_age) but, for token ids, reported no input_*
        history.record(i, {"val_loss": 1.0 - 0.1 * i, "epoch": float(i), "probe_age": 0.0})
    assert not [line for line in blind(history, build_detectors("val_loss")) if line.startswith("unnormalized")]
