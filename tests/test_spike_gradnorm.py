"""The gradient-norm arm of ``loss_spike`` (OLMo-core's ``SkipStepOptimizer`` judges a step's loss
and its gradient norm against their trailing windows): judged after the backward pass, once the
step's loss passed, by the same in-trial policies (autofix.rules.intrial) and answered by the
spike guard (autofix.harness.spikes) and the managed loop (autofix.harness.loop)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import torch

import autofix.harness.loop as loop
from autofix.harness.loop import run_training
from autofix.rules.intrial import TrialRules
from autofix.rules.policy import Policy
from autofix.symptoms.spike import STEP_GRAD_NORM, STEP_LOSS, SpikeParams

from conftest import FIXTURES


def _policy(for_steps: int = 0) -> Policy:
    return Policy.model_validate({"name": "spike", "when": {"symptom": "loss_spike"}, "for_steps": for_steps,
                                  "then": [{"action": "rewind", "times": 10}]})


def _noisy(steps: int, level: float, noise: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + noise * (2 * rng.random() - 1)) for _ in range(steps)]


ON, OFF = SpikeParams(grad_norm=True), SpikeParams()  # off by default (autofix.symptoms.spike)
CALM = _noisy(400, 1.0, 0.05, 0)  # the loss of every row: nothing to see there
NORMS = _noisy(400, 3.0, 0.3, 1)  # gradient norms of a healthy run: +-30%
NOISY_NORMS = _noisy(400, 3.0, 0.45, 2)


def _with(values: list[float], at: int, value: float) -> list[float]:
    return [value if k == at else v for k, v in enumerate(values)]


def _first(losses: list[float], norms: list[float], params: SpikeParams, for_steps: int = 0
           ) -> tuple[int, str] | None:
    """The step and the series of the first rewind the rules order, fed as the guard feeds them."""
    rules = TrialRules([_policy(for_steps)], params)
    for step, (loss, norm) in enumerate(zip(losses, norms, strict=True)):
        order = rules.judge(loss) or rules.judge_norm(norm)
        if order is not None:
            return step, order.finding.metric
        rules.stepped(loss, norm)
    return None


ROWS = [
    pytest.param(CALM, NORMS, ON, None, id="healthy-norms"),
    pytest.param(CALM, NOISY_NORMS, ON, None, id="noisy-norms"),
    pytest.param(CALM, _with(NORMS, 300, 60.0), ON, (300, STEP_GRAD_NORM), id="20x-norm-calm-loss"),
    pytest.param(CALM, _with(NORMS, 300, math.inf), ON, (300, STEP_GRAD_NORM), id="inf-norm"),
    pytest.param(CALM, _with(NORMS, 300, 60.0), OFF, None, id="grad_norm-off-the-default"),
    pytest.param(CALM, _with(NORMS, 30, 60.0), ON, None, id="inside-the-warm-up"),
    pytest.param(CALM, _with(NORMS, 300, 1.9 * max(NORMS[172:300])), ON, None,
                 id="1.9x-the-windows-largest-norm"),
    pytest.param(_with(CALM, 300, 9.0), _with(NORMS, 300, 60.0), ON, (300, STEP_LOSS),
                 id="both-spike-the-loss-is-judged-first"),
]


@pytest.mark.parametrize("losses, norms, params, expected", ROWS)
def test_the_gradient_norm_arm(losses, norms, params, expected):
    assert _first(losses, norms, params) == expected


def test_a_loss_spike_pending_for_steps_is_not_resolved_by_a_calm_gradient_norm():
    """for_steps 2: the loss spikes three steps in a row; the calm norms judged after each loss
    must not reset the pending policy (it fires at the third, as without the norm arm)."""
    losses = CALM[:300] + [9.0, 9.0, 9.0] + CALM[303:]
    assert _first(losses, NORMS, ON, for_steps=2) == (302, STEP_LOSS)
    assert _first(losses, NORMS, OFF, for_steps=2) == (302, STEP_LOSS)


def test_a_rewind_drops_the_abandoned_steps_norms_too():
    rules = TrialRules([_policy()], SpikeParams(warmup_steps=0, window_steps=8, grad_norm=True), keep_steps=10)
    for step in range(12):
        rules.stepped(1.0, float(step))
    rules.rewound(10)
    assert [s for s, _ in rules.norms.values] == list(range(10)) == [s for s, _ in rules.losses.values]


def test_norms_are_kept_only_when_judged():
    rules = TrialRules([_policy()], SpikeParams(warmup_steps=0, window_steps=8), keep_steps=10)
    for step in range(12):
        rules.stepped(1.0, float(step))
    assert len(rules.losses.values) == 12 and not rules.norms.values


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.syspath_prepend(str(FIXTURES))
    return "spiky_data"


def _run(data: str, params: dict[str, Any], blow_up_at: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The managed loop on clean blobs, its gradient norm of step ``blow_up_at`` reported 1000x
    (a gradient the loss does not show): the last epoch's report and the optimizer steps taken."""
    calls = {"n": 0}
    real = loop.grad_norm

    def norm(model: torch.nn.Module) -> torch.Tensor:
        calls["n"] += 1
        value = real(model)
        return value * 1000 if calls["n"] == blow_up_at + 2 else value  # call 1: epoch 0; call 2: step 0

    monkeypatch.setattr(loop, "grad_norm", norm)
    rows: list[dict[str, Any]] = []
    steps = {"n": 0}
    cfg = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
           "data": {"factory": f"{data}:clean", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
           "batch_size": 25, "epochs": 2, "seed": 0, "probes": {"enabled": False},
           "spike_guard": {"enabled": True, "snapshot_every_steps": 5}}
    policy = _policy().model_dump(mode="json")
    real_step = torch.optim.SGD.step

    def counted(self, *args, **kwargs):
        steps["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", counted)
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics),
                 in_trial={"policies": [policy], "params": {"warmup_steps": 10, "window_steps": 16, **params}})
    return {**rows[-1], "steps_taken": steps["n"]}


@pytest.mark.parametrize("params, skipped", [({"grad_norm": True}, 1), ({}, 0)])
def test_the_loop_does_not_step_on_a_gradient_norm_spike(blobs, params, skipped, monkeypatch):
    last = _run(blobs, params, blow_up_at=30, monkeypatch=monkeypatch)
    assert last["skipped_batches"] == skipped and last["rewinds"] == skipped
    assert last["steps_taken"] == 2 * 40 - skipped  # 1000 examples / 25 a batch, two epochs
    if skipped:  # the loss was fine on the batch before: the batch alone is skipped, nothing undone
        assert last["last_rewind_from"] == 30 and last["last_rewind_restored"] == 0.0


def test_a_gradient_norm_spike_pending_for_steps_fires_like_a_loss_spike():
    """for_steps 2 on the norm arm: the calm loss judged first each step must not reset the policy
    the norm keeps pending; it fires at the third spiking step, as the loss arm does."""
    norms = NORMS[:300] + [60.0, 60.0, 60.0] + NORMS[303:]
    assert _first(CALM, norms, ON, for_steps=2) == (302, STEP_GRAD_NORM)
    assert _first(CALM, norms, OFF, for_steps=2) is None
