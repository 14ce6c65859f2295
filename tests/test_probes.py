"""Tests for autofix.probes with real tiny torch models, and its use by the managed harness."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, recall_score
from torch import nn
from torch.nn import functional as F

from autofix.harness import run_training
from autofix.harness.evaluate import initial_loss_metrics, prediction_metrics
from autofix.probes import Probe, label_metrics
from autofix.probes.budget import WARMUP, WINDOW, Budget

torch.set_num_threads(1)

PROBE_KEYS = {"grad_norm_first", "grad_norm_last", "grad_ratio", "grad_zero_frac",
              "dead_frac_max", "input_mean", "input_std", "input_abs_max", "label_frac_max",
              "label_classes", "pred_frac_max", "pred_classes", "val_recall_min",
              "val_balanced_accuracy", "probe_age"}
UPDATE_KEYS = {"update_ratio_max", "update_ratio_median", "update_ratio_global"}
SCALE_KEYS = {"update_expected", "update_resolution"}  # what one step should move, and what float32 can


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)  # every model and batch below is reproducible, whatever the test order


def mlp(act: Callable[[], nn.Module], depth: int = 3, width: int = 32, inp: int = 10,
        out: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inp if i == 0 else width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, out))


def train(model: nn.Module, steps: int = 1, scale: float = 1.0, every: int = 1,
          optimizer_step: bool = True, x: torch.Tensor | None = None) -> dict[str, float]:
    """A few SGD steps through the context-manager API; the epoch's probe metrics."""
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = Probe(model, opt, every_steps=every)
    for _ in range(steps):
        batch = x if x is not None else torch.randn(64, 10) * scale
        with probe.step(batch):
            opt.zero_grad()
            out = model(batch)
            F.cross_entropy(out, torch.randint(0, out.shape[1], (len(batch),))).backward()
            if optimizer_step:
                opt.step()
    return probe.epoch_metrics()


def with_bias(model: nn.Sequential, index: int, value: float) -> nn.Sequential:
    nn.init.constant_(model[index].bias, value)
    return model


