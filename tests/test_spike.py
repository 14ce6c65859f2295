"""Loss spikes judged step by step (autofix.symptoms.spike), answered by the in-trial policies
(autofix.rules.intrial) and rewound in place by the managed harness's spike guard
(autofix.harness.spikes)."""

from __future__ import annotations

import copy
import math
import random
import statistics
from typing import Any

import pydantic
import pytest
import torch
from hypothesis import given, settings, strategies as st

from autofix.harness.loop import run_training
from autofix.harness.spikes import SpikeGuard
from autofix.rules.intrial import TrialRules, _Window, in_trial_data
from autofix.rules.policy import Policy
from autofix.spec.training import SpikeGuardSpec
from autofix.symptoms.spike import SpikeParams, spike_evidence

from conftest import FIXTURES

RULE = SpikeParams()  # 128-step window, 64 warm-up steps, 6 robust sigmas, 2x the median


def _first_spike(losses: list[float], rule: SpikeParams = RULE) -> int | None:
    """The first step judged a spike, each against the finite losses before it."""
    for step, loss in enumerate(losses):
        window = [v for v in losses[max(0, step - rule.window_steps):step] if math.isfinite(v)]
        if spike_evidence(rule, window, loss, step) is not None:
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
    pytest.param(_with(CLEAN, 30, 50.0), SpikeParams(warmup_steps=0, window_steps=16), 30, id="warm-up-0"),
    pytest.param(_with(NOISY, 300, NOISY[300] * 1.9), RULE, None, id="noisy-1.9x"),
    pytest.param(_with(NOISY, 300, NOISY[300] * 8), RULE, 300, id="noisy-8x"),
    pytest.param(_with(CLEAN, 300, 5.0), SpikeParams(min_ratio=10), None, id="min_ratio-10"),
    pytest.param(_with(CLEAN, 300, 5.0), SpikeParams(z=1e6), None, id="z-1e6"),
]


@pytest.mark.parametrize("losses, rule, expected", SPIKE_ROWS)
def test_spike_rule(losses, rule, expected):
    assert _first_spike(losses, rule) == expected


@pytest.mark.parametrize("field, value", [("window_steps", 4), ("warmup_steps", -1), ("z", 0), ("min_ratio", 0.5),
                                          ("z", math.inf), ("horizon", 3)])
def test_bad_thresholds_are_refused(field, value):
    with pytest.raises(pydantic.ValidationError):
        SpikeParams(**{field: value})


def _policy(*then: dict[str, Any], for_steps: int = 0, name: str = "spike") -> Policy:
    return Policy.model_validate({"name": name, "when": {"symptom": "loss_spike"}, "for_steps": for_steps,
                                  "then": [{"action": "rewind", **t} for t in then]})


QUICK = {"warmup_steps": 0, "window_steps": 8}


def _rules(*then: dict[str, Any], params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return in_trial_data([_policy(*(then or ({"times": 10},)), **kw)], {"loss_spike": params or QUICK})


def _guard(rules: dict[str, Any] | None = None, clip: dict[str, Any] | None = None,
           **guard: Any) -> tuple[SpikeGuard, torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    config = {"spike_guard": {"snapshot_every_steps": 5, "ring": 2, **guard}, "grad_clip": clip}
    return SpikeGuard(config, model, optimizer, rules=rules or _rules()), model, optimizer


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(4, 3)).pow(2).mean().backward()
    optimizer.step()


def _steps(guard: SpikeGuard, model: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int,
           loss: float = 1.0) -> None:
    for _ in range(n):
        assert guard.spiked(loss) is None
        _train_step(model, optimizer)
        guard.stepped(loss, 2.0)


def test_a_spike_restores_the_newest_snapshot_and_skips_what_came_after():
    guard, model, optimizer = _guard()
    _steps(guard, model, optimizer, 12)  # snapshots at steps 0, 5, 10; the ring keeps 5 and 10
    at_10 = {k: v.clone() for k, v in guard.ring[-1][1].items()}
    assert [s for s, *_ in guard.ring] == [5, 10] and guard.step == 12
    rewind = guard.spiked(9.0)
    assert (rewind.from_step, rewind.to_step, rewind.skipped) == (12, 10, 2)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in at_10.items())
    assert optimizer.state_dict()["state"][0]["step"] == 10  # Adam's own count went back too
    assert guard.step == 10 and len(guard.rules.losses.values) == 10  # abandoned
    assert not guard.rules.norms.values  # norms are kept only when judged (loss_spike.grad_norm)
    assert guard.metrics() == {"rewinds": 1.0, "rewound_steps": 2.0, "skipped_batches": 1.0,
                               "last_rewind_from": 12.0, "last_rewind_to": 10.0, "last_rewind_policy": 0.0,
                               "last_rewind_candidate": 0.0, "last_rewind_lr": 0.1, "last_rewind_restored": 1.0}


