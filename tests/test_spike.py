"""Loss spikes judged step by step (autofix.symptoms.spike) and rewound in place by the managed
harness's spike guard (autofix.harness.spikes)."""

from __future__ import annotations

import math
import random
import sys
import types
from typing import Any

import pydantic
import pytest
import torch
from torch.utils.data import TensorDataset

from autofix.harness.loop import run_training
from autofix.harness.spikes import SpikeGuard
from autofix.symptoms.spike import SpikeRule, spike_reason

RULE = SpikeRule()  # 128-step window, 64 warm-up steps, 6 robust sigmas, 2x the median


def _first_spike(losses: list[float], rule: SpikeRule = RULE) -> int | None:
    """The first step judged a spike, each against the finite losses before it."""
    for step, loss in enumerate(losses):
        window = [v for v in losses[max(0, step - rule.window_steps):step] if math.isfinite(v)]
        if spike_reason(rule, window, loss, step) is not None:
            return step
    return None


def _decay(steps: int, noise: float, seed: int = 0) -> list[float]:
    """A falling loss with multiplicative noise of +-``noise`` (small batches are noisy)."""
    rng = random.Random(seed)
    return [(0.2 + 2.1 * math.exp(-k / 150)) * (1 + noise * (2 * rng.random() - 1)) for k in range(steps)]


def _with(losses: list[float], at: int, value: float) -> list[float]:
    out = list(losses)
    out[at] = value
    return out


CLEAN = _decay(600, 0.05)
NOISY = _decay(600, 0.45, seed=1)  # +-45% per step: batches of 4
CONVERGED = [0.0100 + 0.0001 * ((k * 7) % 5) for k in range(600)]  # flat, almost no spread

SPIKE_ROWS = [
    pytest.param(CLEAN, RULE, None, id="clean-run"),
    pytest.param(NOISY, RULE, None, id="noisy-small-batches"),
    pytest.param(CONVERGED, RULE, None, id="converged-flat"),
    pytest.param(_with(CONVERGED, 300, 0.015), RULE, None, id="converged-1.5x-is-no-spike"),
    pytest.param(_with(CLEAN, 300, 5.0), RULE, 300, id="5x-spike-found-at-its-step"),
    pytest.param(_with(CLEAN, 300, math.nan), RULE, 300, id="nan-after-warm-up"),
    pytest.param(_with(CLEAN, 30, 50.0), RULE, None, id="inside-the-warm-up"),
    pytest.param(_with(CLEAN, 30, 50.0), SpikeRule(warmup_steps=0, window_steps=16), 30, id="warm-up-0"),
    pytest.param(_with(NOISY, 300, NOISY[300] * 1.9), RULE, None, id="noisy-1.9x"),
    pytest.param(_with(NOISY, 300, NOISY[300] * 8), RULE, 300, id="noisy-8x"),
    pytest.param(_with(CLEAN, 300, 5.0), SpikeRule(min_ratio=10), None, id="min_ratio-10"),
    pytest.param(_with(CLEAN, 300, 5.0), SpikeRule(z=1e6), None, id="z-1e6"),
]


@pytest.mark.parametrize("losses, rule, expected", SPIKE_ROWS)
def test_spike_rule(losses, rule, expected):
    assert _first_spike(losses, rule) == expected


@pytest.mark.parametrize("field, value", [("window_steps", 4), ("warmup_steps", -1), ("z", 0), ("min_ratio", 0.5),
                                          ("z", math.inf), ("horizon", 3)])
def test_bad_thresholds_are_refused(field, value):
    with pytest.raises(pydantic.ValidationError):
        SpikeRule(**{field: value})


def _guard(**cfg: Any) -> tuple[SpikeGuard, torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    return SpikeGuard({"warmup_steps": 0, "window_steps": 8, "snapshot_every_steps": 5, "ring": 2, **cfg},
                      model, optimizer), model, optimizer


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(4, 3)).pow(2).mean().backward()
    optimizer.step()