def normal_init(model: nn.Module, std: float | None = None) -> nn.Module:
    """N(0, std) weights; std None is He init (std sqrt(2 / fan_in)), right for ReLU."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std or math.sqrt(2 / m.in_features))
    return model


def test_dead_relu_fraction() -> None:
    dead = train(with_bias(mlp(nn.ReLU, depth=1), 0, -100.0))
    healthy = train(mlp(nn.ReLU, depth=1))
    assert dead["dead_frac/1"] == dead["dead_frac_max"] == pytest.approx(1.0)
    assert healthy["dead_frac/1"] < 0.2
    assert dead["grad_zero_frac"] > 0.9 > healthy["grad_zero_frac"]  # AUTOTRAINER dying ReLU


@pytest.mark.parametrize("act", [nn.ReLU, nn.LeakyReLU, nn.ELU])
@pytest.mark.parametrize("channels", [1, 3])  # 1 channel: mkldnn answers channels-last
def test_dead_channels_of_a_conv_net(act: Callable[[], nn.Module], channels: int) -> None:
    net = nn.Sequential(nn.Conv2d(channels, 8, 3), act(), nn.Flatten(), nn.Linear(8 * 36, 3))
    nn.init.constant_(net[0].bias[:4], -100.0)  # half the channels never fire
    metrics = train(net, x=torch.rand(16, channels, 8, 8))
    assert metrics["dead_frac/1"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("name", "build", "check"),
    [
        ("vanishing", lambda: mlp(nn.Sigmoid, depth=10), lambda m: m["grad_ratio"] < 1e-3),
        ("healthy relu", lambda: normal_init(mlp(nn.ReLU, depth=10)),
         lambda m: 0.1 < m["grad_ratio"] < 70),
        ("exploding", lambda: normal_init(mlp(nn.ReLU, depth=10), std=1.0),
         lambda m: m["grad_ratio"] > 70 or m["grad_norm_first"] > 1e4),
    ],
)
def test_gradient_ratio_table(name: str, build: Callable[[], nn.Sequential],
                              check: Callable[[dict], bool]) -> None:
    torch.manual_seed(0)
    model = build()
    metrics = train(model)
    assert check(metrics), (name, metrics["grad_ratio"], metrics["grad_norm_first"])
    assert metrics["grad_norm_first"] == metrics["grad_norm/0"]
    assert metrics["grad_norm_last"] == metrics[f"grad_norm/{len(model) - 1}"]


def test_saturated_tanh_and_sigmoid() -> None:
    net = mlp(nn.Tanh, depth=1)
    assert train(net, scale=100.0)["saturated_frac/1"] > 0.5
    calm = train(mlp(nn.Sigmoid, depth=1), scale=0.1)
    assert calm["saturated_frac/1"] == calm["saturated_frac_max"] == 0.0


@pytest.mark.parametrize("explicit", [False, True])
def test_missing_optimizer_step_gives_zero_update(explicit: bool) -> None:
    if not explicit:
        metrics = train(mlp(nn.ReLU), steps=3, optimizer_step=False)
    else:
        model = mlp(nn.ReLU)
        probe = Probe(model, every_steps=1)
        x = torch.randn(8, 10)
        probe.before_step(x)
        F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
        probe.after_backward()
        probe.after_step()  # the loop forgot optimizer.step()
        metrics = probe.epoch_metrics()
    assert metrics["update_ratio_global"] == 0.0
    assert metrics["update_ratio_max"] == metrics["update_ratio_median"] == 0.0
    moving = train(mlp(nn.ReLU), steps=3)
    assert 0 < moving["update_ratio_global"] < 1 and moving["update_ratio_max"] > 0


def test_update_ratio_is_relative_weight_change() -> None:
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, opt, every_steps=1)
    before = model[0].weight.detach().clone()
    with probe.step(torch.ones(1, 4)):
        model(torch.ones(1, 4)).sum().backward()
        opt.step()
    expected = float((model[0].weight.detach() - before).norm() / before.norm())
    assert probe.epoch_metrics()["update_ratio/0"] == pytest.approx(expected, rel=1e-5)


F32_EPS = 2.0 ** -23


@pytest.mark.parametrize("make, lr, expected", [
    # one Linear(5, 1) without bias, weights [1, -2, 3, -4, 10] (median |w| 3, mean 4), input [-1, 2, 0.5, 4, -3]:
    # the gradient of the output's sum is the input (median |g| 2, mean 2.1)
    pytest.param(torch.optim.SGD, 0.1, 0.1 * 2.0, id="sgd"),
    pytest.param(lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9), 0.05, 0.05 * 2.0, id="sgd-momentum"),
    pytest.param(torch.optim.Adam, 1e-3, 1e-3, id="adam"),
    pytest.param(torch.optim.AdamW, 3e-4, 3e-4, id="adamw"),
    pytest.param(torch.optim.RMSprop, 1e-2, 1e-2, id="rmsprop"),
    pytest.param(torch.optim.Adagrad, 1e-2, 1e-2, id="adagrad"),
])
def test_update_expected_and_resolution(make: Callable, lr: float, expected: float) -> None:
    model = nn.Sequential(nn.Linear(5, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0, 10.0]]))
    opt = make(model.parameters(), lr=lr)
    probe = Probe(model, opt, every_steps=1)
    x = torch.tensor([[-1.0, 2.0, 0.5, 4.0, -3.0]])
    with probe.step(x):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    metrics = probe.epoch_metrics()
    assert metrics["update_expected"] == pytest.approx(expected, rel=1e-6)
    assert metrics["update_resolution"] == pytest.approx(3.0 * F32_EPS, rel=1e-6)  # the pre-step weights'


def test_no_update_scale_without_an_optimizer() -> None:
    model = nn.Sequential(nn.Linear(5, 1))
    probe = Probe(model, every_steps=1)
    x = torch.randn(4, 5)
    with probe.step(x):
        model(x).sum().backward()
    metrics = probe.epoch_metrics()
    assert "grad_norm_first" in metrics and not SCALE_KEYS & set(metrics)


def test_input_statistics() -> None:
    images = torch.rand(64, 10)
    normal, raw = train(mlp(nn.ReLU), x=images), train(mlp(nn.ReLU), x=images * 255)
    assert normal["input_std"] == pytest.approx(float(images.std()), rel=1e-4)
    assert normal["input_mean"] == pytest.approx(float(images.mean()), rel=1e-4)
    assert raw["input_std"] > 50 and raw["input_abs_max"] > 200 >= normal["input_abs_max"]
    offset = train(mlp(nn.ReLU), x=1000 + 1e-3 * torch.randn(64, 10))  # no cancellation
    assert offset["input_std"] == pytest.approx(1e-3, rel=0.1)


def test_hooks_exist_only_during_sampled_steps() -> None:
    model = mlp(nn.ReLU)
    probe = Probe(model, every_steps=5)
    sampled = []
    for step in range(20):
        x = torch.randn(4, 10)
        sampled.append(probe.before_step(x))
        hooked = [m for m in model.modules() if m._forward_hooks]
        assert len(hooked) == (3 if sampled[-1] else 0), step
        model(x).sum().backward()
        probe.after_backward()
        assert not any(m._forward_hooks for m in model.modules())
        probe.after_step()
    assert [i for i, s in enumerate(sampled) if s] == [0, 5, 10, 15]
    assert probe.epoch_metrics()["dead_frac_max"] >= 0


@pytest.mark.parametrize(("steps", "every", "sampled"), [
    (23, 20, [22]),  # one sample, not two (steps 0 and 20), and at the epoch's end
    (45, 20, [21, 43]),
    (12, 20, [11]),  # shorter than N: still one per epoch
    (60, 20, [19, 39, 59]),
])
def test_sampling_positions(steps: int, every: int, sampled: list[int]) -> None:
    probe = Probe(mlp(nn.ReLU), every_steps=every, steps_per_epoch=steps)
    for _ in range(2):
        assert [i for i in range(steps) if probe.before_step(torch.randn(2, 10))] == sampled
        probe.epoch_metrics()


def test_sampling_learns_the_epoch_length() -> None:
    probe = Probe(mlp(nn.ReLU), every_steps=4)
    assert [i for i in range(10) if probe.before_step()] == [0, 4, 8]
    probe.epoch_metrics()
    assert [i for i in range(10) if probe.before_step()] == [4, 9]  # stride 10 // 2
    assert Probe(mlp(nn.ReLU), enabled=False).before_step() is False


def test_disabled_probe_and_hostile_modules_never_raise() -> None:
    class TupleReLU(nn.Module):  # hooked by name, returns something that is not a tensor
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
            return torch.relu(x), 1

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(3, 4), TupleReLU(), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.act(self.fc(x))[0])

    net = Net()
    probe = Probe(net, every_steps=1)
    x = torch.full((2, 3), float("nan"))
    with probe.step(x):
        net(x).sum().backward()  # no optimizer, nan gradients
    metrics = probe.epoch_metrics()
    assert "dead_frac/act" not in metrics and math.isnan(metrics["grad_norm_first"])
    assert all(type(v) is float for v in metrics.values())
    assert Probe(net, enabled=False).epoch_metrics() == {}


def test_a_failing_statistic_is_skipped_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    import autofix.probes.probe as probes

    def broken(tensors: Any) -> Any:
        raise RuntimeError("norm kernel missing")

    monkeypatch.setattr(probes, "norms", broken)
    metrics = train(mlp(nn.ReLU), steps=2)  # trains on: grads and updates are skipped
    assert "grad_norm_first" not in metrics and "update_ratio_global" not in metrics
    assert metrics["dead_frac_max"] >= 0 and "input_std" in metrics


def test_explicit_api_without_after_backward_still_reads_gradients() -> None:
    model = mlp(nn.ReLU)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, opt, every_steps=1)
    x = torch.randn(8, 10)
    probe.before_step(x)
    F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    probe.after_step()
    metrics = probe.epoch_metrics()
    assert metrics["grad_norm_first"] > 0 and metrics["update_ratio_global"] > 0
    assert probe.errors == []


def test_ratio_edge_cases_and_layer_names() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    nn.init.zeros_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    # a zero last layer: no gradient reaches the first layer, the last gets one
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, opt, every_steps=1)
    with probe.step(torch.ones(4, 2)):
        F.cross_entropy(model(torch.ones(4, 2)), torch.zeros(4, dtype=torch.long)).backward()
        opt.step()
    metrics = probe.epoch_metrics()
    assert metrics["grad_ratio"] == 0.0 and metrics["grad_norm_last"] > 0
    assert math.isnan(metrics["update_ratio/2"])  # ||w|| = 0: relative update undefined
    assert set(k for k in metrics if k.startswith("grad_norm/")) == {"grad_norm/0", "grad_norm/2"}
    frozen = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    frozen[1].requires_grad_(False)
    nn.init.zeros_(frozen[0].weight)
    frozen_metrics = train(frozen, x=torch.zeros(4, 2))
    assert frozen_metrics["grad_norm_first"] == frozen_metrics["grad_norm_last"]


def test_label_and_prediction_metrics() -> None:
    labels = torch.tensor([0] * 95 + [1] * 5)
    assert label_metrics(labels) == {"label_frac_max": 0.95, "label_classes": 2.0}
    assert label_metrics(torch.randn(10)) == {}
    one = prediction_metrics(np.zeros(50, dtype=np.int64), np.arange(50) % 5)
    assert one["pred_frac_max"] == 1.0 and one["pred_classes"] == 1.0
    assert one["val_recall_min"] == 0.0 and one["val_recall/0"] == 1.0
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 6, 300), rng.integers(0, 7, 300)  # class 6 only predicted
    got = prediction_metrics(pred, true)
    recall = recall_score(true, pred, labels=np.unique(true), average=None, zero_division=0)
    assert got["val_recall_min"] == pytest.approx(recall.min())
    assert [got[f"val_recall/{c}"] for c in range(6)] == pytest.approx(list(recall))
    with pytest.warns(UserWarning):  # sklearn warns about the never-true class; same value
        assert got["val_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, pred))
    many = prediction_metrics(np.arange(30), np.arange(30))
    assert "val_recall/0" not in many and many["val_recall_min"] == 1.0
    assert initial_loss_metrics(2.5, 10) == {"init_loss": 2.5, "chance_loss": math.log(10)}
    assert initial_loss_metrics(0.3, None) == {"init_loss": 0.3}


# --- the overhead budget, timed by a fake clock: deterministic, never a timed test -------------

class FakeClock:
    """A ``perf_counter`` for the probe's budget: each reading costs ``tick`` seconds, so every
    timed section of the probe costs one tick; the loop adds the training time itself."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def budget_run(tick: float, epochs: int = 24, steps: int = 10, every: int = 20,
               optimizer_step: bool = True, **kw: Any,
               ) -> tuple[Probe, list[tuple[list[int], dict[str, float]]]]:
    """``epochs`` epochs of ``steps`` 1 ms SGD steps; per epoch (sampled steps, metrics).

    A sample costs ~6 ticks (before_step, step hook, activation hook, gradients, step hook
    removal, update), a report one, against 10 ms of training, of which the budget lets the
    timed work take 1% (headroom 1, not the default: no allowance for untimed costs): 0.1 ms.
    ``probe.totals`` lists the budget's (probe seconds, training seconds) after each epoch.
    """
    clock = FakeClock(tick)
    model = mlp(nn.ReLU, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = Probe(model, opt, every_steps=every, steps_per_epoch=steps, clock=clock, **kw)
    probe.budget.headroom = 1.0
    rows, probe.totals = [], []  # type: ignore[attr-defined]
    for _ in range(epochs):
        sampled = []
        for i in range(steps):
            x = torch.randn(8, 10)
            with probe.step(x) as is_sampled:
                opt.zero_grad()
                F.cross_entropy(model(x), torch.randint(0, 3, (8,))).backward()
                if optimizer_step:
                    opt.step()
                clock.now += 1e-3
            sampled += [i] if is_sampled else []
        rows.append((sampled, probe.epoch_metrics()))
        probe.totals.append((probe.budget.probe_seconds,  # type: ignore[attr-defined]
                             probe.budget.train_seconds))
    return probe, rows


def fresh_epochs(rows: list[tuple[list[int], dict[str, float]]]) -> list[int]:
    return [e for e, (sampled, metrics) in enumerate(rows) if metrics["probe_age"] == 0.0]


def test_budget_stretches_sampling_for_a_cheap_model() -> None:
    probe, rows = budget_run(tick=3e-5)  # a ~2% probe
    fresh = fresh_epochs(rows)
    assert fresh == [e for e, (sampled, _) in enumerate(rows) if sampled]
    assert fresh[:WARMUP] == list(range(WARMUP))  # the first epochs are always sampled
    gaps = {b - a for a, b in zip(fresh[WARMUP - 1:], fresh[WARMUP:], strict=False)}
    assert gaps == {3}  # (6 + 1 - 1) ticks / (0.1 ms - 1 tick) = 2.6: one epoch in 3
    assert [m["probe_age"] for _, m in rows[fresh[-2]:fresh[-1] + 1]] == [0.0, 1.0, 2.0, 0.0]
    (probe_0, train_0), (probe_1, train_1) = probe.totals[WARMUP - 1], probe.totals[-1]
    assert (probe_1 - probe_0) / (train_1 - train_0) <= 0.01  # the budget's own account
    assert 0.01 < probe.overhead < 0.02  # type: ignore[operator]  # warm-up included


def test_stale_epochs_carry_the_last_sample() -> None:
    _, rows = budget_run(tick=3e-5)
    last: dict[str, float] = {}
    for sampled, metrics in rows:
        values = {k: v for k, v in metrics.items() if k != "probe_age"}
        if metrics["probe_age"] == 0.0:
            assert sampled and UPDATE_KEYS <= set(values)
            last = values
        else:
            assert not sampled and values == last  # nonzero updates travel too
    assert Probe(mlp(nn.ReLU), clock=FakeClock(1.0)).epoch_metrics() == {}  # nothing to carry


def test_first_epoch_is_sampled_and_max_epochs_between_holds() -> None:
    _, rows = budget_run(tick=1e-3, max_epochs_between=4)  # a 6 ms sample on a 10 ms epoch
    assert rows[0][0] == [9] and rows[0][1]["probe_age"] == 0.0
    assert fresh_epochs(rows) == [0, 1, 2, 3, 4, 8, 12, 16, 20]
    assert max(m["probe_age"] for _, m in rows) == 3.0
    with pytest.raises(ValueError, match="max_epochs_between"):
        Probe(mlp(nn.ReLU), max_epochs_between=0)
    with pytest.raises(ValueError, match="max_overhead"):
        Probe(mlp(nn.ReLU), max_overhead=0.0)


def test_no_budget_samples_every_epoch_as_before() -> None:
    probe, rows = budget_run(tick=1e-3, every=4, max_overhead=None)
    assert probe.max_overhead is None
    assert all(sampled == [4, 9] and m["probe_age"] == 0.0 for sampled, m in rows)


def test_budget_takes_fewer_samples_before_skipping_epochs() -> None:
    _, rows = budget_run(tick=5e-6, every=1)  # 10 asked, 3 fit: (0.1 ms - 1) / 6 ticks = 3.2
    assert all(sampled == list(range(10)) for sampled, _ in rows[:WARMUP])
    assert all(sampled == [2, 5, 8] for sampled, _ in rows[WARMUP:])


def test_a_stale_report_never_repeats_a_zero_update() -> None:
    _, rows = budget_run(tick=1e-3, optimizer_step=False)  # the loop forgot optimizer.step()
    for sampled, metrics in rows:
        updates = {k: v for k, v in metrics.items() if k.startswith("update_ratio")}
        if sampled:
            assert updates and set(updates.values()) == {0.0}  # measured: reported
        else:  # carried: one measured zero must not look like two to no_update
            assert metrics["probe_age"] > 0 and not updates and "grad_norm_first" in metrics


def close_epoch(budget: Budget, samples: int, spent: float, report: float) -> None:
    """Book an epoch of 10 steps of 1 ms (1e-4 s at 1%): ``samples`` cost ``spent`` seconds."""
    budget.start, budget.samples, budget.spent = 0.0, samples, spent
    budget.close_epoch(1e-2 + spent, 10, report)


def test_budget_plan() -> None:
    budget = Budget(0.01, 5, clock=lambda: 0.0, headroom=1.0)
    for _ in range(WARMUP):
        assert budget.plan(10, 1, 0) == 1  # until the window is full: every_steps decides
        close_epoch(budget, 1, 3e-4, 1e-4)
    assert [budget.plan(10, 1, age) for age in range(5)] == [0, 0, 0, 1, 1]  # 4e-4 / 1e-4
    for _ in range(3):
        close_epoch(budget, 0, 0.0, 2e-5)  # stale reports cost too:
    close_epoch(budget, 1, 3e-4, 1e-4)  # (3e-4 + 1e-4 - 2e-5) / (1e-4 - 2e-5) = 4.75
    assert [budget.plan(10, 1, age) for age in range(5)] == [0, 0, 0, 0, 1]
    half = Budget(0.01, 5, clock=lambda: 0.0, headroom=0.5)  # the default leaves 1/4 untimed
    for b in (budget, half):
        for _ in range(WINDOW):
            close_epoch(b, 1, 1.9e-5, 1e-5)  # cheaper samples: (1e-4 - 1e-5) / 1.9e-5, 4 fit
    assert budget.plan(10, 10, 0) == 4 and budget.plan(10, 2, 0) == 2
    assert half.plan(10, 10, 0) == 2  # (5e-5 - 1e-5) / 1.9e-5
    assert budget.overhead == pytest.approx(budget.probe_seconds / budget.train_seconds)
    budget.max_overhead = None
    assert budget.plan(10, 10, 0) == 10


def harness_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": {"factory": "autofix.harness.models:mlp",
                  "args": {"in_features": 8, "num_classes": 2, "hidden": [16, 16]}},
        "data": {"factory": "classification",
                 "args": {"n_samples": 400, "n_features": 8, "weights": [0.95, 0.05]}},
        "optimizer": {"name": "adam", "lr": 1e-2}, "batch_size": 32, "epochs": 2,
    }
    cfg.update(overrides)
    return cfg