@pytest.mark.parametrize("reference, restored", [
    pytest.param(1.0, False, id="fine-on-the-last-good-batch-the-batch-alone-is-skipped"),
    pytest.param(9.0, True, id="spiked-there-too-the-weights-go-back"),
    pytest.param(math.nan, True, id="nan-there-the-weights-go-back"),
])
def test_the_batch_or_the_weights(reference, restored):
    """A bad batch spikes on sound weights: nothing is undone. Weights a step too large threw off
    spike on the batch they last trained on well too: they go back to the snapshot."""
    guard, model, optimizer = _guard(_rules({"times": 1}))
    seen: list[Any] = []
    guard.reference = lambda batch: seen.append(batch) or reference
    for step in range(12):
        assert guard.spiked(1.0) is None
        _train_step(model, optimizer)
        guard.stepped(1.0, 2.0, ("x", step))
    now = {k: v.clone() for k, v in model.state_dict().items()}
    rewind = guard.spiked(9.0)
    assert seen == [("x", 10)] and rewind.restored is restored  # the batch before the last: not just fitted
    assert (rewind.to_step, guard.step) == ((10, 10) if restored else (12, 12))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in now.items()) is not restored
    assert guard.metrics()["last_rewind_restored"] == float(restored)
    assert guard.spiked(9.0) is rewind and guard.rules.fires["spike"] == 1  # a burst: skipped, no new fire


@pytest.mark.parametrize("cut", [{"lr_factor": 0.5}, {"clip_factor": 0.3}], ids=["lr_factor", "clip_factor"])
def test_a_rewind_that_makes_the_steps_smaller_restores_whatever_the_probe_says(cut):
    """A policy that cuts the rate or the clipping bound has judged the steps too large: the
    weights they made go back to the snapshot even when the probe batch finds them fine."""
    guard, model, optimizer = _guard(_rules({"times": 1, **cut}), clip={"kind": "norm", "max": 1.0})
    guard.reference = lambda batch: 1.0  # the probe: the weights look fine
    for step in range(12):
        assert guard.spiked(1.0) is None
        _train_step(model, optimizer)
        guard.stepped(1.0, 2.0, ("x", step))
    rewind = guard.spiked(9.0)
    assert rewind.restored and (rewind.to_step, guard.step) == (10, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * cut.get("lr_factor", 1.0))
    assert rewind.clip == pytest.approx(cut.get("clip_factor", 1.0))


def test_no_snapshot_is_taken_until_the_run_has_been_quiet_a_snapshot_interval_after_a_rewind():
    """The ring keeps what came before a spike episode: a snapshot due within ``every`` steps of
    the last rewind's target is not taken (the weights between spikes are suspect)."""
    guard, model, optimizer = _guard()  # a snapshot every 5 steps
    guard.reference = lambda batch: 1.0  # the probe finds the weights fine: the batch alone is skipped
    for step in range(9):  # snapshots 0, 5
        _train_step(model, optimizer)
        guard.stepped(1.0, 2.0, ("x", step))
    assert guard.spiked(9.0).to_step == 9  # quiet from step 14 on
    _steps(guard, model, optimizer, 5)  # steps 9..13: the one due at 10 is not taken
    assert [s for s, *_ in guard.ring] == [0, 5]
    _steps(guard, model, optimizer, 2)  # the one due at 15 is
    assert [s for s, *_ in guard.ring] == [5, 15]