def test_a_spike_restores_the_newest_snapshot_and_skips_what_came_after():
    guard, model, optimizer = _guard()
    for _ in range(12):  # snapshots at steps 0, 5, 10; the ring keeps 5 and 10
        assert guard.spiked(1.0) is None
        _train_step(model, optimizer)
        guard.stepped(1.0)
    at_10 = {k: v.clone() for k, v in guard.ring[-1][1].items()}
    assert [s for s, *_ in guard.ring] == [5, 10] and guard.step == 12
    rewind = guard.spiked(9.0)
    assert (rewind.from_step, rewind.to_step, rewind.skipped) == (12, 10, 2)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in at_10.items())
    assert optimizer.state_dict()["state"][0]["step"] == 10  # Adam's own count went back too
    assert guard.step == 10 and len(guard.losses) == 10  # the abandoned steps left the window
    assert guard.metrics() == {"rewinds": 1.0, "rewound_steps": 2.0, "last_rewind_from": 12.0,
                               "last_rewind_to": 10.0}


def test_the_snapshot_is_a_copy_later_steps_cannot_change():
    guard, model, optimizer = _guard()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, optimizer)
    assert all(torch.equal(guard.ring[-1][1][k], v) for k, v in before.items())


def test_past_max_rewinds_the_guard_stands_down():
    guard, model, optimizer = _guard(max_rewinds=2)
    for _ in range(10):
        _train_step(model, optimizer)
        guard.stepped(1.0)
    assert guard.spiked(50.0) is not None and guard.spiked(50.0) is not None
    assert guard.spiked(50.0) is None and guard.metrics()["rewinds"] == 2.0


# -- the managed harness ------------------------------------------------------------------------

@pytest.fixture
def burst_data(monkeypatch: pytest.MonkeyPatch) -> str:
    """Blobs whose training set holds one corrupted example (inputs x 100, the wrong label): the
    batch that draws it spikes the loss once per epoch, somewhere in the epoch, and its step
    throws the weights off (left alone, val_loss 0.61 after one epoch, 0.036 with the guard)."""
    from sklearn.datasets import make_blobs

    module = types.ModuleType("autofix_test_burst")

    def burst(n: int = 1200) -> tuple[TensorDataset, TensorDataset]:
        x, y = make_blobs(n_samples=n, centers=3, n_features=4, random_state=0)
        x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
        train_x, train_y = x[: n - 200].clone(), y[: n - 200].clone()
        train_x[0] *= 100
        train_y[0] = (train_y[0] + 1) % 3
        return TensorDataset(train_x, train_y), TensorDataset(x[n - 200:], y[n - 200:])

    module.burst = burst  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def _run(data: str, guard: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cfg = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
           "data": {"factory": f"{data}:burst", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
           "batch_size": 25, "epochs": 3, "seed": 0, "probes": {"enabled": False}}
    if guard is not None:
        cfg["spike_guard"] = guard
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics))
    return rows


def test_the_harness_rewinds_the_corrupted_batch_and_trains_on(burst_data):
    left = _run(burst_data, None)
    guarded = _run(burst_data, {"enabled": True, "warmup_steps": 10, "window_steps": 16, "snapshot_every_steps": 5})
    assert "rewinds" not in left[-1]
    assert guarded[-1]["rewinds"] >= 3 and guarded[-1]["rewound_steps"] >= 3  # once an epoch at least
    assert guarded[-1]["last_rewind_from"] > guarded[-1]["last_rewind_to"]
    # the corrupted batch was never trained on: each epoch ends far better than left alone
    assert all(g["val_loss"] < 0.5 * a["val_loss"] for g, a in zip(guarded[1:], left[1:], strict=True))