def run(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    run_training(cfg, lambda metrics, ckpt: rows.append(metrics))
    return rows


def test_run_training_reports_probe_keys() -> None:
    rows = run(harness_config())
    first, later = rows[0], rows[1:]
    assert PROBE_KEYS | SCALE_KEYS | {"init_loss", "chance_loss"} <= set(first)
    assert not UPDATE_KEYS & set(first)  # epoch 0 takes no step
    assert first["init_loss"] == first["train_loss"]
    assert first["chance_loss"] == pytest.approx(math.log(2))
    assert first["label_frac_max"] == pytest.approx(0.95, abs=0.02)
    assert {"grad_norm/0", "grad_norm/4", "dead_frac/1", "dead_frac/3"} <= set(first)
    for row in later:
        assert PROBE_KEYS | UPDATE_KEYS | SCALE_KEYS <= set(row) and "init_loss" not in row
        assert all(type(v) is float for k, v in row.items() if k != "epoch")
    off = run(harness_config(probes={"enabled": False}))
    baseline = {"epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_balanced_accuracy", "lr",
                "grad_norm", "grad_norm_max", "input_ndim", "step", "planned_steps", "chance_accuracy",
                "chance_macro_f1", "chance_balanced_accuracy", "label_entropy"}
    assert all(set(row) == baseline for row in off)
    # probes draw no random numbers and change no weights: the same run either way
    assert [r["train_loss"] for r in off] == [r["train_loss"] for r in rows]


def one_class_model() -> nn.Module:
    """Logits so biased towards class 0 that nothing else is ever predicted."""
    model = nn.Sequential(nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([100.0, -100.0]))
    return model


def test_run_training_with_a_single_class_predictor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(__import__(__name__), "one_class_model", one_class_model, raising=False)
    rows = run(harness_config(model={"factory": f"{__name__}:one_class_model"}, epochs=1,
                              data={"factory": "classification", "args": {"n_features": 8}},
                              probes={"every_steps": 3}))
    for row in rows:
        assert row["pred_frac_max"] == 1.0 and row["pred_classes"] == 1.0
        assert row["val_recall_min"] == 0.0 and row["val_balanced_accuracy"] == 0.5
    assert "dead_frac_max" not in rows[0]  # no activation module to hook
