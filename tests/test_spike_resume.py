"""The spike guard across a retried trial: its state rides in the harness's checkpoint
(autofix.harness.checkpoint), so a trial Ray Tune restores goes on judging as the run was
(the policies' spent fires, the windows, the totals its reports carry, a tightened clipping bound)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import torch

from autofix.harness.loop import run_training
from autofix.harness.spikes import SpikeGuard
from autofix.rules.intrial import TrialRules, in_trial_data
from autofix.rules.policy import Policy

from conftest import FIXTURES

QUICK = {"warmup_steps": 0, "window_steps": 8}
TOTALS = ("rewinds", "rewound_steps", "skipped_batches")


def _rules(*then: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    policy = Policy.model_validate({"name": "spike", "when": {"symptom": "loss_spike"},
                                    "then": [{"action": "rewind", **t} for t in then]})
    return in_trial_data([policy], {"loss_spike": params or QUICK})


def _guard(rules: dict[str, Any], clip: dict[str, Any] | None) -> tuple[SpikeGuard, torch.nn.Module, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    config = {"spike_guard": {"snapshot_every_steps": 5, "ring": 2}, "grad_clip": clip}
    return SpikeGuard(config, model, optimizer, rules=rules), model, optimizer


def _steps(guard: SpikeGuard, model: torch.nn.Module, optimizer: Any, n: int) -> None:
    for _ in range(n):
        assert guard.spiked(1.0) is None
        optimizer.zero_grad()
        model(torch.ones(4, 3)).pow(2).mean().backward()
        optimizer.step()
        guard.stepped(1.0, 2.0)


def test_the_guards_state_survives_a_checkpoint_round_trip(tmp_path):
    rules = _rules({"times": 1, "clip_factor": 0.5}, {"times": 1})
    guard, model, optimizer = _guard(rules, {"kind": "norm", "max": 1.0})
    _steps(guard, model, optimizer, 12)
    assert guard.spiked(50.0) is not None  # the first fire: rewound to 10, clipping 1.0 -> 0.5
    _steps(guard, model, optimizer, 3)
    torch.save({"guard": guard.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)["guard"]  # as the harness loads it

    again, _, _ = _guard(rules, {"kind": "norm", "max": 1.0})
    again.load_state_dict(state)
    assert again.step == guard.step == 13 and again.rules.fires == guard.rules.fires == {"spike": 1}
    assert list(again.rules.losses.values) == list(guard.rules.losses.values)
    assert again.rules.losses.scale == guard.rules.losses.scale
    assert {k: again.metrics()[k] for k in TOTALS} == {k: guard.metrics()[k] for k in TOTALS}
    assert again.config["grad_clip"] == {"kind": "norm", "max": 0.5}
    assert [s for s, *_ in again.ring] == [13]  # its first snapshot: the restored state, at its step
    rewind = again.spiked(50.0)  # the second candidate: the fires went on, not from the first
    assert rewind.order.candidate == 1 and again.metrics()["rewinds"] == 2.0


def test_a_policy_no_longer_in_the_run_is_dropped_from_the_restored_fires():
    rules = TrialRules.from_data(_rules({"times": 3}))
    rules.load_state_dict({"step": 7, "fires": {"spike": 2, "gone": 5}, "windows": {}})
    assert rules.step == 7 and rules.fires == {"spike": 2} and not rules.losses.values


@pytest.fixture
def burst_data(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.syspath_prepend(str(FIXTURES))
    return "spiky_data"


def _run(data: str, tmp_path: Any, restore_dir: str | None = None) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Three epochs of the corrupted-example blobs, guarded, a checkpoint after each (kept)."""
    cfg = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
           "data": {"factory": f"{data}:burst", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
           "batch_size": 25, "epochs": 3, "seed": 0, "probes": {"enabled": False}, "checkpoint_every": 1,
           "spike_guard": {"enabled": True}}
    rows: list[dict[str, Any]] = []
    kept: dict[int, str] = {}

    def report(metrics: dict[str, Any], directory: str | None) -> None:
        rows.append(metrics)
        if directory is not None:
            kept[int(metrics["epoch"])] = shutil.copytree(directory, os.path.join(tmp_path, f"e{metrics['epoch']:g}"))

    run_training(cfg, report, restore_dir=restore_dir,
                 in_trial=_rules({"times": 10}, params={"warmup_steps": 10, "window_steps": 16}))
    return rows, kept


def test_a_retried_trial_goes_on_with_the_guards_totals_and_the_same_run(burst_data, tmp_path):
    """Restored from the checkpoint of epoch 1, epochs 2 and 3 report what the run that never
    stopped reported: the guard's totals go on from the checkpoint's, not from zero."""
    whole, kept = _run(burst_data, tmp_path / "whole")
    assert [r["rewinds"] for r in whole[1:]] == [1.0, 2.0, 3.0]  # the corrupted example, once an epoch
    resumed, _ = _run(burst_data, tmp_path / "resumed", restore_dir=kept[1])
    assert [r["epoch"] for r in resumed] == [2.0, 3.0]
    for before, after in zip(whole[2:], resumed, strict=True):
        assert {k: after[k] for k in TOTALS} == {k: before[k] for k in TOTALS}
        assert after["val_loss"] == pytest.approx(before["val_loss"], rel=1e-6)


@pytest.mark.ray
def test_a_trial_tune_retries_after_a_crash_goes_on_with_its_guard(ray_session, tmp_path):
    """The whole path: the trial crashes in epoch 2 (after epoch 1's checkpoint), Ray Tune retries
    it from that checkpoint inside the same attempt, and the guard's count goes on: the journal's
    rewinds read 1, 2, 3 (a fresh guard would report 1 again in epoch 2, and no rewind be journaled)."""
    import autofix
    from autofix.reports.journal import read_journal

    marker = tmp_path / "crashed"
    spec = {"name": "spiky-crash", "python_path": [str(FIXTURES)], "metric": "val_loss",
            "training": {"model": {"factory": "spiky_data:crash_once_mlp",
                                   "args": {"marker": str(marker), "after_calls": 60}},
                         "data": {"factory": "spiky_data:burst"}, "optimizer": {"name": "sgd", "lr": 0.05},
                         "batch_size": 25, "epochs": 3, "seed": 0, "probes": {"enabled": False},
                         "spike_guard": {"enabled": True, "snapshot_every_steps": 5}},
            "symptoms": {"loss_spike": {"warmup_steps": 10, "window_steps": 16}},
            "ray": {"max_failures": 1}, "budget": {"max_attempts": 2, "max_concurrent": 1}, "ledger": False}
    report = autofix.run(spec, tmp_path / "out")
    assert marker.exists()  # it did crash
    assert report.status == "healthy" and [a.id for a in report.attempts] == ["a0"]
    rewinds = [r["rewinds"] for r in read_journal(tmp_path / "out" / "journal.jsonl") if r["event"] == "rewind"]
    assert rewinds == [1.0, 2.0, 3.0]