def test_the_snapshot_is_a_copy_later_steps_cannot_change():
    guard, model, optimizer = _guard()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, optimizer)
    assert all(torch.equal(guard.ring[-1][1][k], v) for k, v in before.items())


def test_a_snapshot_restored_stays_what_it_was_for_the_next_rewind():
    """The optimizer adopts the tensors ``load_state_dict`` is given (Adam's moments, its step):
    restored from the snapshot itself, the steps after a rewind would rewrite the snapshot, and a
    second rewind to it would bring back their moments instead of the snapshot's."""
    guard, model, optimizer = _guard(_rules({"times": 3}))
    _steps(guard, model, optimizer, 12)
    saved = copy.deepcopy(guard.ring[-1][2])
    assert guard.spiked(50.0).to_step == 10
    _steps(guard, model, optimizer, 2)  # steps 10, 11 on the restored state: no new snapshot
    assert guard.spiked(50.0).to_step == 10
    restored, expected = optimizer.state_dict()["state"][0], saved["state"][0]
    assert all(torch.equal(restored[k], expected[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_a_full_ring_writes_the_new_snapshot_into_the_leaving_ones_tensors():
    guard, model, optimizer = _guard()
    _steps(guard, model, optimizer, 5)  # snapshots 0 and 5: the ring is full
    leaving = [t.data_ptr() for t in guard.ring[0][1].values()]
    _steps(guard, model, optimizer, 5)  # snapshot 10 replaces 0
    assert [s for s, *_ in guard.ring] == [5, 10]
    assert [t.data_ptr() for t in guard.ring[-1][1].values()] == leaving
    assert all(torch.equal(guard.ring[-1][1][k], v) for k, v in model.state_dict().items())
    assert guard.ring[-1][2]["state"][0]["step"] == 10 and guard.ring[0][2]["state"][0]["step"] == 5
    # read from the parameters themselves (keep_vars), yet copied as plain data: no autograd link
    assert not any(t.requires_grad or t.grad_fn is not None for t in guard.ring[-1][1].values())


_LOSSES = st.lists(st.one_of(st.floats(0.5, 1.5), st.floats(1.5, 100.0),
                             st.sampled_from([math.nan, math.inf, -math.inf, 0.0])), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None)
@given(losses=_LOSSES, warmup=st.integers(0, 20))
def test_the_guards_cheap_test_answers_as_the_rules_do(losses, warmup):
    """The guard passes most steps on one cached bound instead of asking the rules: it must
    answer every step as the rules themselves do (same order, same step, same windows)."""
    rules = _rules({"times": 4}, params={"warmup_steps": warmup, "window_steps": 8})
    guard, *_ = _guard(rules)
    twin = TrialRules.from_data(rules, keep_steps=10)
    for loss in losses:
        order, rewind = twin.judge(loss), guard.spiked(loss)
        assert (rewind is None) == (order is None)
        if order is not None and order.fresh:
            twin.rewound(rewind.to_step)  # where the guard's snapshots took it
        assert guard.step == twin.step
        if order is not None:
            continue
        twin.stepped(loss, 1.0)
        guard.stepped(loss, 1.0)
    assert list(guard.rules.losses.values) == list(twin.losses.values)


class _MedianBarOnly(_Window):
    """The window as it was measured before its bar took the window's largest value too: the
    bar is ``min_ratio`` x the median alone."""

    __slots__ = ()

    def _refresh(self, step):
        recent = self.recent()
        self.bar = self.params.min_ratio * statistics.median(recent) if recent else -math.inf
        self.bar_until = step + 16


def _series(rng, steps):
    """A run's ordinary losses, its outliers small and large, and now and then a NaN or an infinity."""
    for _ in range(steps):
        u = rng.random()
        yield (rng.uniform(0.9, 1.1) if u < 0.6 else rng.uniform(1.5, 4.0) if u < 0.8
               else rng.uniform(4.0, 60.0) if u < 0.97 else rng.choice([math.nan, math.inf]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_windows_bar_spares_only_steps_the_rule_calls_no_spike(seed):
    """The bar also takes ``max_ratio`` x (and ``min_rise`` over) the largest value staying in the
    window: every step of random runs, rewound now and then, under random thresholds, must get the
    evidence it got when the bar was the median's alone. (The bar's two new terms bind on ~1 step
    in 2,000: hence many runs.)"""
    rng = random.Random(seed)
    for _ in range(600):
        params = SpikeParams(window_steps=rng.randint(8, 40), warmup_steps=rng.randint(0, 20),
                             max_ratio=rng.choice([rng.uniform(1.0, 1.3), rng.uniform(1.0, 3.0)]),
                             min_ratio=rng.uniform(1.0, 3.0), min_rise=rng.uniform(0.0, 3.0), z=rng.uniform(0.5, 8.0))
        ours, before = _Window("step_loss", params, 10), _MedianBarOnly("step_loss", params, 10)
        step = 0
        for loss in _series(rng, 200):
            assert ours.evidence(loss, step) == before.evidence(loss, step)
            if rng.random() < 0.01 and step > 3:  # a rewind drops the last steps
                step -= 3
                ours.drop_from(step)
                before.drop_from(step)
                continue
            ours.add(step, loss)
            before.add(step, loss)
            step += 1
        assert ours.values == before.values and ours.scale == before.scale


def test_once_the_policy_has_spent_its_fires_the_guard_stands_down():
    guard, model, optimizer = _guard(_rules({"times": 2}))
    for _ in range(3):
        _steps(guard, model, optimizer, 6)
        spiked = guard.spiked(50.0)
    assert spiked is None and guard.metrics()["rewinds"] == 2.0 and guard.rules.spent


def test_a_spike_that_goes_on_after_its_rewind_is_skipped_batch_by_batch_not_walked_back():
    """A burst of bad batches: the first rewinds, the next ones find the weights already restored
    and are only skipped (no older snapshot, no later one of the abandoned trajectory, no fire)."""
    guard, model, optimizer = _guard(_rules({"times": 3}))
    _steps(guard, model, optimizer, 12)
    first = guard.spiked(50.0)
    assert (first.from_step, first.to_step) == (12, 10) and [s for s, *_ in guard.ring] == [5, 10]
    at_10 = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(5):
        assert guard.spiked(50.0) is first
    assert all(torch.equal(model.state_dict()[k], v) for k, v in at_10.items())
    assert guard.rules.fires["spike"] == 1 and guard.metrics()["skipped_batches"] == 6.0
    _steps(guard, model, optimizer, 1)  # the burst is over: training goes on from step 10


def test_the_snapshots_of_an_abandoned_trajectory_are_dropped():
    guard, model, optimizer = _guard(_rules({"times": 3}))
    _steps(guard, model, optimizer, 10)  # snapshots 5 and 10
    assert guard.spiked(50.0).to_step == 5 and [s for s, *_ in guard.ring] == [5]


def test_a_level_that_lasts_past_max_skip_batches_is_trained_on_and_judged_afresh():
    guard, model, optimizer = _guard(_rules({"times": 3}), max_skip_batches=4)
    _steps(guard, model, optimizer, 12)
    assert guard.spiked(50.0) is not None  # the rewind
    assert all(guard.spiked(50.0) is not None for _ in range(4))  # 4 batches skipped in a row
    assert guard.spiked(50.0) is None  # the fifth is trained on: a new level, not a spike
    _steps(guard, model, optimizer, 20, loss=50.0)  # and judged against its own window from now on
    assert guard.metrics()["rewinds"] == 1.0


@pytest.mark.parametrize("then, rates", [
    pytest.param(({"times": 2},), [0.1, 0.1], id="rewind-keeps-the-rate"),
    pytest.param(({"times": 2, "lr_factor": 0.5},), [0.05, 0.025], id="lr_factor-0.5"),
    pytest.param(({"times": 1}, {"times": 1, "lr_factor": 0.5}), [0.1, 0.05], id="the-second-candidate-cuts"),
])
def test_each_rewind_sets_the_rate_its_candidate_says(then, rates):
    guard, model, optimizer = _guard(_rules(*then))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)  # recomputes from base_lrs
    guard.scheduler = scheduler
    seen = []
    for _ in range(2):
        _steps(guard, model, optimizer, 6)
        assert guard.spiked(50.0) is not None
        seen.append(optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx(rates)
    assert scheduler.base_lrs == pytest.approx([rates[-1]])  # the next scheduler step keeps the cut


@pytest.mark.parametrize("clip, expected", [
    pytest.param({"kind": "norm", "max": 1.0}, {"kind": "norm", "max": 0.3}, id="1.0-to-0.3-as-OPT-175B"),
    pytest.param({"kind": "value", "max": 2.0}, {"kind": "value", "max": 0.6}, id="value-bound"),
    pytest.param(None, None, id="a-run-that-does-not-clip-is-left-so"),
])
def test_clip_factor_tightens_gradient_clipping(clip, expected):
    guard, model, optimizer = _guard(_rules({"times": 1, "clip_factor": 0.3}), clip=clip)
    _steps(guard, model, optimizer, 6)
    rewind = guard.spiked(50.0)
    bound = None if expected is None else expected["max"]
    assert guard.config["grad_clip"] == (None if expected is None else pytest.approx(expected))
    assert rewind.clip == (None if bound is None else pytest.approx(bound))
    assert guard.metrics().get("last_rewind_clip") == (None if bound is None else pytest.approx(bound))
    assert guard.max_grad_norm == (None if clip is None or clip["kind"] != "norm" else pytest.approx(bound))


def test_for_steps_holds_a_spike_that_many_steps_before_rewinding():
    """llm-foundry's KillLossSpike acts after 5 outliers in a row: for_steps 2 fires at the third."""
    guard, model, optimizer = _guard(_rules({"times": 1}, for_steps=2))
    _steps(guard, model, optimizer, 12)
    for _ in range(2):
        assert guard.spiked(50.0) is None  # pending: trained on
        _train_step(model, optimizer)
        guard.stepped(50.0, 2.0)
    assert guard.spiked(50.0) is not None


def test_the_guard_keeps_a_bounded_history_however_long_the_run():
    guard, _, _ = _guard()  # window 8, a snapshot every 5 steps, ring 2
    for _ in range(1000):
        guard.stepped(1.0, 1.0)
    assert len(guard.rules.losses.values) == 8 + 5 * 2 and len(guard.ring) == 2
    assert [s for s, *_ in guard.ring] == [995, 1000]


def test_without_an_enabled_in_trial_policy_nothing_is_rewound():
    guard, model, optimizer = _guard(in_trial_data([], {"loss_spike": QUICK}))
    _steps(guard, model, optimizer, 12)
    assert guard.spiked(math.nan) is None and guard.metrics()["rewinds"] == 0.0


@pytest.mark.parametrize("key", ["z", "window_steps", "warmup_steps", "min_ratio", "min_rise", "max_rewinds",
                                 "lr_factor"])
def test_a_threshold_left_in_spike_guard_names_where_it_moved(key):
    with pytest.raises(pydantic.ValidationError, match=f"'{key}' moved out of training.spike_guard"):
        SpikeGuardSpec(enabled=True, **{key: 1})


def test_trial_rules_from_nothing_are_the_shipped_policies():
    rules = TrialRules.from_data(None)
    assert [p.name for p in rules.policies] == ["loss-spike-rewind"] and rules.params == SpikeParams()


# -- the managed harness ------------------------------------------------------------------------

@pytest.fixture
def burst_data(monkeypatch: pytest.MonkeyPatch) -> str:
    """tests/fixtures/spiky_data.py: blobs with one corrupted training example (inputs x 100, the
    wrong label) - left alone, val_loss 0.61 after one epoch, 0.036 with the guard."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    return "spiky_data"


BURST_RULES = _rules({"times": 10}, params={"warmup_steps": 10, "window_steps": 16})


def _run(data: str, guard: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cfg = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
           "data": {"factory": f"{data}:burst", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
           "batch_size": 25, "epochs": 3, "seed": 0, "probes": {"enabled": False}}
    if guard is not None:
        cfg["spike_guard"] = guard
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics), in_trial=BURST_RULES)
    return rows


def test_the_harness_rewinds_the_corrupted_batch_and_trains_on(burst_data):
    left = _run(burst_data, None)
    guarded = _run(burst_data, {"enabled": True, "snapshot_every_steps": 5})
    assert "rewinds" not in left[-1]
    assert guarded[-1]["rewinds"] >= 3 and guarded[-1]["skipped_batches"] >= 3  # once an epoch at least
    # the weights were sound on the batch before: the corrupted batch alone was skipped, nothing undone
    assert guarded[-1]["rewound_steps"] == 0 and guarded[-1]["last_rewind_restored"] == 0.0
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
    first = {"rewinds": 1.0, "rewound_steps": 7.0, "last_rewind_from": 57.0, "last_rewind_to": 50.0,
             "last_rewind_policy": 0.0, "last_rewind_candidate": 0.0}
    rows = [{}, {"rewinds": 0.0, "rewound_steps": 0.0}, first, first,
            {"rewinds": 4.0, "rewound_steps": 12.0, "last_rewind_from": 133.0, "last_rewind_to": 130.0,
             "last_rewind_policy": 0.0, "last_rewind_candidate": 1.0, "last_rewind_lr": 0.05}]
    for i, extra in enumerate(rows):
        eng.observe("t0", i, {"val_loss": 2.3 - 0.3 * i, "epoch": i, "step": 40.0 * i, **extra})
    said = [d for e, d in events if e == "rewind"]
    assert [(d["rewinds"], d["from_step"], d["to_step"], d["rewound_steps"]) for d in said] == [
        (1.0, 57.0, 50.0, 7.0), (4.0, 133.0, 130.0, 12.0)]
    assert [(d["policy"], d["action"], d["lr"]) for d in said] == [  # the shipped loss-spike-rewind's candidates
        ("loss-spike-rewind", "rewind()", None),
        ("loss-spike-rewind", "rewind(lr_factor=0.5, clip_factor=0.3)", 0.05)]


def test_rewinds_with_probes_sampling_every_step_keep_the_reports_whole(burst_data):
    cfg = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
           "data": {"factory": f"{burst_data}:burst", "args": {}}, "optimizer": {"name": "sgd", "lr": 0.05},
           "batch_size": 25, "epochs": 2, "seed": 0,
           "probes": {"enabled": True, "every_steps": 1, "max_overhead": None},  # every step sampled
           "spike_guard": {"enabled": True, "snapshot_every_steps": 5}}
    rows: list[dict[str, Any]] = []
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics), in_trial=BURST_RULES)
    assert rows[-1]["rewinds"] >= 2
    assert all(math.isfinite(r["val_loss"]) and "dead_frac_max" in r for r in rows[1:])


TINY = [0.001 * (1 + 0.05 * ((k * 7) % 5)) for k in range(300)]  # converged far below a first loss of ~1


@pytest.mark.parametrize("loss, scale, fires", [
    pytest.param(0.01, None, True, id="10x-a-converged-loss-without-a-scale"),
    pytest.param(0.01, 1.0, False, id="10x-but-a-rise-of-1pct-of-the-run's-scale"),
    pytest.param(0.2, 1.0, True, id="a-rise-of-20pct-of-the-scale"),
    pytest.param(0.05, 1.0, False, id="a-rise-of-5pct"),
])
def test_min_rise_weighs_a_spike_against_the_runs_own_scale(loss, scale, fires):
    found = spike_evidence(RULE, TINY[-128:], loss, 500, scale)
    assert (found is not None) is fires


def test_the_guard_leaves_a_converged_run_alone():
    """Measured before min_rise: a clean digits run trained far past convergence was rewound
    (its losses near 0.001 jump 10x on some batches, 1% of its first loss)."""
    guard, _, _ = _guard(_rules(params={"warmup_steps": 0, "window_steps": 16}))
    for step in range(400):
        loss = 1.0 * math.exp(-step / 20) + 0.001 * (1 + 9 * (step % 37 == 0))  # 10x blips once converged
        assert guard.spiked(loss) is None, step
        guard.stepped(loss)
    assert guard.metrics()["rewinds"] == 0.0


@pytest.mark.parametrize("guard, ships", [({"enabled": True}, True), ({"enabled": False}, False), (None, False)])
def test_a_trial_gets_the_runs_in_trial_policies_when_its_guard_is_on(guard, ships):
    from autofix.rules.engine import Engine, Plan
    from autofix.rules.policy import load_policies
    from autofix.symptoms import build_detectors
    from autofix.tune.controller import tune_config

    config = {"optimizer": {"lr": 0.1}, **({"spike_guard": guard} if guard is not None else {})}
    eng = Engine(Plan(config=config), build_detectors("val_loss", {"loss_spike": {"z": 4.0}}),
                 load_policies(["builtin"]))
    meta = tune_config(eng.suggest("t0"), [], eng.in_trial)["__autofix__"]
    assert ("in_trial" in meta) is ships
    if ships:  # the spec's parameters and the policy as data, rebuilt in the trial as they were
        rules = TrialRules.from_data(meta["in_trial"])
        assert rules.params.z == 4.0 and [p.name for p in rules.policies] == ["loss-spike-rewind"]
        assert rules.policies[0].then == list(eng.policies.get("loss-spike-rewind").then)


def test_the_driver_never_acts_on_an_in_trial_policy():
    """A report that carried step_loss (a custom trainable's) finds the spike, but the rewind
    policy is the trial's: the engine relaunches nothing for it."""
    from autofix.rules.engine import Engine, Plan
    from autofix.rules.policy import load_policies
    from autofix.symptoms import build_detectors

    events: list[tuple[str, dict]] = []
    eng = Engine(Plan(config={"lr": 0.1}), build_detectors("val_loss", {"loss_spike": QUICK}),
                 load_policies(["builtin"]), journal=lambda event, **data: events.append((event, data)))
    eng.suggest("t0")
    for i in range(30):
        verdict = eng.observe("t0", i, {"val_loss": 1.0 - 0.01 * i, "step": float(i), "planned_steps": 100.0,
                                        "step_loss": 50.0 if i == 20 else 1.0})
        assert not verdict.stop, i
    assert [d["iteration"] for e, d in events if e == "finding" and d["symptom"] == "loss_spike"] == [20]
    assert eng.attempts["a0"].decision is None


@pytest.mark.ray
def test_autofix_run_rewinds_in_the_trial_by_the_runs_policy_and_journals_it(ray_session, tmp_path):
    """The whole path: the spec's loss_spike parameters and the shipped policy reach the Tune
    trial, its guard rewinds the corrupted batch, and the journal names the policy and action."""
    import autofix
    from autofix.reports.journal import read_journal

    spec = {"name": "spiky", "python_path": [str(FIXTURES)], "metric": "val_loss",
            "training": {"model": {"factory": "autofix.harness.models:mlp",
                                   "args": {"in_features": 4, "num_classes": 3}},
                         "data": {"factory": "spiky_data:burst"}, "optimizer": {"name": "sgd", "lr": 0.05},
                         "batch_size": 25, "epochs": 3, "seed": 0, "probes": {"enabled": False},
                         "spike_guard": {"enabled": True, "snapshot_every_steps": 5}},
            "symptoms": {"loss_spike": {"warmup_steps": 10, "window_steps": 16}},
            "budget": {"max_attempts": 2, "max_concurrent": 1}}
    report = autofix.run(spec, tmp_path / "out")
    assert report.status == "healthy" and [a.id for a in report.attempts] == ["a0"]
    rewinds = [r for r in read_journal(tmp_path / "out" / "journal.jsonl") if r["event"] == "rewind"]
    assert rewinds and {(r["policy"], r["action"]) for r in rewinds} == {("loss-spike-rewind", "rewind()")}
    assert all(r["from_step"] == r["to_step"] and r["restored"] == 0.0 for r in rewinds)  # a bad example: skipped
    assert min(r["from_step"] for r in rewinds) < 40  # in epoch 1: the spec's warm-up (10), not the default 64


def test_a_custom_trainable_gets_no_guard_unless_the_spec_turns_it_on():
    import autofix

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rules = _rules()
    assert autofix.spike_guard({"lr": 0.1}, model, optimizer) is None  # outside autofix
    assert autofix.spike_guard({"__autofix__": {"in_trial": rules}}, model, optimizer) is None  # managed-only rules
    on = {**rules, "guard": {"enabled": True, "snapshot_every_steps": 5}}
    guard = autofix.spike_guard({"__autofix__": {"in_trial": on}}, model, optimizer)
    assert guard is not None and guard.every == 5 and guard.max_grad_norm is None
    off = {**rules, "guard": {"enabled": False}}
    assert autofix.spike_guard({"__autofix__": {"in_trial": off}}, model, optimizer) is None


@pytest.mark.ray
def test_a_custom_trainable_rewinds_through_autofix_spike_guard(ray_session, tmp_path):
    """The spec's top-level spike_guard reaches the user's loop: the corrupted example is skipped
    by the guard it builds with autofix.spike_guard, and the journal says which policy did it."""
    import autofix
    from autofix.reports.journal import read_journal

    spec = {"name": "custom-spiky", "python_path": [str(FIXTURES)], "trainable": "guarded_trainable:train_fn",
            "config": {"lr": 0.05, "epochs": 3}, "knobs": {"optimizer.lr": "lr"}, "metric": "val_loss",
            "spike_guard": {"enabled": True, "snapshot_every_steps": 5},
            "symptoms": {"loss_spike": {"warmup_steps": 10, "window_steps": 16}},
            "budget": {"max_attempts": 2, "max_concurrent": 1}}
    report = autofix.run(spec, tmp_path / "out")
    assert report.status == "healthy" and [a.id for a in report.attempts] == ["a0"]
    rewinds = [r for r in read_journal(tmp_path / "out" / "journal.jsonl") if r["event"] == "rewind"]
    assert rewinds and {r["policy"] for r in rewinds} == {"loss-spike-rewind"}
    assert report.attempts[0].last_metrics["skipped_batches"] >= 3  # once an epoch


def test_spike_guard_at_the_top_of_a_managed_spec_is_refused(tmp_path):
    from autofix.errors import InputError
    from autofix.spec.schema import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text("training: {model: {factory: 'autofix.harness.models:small_cnn'}, data: {factory: digits},\n"
                    "           optimizer: {name: adam, lr: 0.001}}\nspike_guard: {enabled: true}\n")
    with pytest.raises(InputError, match=r"a managed run sets training\.spike_guard"):
        load_spec(path)