def test_the_engine_journals_each_rewind_a_report_brings():
    from autofix.rules.engine import Engine, Plan
    from autofix.rules.policy import load_policies
    from autofix.symptoms import build_detectors

    events: list[tuple[str, dict]] = []
    eng = Engine(Plan(config={"lr": 0.1}), build_detectors("val_loss"), load_policies(["builtin"]),
                 journal=lambda event, **data: events.append((event, data)))
    eng.suggest("t0")
    rows = [{}, {"rewinds": 0.0, "rewound_steps": 0.0}, {"rewinds": 1.0, "rewound_steps": 7.0, "last_rewind_from": 57.0,
            "last_rewind_to": 50.0}, {"rewinds": 1.0, "rewound_steps": 7.0, "last_rewind_from": 57.0,
            "last_rewind_to": 50.0}, {"rewinds": 3.0, "rewound_steps": 12.0, "last_rewind_from": 133.0,
            "last_rewind_to": 130.0}]
    for i, extra in enumerate(rows):
        eng.observe("t0", i, {"val_loss": 2.3 - 0.3 * i, "epoch": i, "step": 40.0 * i, **extra})
    said = [d for e, d in events if e == "rewind"]
    assert [(d["rewinds"], d["from_step"], d["to_step"], d["rewound_steps"]) for d in said] == [
        (1.0, 57.0, 50.0, 7.0), (3.0, 133.0, 130.0, 12.0)]


def test_rewinds_with_probes_sampling_every_step_keep_the_reports_whole(burst_data):
    cfg = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
           "data": {"factory": f"{burst_data}:burst", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
           "batch_size": 25, "epochs": 2, "seed": 0,
           "probes": {"enabled": True, "every_steps": 1, "max_overhead": None},  # every step sampled
           "spike_guard": {"enabled": True, "warmup_steps": 10, "window_steps": 16, "snapshot_every_steps": 5}}
    rows: list[dict[str, Any]] = []
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics))
    assert rows[-1]["rewinds"] >= 2
    assert all(math.isfinite(r["val_loss"]) and "dead_frac_max" in r for r in rows[1:])


@pytest.mark.parametrize("factor, rates", [(None, [0.1, 0.1]), (0.5, [0.05, 0.025])])
def test_each_rewind_cuts_the_learning_rate_by_lr_factor(factor, rates):
    guard, model, optimizer = _guard(lr_factor=factor, max_rewinds=5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)  # recomputes from base_lrs
    guard.scheduler = scheduler
    seen = []
    for _ in range(2):
        for _ in range(6):
            _train_step(model, optimizer)
            guard.stepped(1.0)
        assert guard.spiked(50.0) is not None
        seen.append(optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx(rates)
    assert scheduler.base_lrs == pytest.approx([rates[-1]])  # the next scheduler step keeps the cut


def test_the_guard_keeps_a_bounded_history_however_long_the_run():
    guard, _, _ = _guard()  # window 8, a snapshot every 5 steps, ring 2
    for _ in range(1000):
        guard.stepped(1.0)
    assert len(guard.losses) == 8 + 5 * 2 and len(guard.ring) == 2
    assert [s for s, *_ in guard.ring] == [995, 1000]


TINY = [0.001 * (1 + 0.05 * ((k * 7) % 5)) for k in range(300)]  # converged far below a first loss of ~1


@pytest.mark.parametrize("loss, scale, fires", [
    pytest.param(0.01, None, True, id="10x-a-converged-loss-without-a-scale"),
    pytest.param(0.01, 1.0, False, id="10x-but-a-rise-of-1pct-of-the-run's-scale"),
    pytest.param(0.2, 1.0, True, id="a-rise-of-20pct-of-the-scale"),
    pytest.param(0.05, 1.0, False, id="a-rise-of-5pct"),
])
def test_min_rise_weighs_a_spike_against_the_runs_own_scale(loss, scale, fires):
    reason = spike_reason(RULE, TINY[-128:], loss, 500, scale)
    assert (reason is not None) is fires


def test_the_guard_leaves_a_converged_run_alone():
    """Measured before min_rise: a clean digits run trained far past convergence was rewound
    (its losses near 0.001 jump 10x on some batches, 1% of its first loss)."""
    guard, _, _ = _guard(warmup_steps=0, window_steps=16)
    for step in range(400):
        loss = 1.0 * math.exp(-step / 20) + 0.001 * (1 + 9 * (step % 37 == 0))  # 10x blips once converged
        assert guard.spiked(loss) is None, step
        guard.stepped(loss)
    assert guard.metrics()["rewinds"] == 0.0
