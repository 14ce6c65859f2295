"""The pieces of the "long runs" bench block (benchmarks/long_runs*.py): the injector corrupts
exactly its declared window, the LR burst composes with a cut, compute counts rolled-back steps,
detect-and-stop stops at the spike, the targets read the rows, and the warm relaunch is the engine's
(a warm child of a spiked run, none on a clean one, every optimizer step counted)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import TensorDataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:  # the bench modules import each other as long_runs_cases, ...
    sys.path.insert(0, str(BENCH))

import long_runs_warm  # noqa: E402

from autofix.harness.data import Batches  # noqa: E402
from autofix.rules.policy import BUILTIN, load_policies  # noqa: E402
from autofix.spec.training import TrainingSpec  # noqa: E402
from autofix.symptoms.spike import SpikeParams  # noqa: E402

import long_runs  # noqa: E402
import long_runs_methods  # noqa: E402
from long_runs_cases import CASES, Case, Injection, Stream  # noqa: E402

TINY = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 4, "num_classes": 3}},
        "data": {"factory": "blobs", "args": {"n_samples": 600, "n_features": 4}},
        "optimizer": {"name": "sgd", "lr": 0.05}, "batch_size": 20}


def _stream(injection: Injection | None, size: int = 50, batch: int = 8, lr: float = 0.1, start: int = 0) -> Stream:
    x = torch.arange(size * 2, dtype=torch.float32).reshape(size, 2) + 1  # no zero: x16 always shows
    loader = Batches(TensorDataset(x, torch.arange(size) % 3), batch, shuffle=True, seed=0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    count = [0]
    stream = Stream(loader, injection, optimizer, lambda: count[0], max_batches=10_000, num_classes=3, start=start)
    stream.count = count  # type: ignore[attr-defined]  # the test advances the "trajectory"
    return stream


def _draw(stream: Stream, batches: int) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Draw ``batches`` batches, one 'step' each, with the rate in force for each."""
    stream.target = batches
    out = []
    for x, y in stream.epoch(1):
        out.append((x, y, stream.optimizer.param_groups[0]["lr"]))
        stream.count[0] += 1  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("onset, length", [(0, 1), (3, 4), (5, 9), (10, 20)])  # 7 batches an epoch: some cross
def test_the_burst_corrupts_exactly_its_window(onset, length):
    clean = _draw(_stream(None), 40)
    burst = _stream(Injection("corrupt", onset=onset, length=length, input_scale=16.0))
    drawn = _draw(burst, 40)
    assert burst.corrupted == list(range(onset, onset + length))
    for k, ((x0, y0, _), (x, y, _)) in enumerate(zip(clean, drawn, strict=True)):
        inside = onset <= k < onset + length
        assert torch.equal(x, x0 * 16 if inside else x0), k
        assert torch.equal(y, (y0 + 1) % 3 if inside else y0), k


@pytest.mark.parametrize("onset, length", [(0, 1), (3, 4), (10, 20)])
def test_the_ideal_skip_never_hands_out_the_windows_batches(onset, length):
    clean = _draw(_stream(None), 40)
    dropped = _draw(_stream(Injection("drop", onset=onset, length=length)), 40 - length)
    kept = clean[:onset] + clean[onset + length:]
    assert len(dropped) == len(kept) == 40 - length
    assert all(torch.equal(x, x0) and torch.equal(y, y0) for (x, y, _), (x0, y0, _) in zip(dropped, kept, strict=True))


@pytest.mark.parametrize("length, cut_at, rates", [
    pytest.param(3, None, [0.1, 0.1, 3.0, 3.0, 3.0, 0.1, 0.1], id="burst-then-back"),
    pytest.param(None, None, [0.1, 0.1, 3.0, 3.0, 3.0, 3.0, 3.0], id="rise-to-the-end"),
    pytest.param(3, 3, [0.1, 0.1, 3.0, 1.5, 1.5, 0.05, 0.05], id="a-cut-in-the-burst-is-kept"),
])
def test_the_lr_injection_multiplies_the_rate_in_force(length, cut_at, rates):
    stream = _stream(Injection("lr", onset=2, length=length, lr_factor=30.0))
    seen = []
    stream.target = len(rates)
    for k, _batch in enumerate(stream.epoch(1)):
        if k == cut_at:  # what a guard's lr_factor does on a rewind
            stream.optimizer.param_groups[0]["lr"] *= 0.5
        seen.append(stream.optimizer.param_groups[0]["lr"])
        stream.count[0] += 1  # type: ignore[attr-defined]
    assert seen == pytest.approx(rates)


def test_a_trajectory_that_cannot_advance_ends_at_max_batches():
    stream = _stream(None)
    stream.max_batches, stream.target = 25, 10
    assert sum(1 for _ in stream.epoch(1)) == 25 and stream.exhausted  # the count never moved


class _ScriptedGuard:
    """Rewinds once, from step ``at`` back to ``to`` (restoring nothing: the bench only counts)."""

    def __init__(self, _cfg: dict, *_args: Any, at: int = 30, to: int = 20) -> None:
        self.step, self.at, self.to, self.done = 0, at, to, False

    def spiked(self, _loss: float) -> Any:
        if self.step != self.at or self.done:
            return None
        self.done, rewind = True, type("R", (), {"from_step": self.step, "to_step": self.to})()
        self.step = self.to
        return rewind

    judges_norms = False

    def grad_spiked(self, _grad_norm: float) -> Any:
        return None

    def stepped(self, _loss: float, _grad_norm: float | None = None, _batch: Any = None) -> None:
        self.step += 1

    def metrics(self) -> dict[str, float]:
        return {}


def test_compute_counts_the_rolled_back_steps(monkeypatch):
    monkeypatch.setattr(long_runs_methods, "attach_guard", lambda trainer, rules: _ScriptedGuard({}))
    case = Case("tiny", TINY, 120)
    run = long_runs_methods.train(case, 0, guard="guard")
    # 120 steps kept + the 10 run from 20 to 30 and thrown away; the spiking batch is not stepped on
    assert (run.compute, run.trajectory, run.reached) == (130, 120, True)
    assert run.rewinds == [(30, 30, 20)]  # (batch position, from, to)
    assert [step for step, _ in run.curve] == [0, *range(12, 121, 12)]


def test_detect_and_stop_ends_at_the_first_spike_before_training_on_it():
    case = Case("tiny_burst", TINY, 300, Injection("corrupt", onset=150, length=5, input_scale=100.0))
    run = long_runs_methods.train(case, 0, stop_at_spike=True)
    assert (run.detected_at, run.compute, run.corrupted_at, run.reached) == (150, 150, [150], False)
    row = long_runs_methods._row(case, 0, "detect_stop", run, run, 0)
    assert (row["detection_lag"], row["early_alarms"], row["corrupted_trained"]) == (0, 0, 0)


def _rows(ratio: float, compute: float, lag: int | None, control_rewinds: int) -> list[dict[str, Any]]:
    base = {"control": False, "tags": [], "seed": 0, "case": "c", "early_alarms": 0, "rewinds": [],
            "val_loss": 1.0, "relaunches": 0}
    return [{**base, "method": "guard", "val_ratio": ratio, "compute_ratio": compute, "detection_lag": lag,
             "loss_onset_lag": lag},
            {**base, "method": "left_alone", "val_ratio": 3.0, "compute_ratio": 1.0, "detection_lag": None},
            {**base, "method": "clean_guard", "control": True, "val_ratio": 1.0, "compute_ratio": 1.0,
             "detection_lag": None, "rewinds": [(5, 5, 0)] * control_rewinds}]


@pytest.mark.parametrize("rows, failing", [
    pytest.param(_rows(1.02, 1.05, 10, 0), set(), id="all-at-their-limits"),
    pytest.param(_rows(1.021, 1.0, 0, 0), {"healed"}, id="2.1pct-worse-is-not-healed"),
    pytest.param(_rows(1.0, 1.051, 0, 0), {"compute"}, id="compute-over-1.05x"),
    pytest.param(_rows(1.0, 1.0, 11, 0), {"detection"}, id="detected-11-steps-late"),
    pytest.param(_rows(1.0, 1.0, None, 0), {"detection"}, id="never-detected"),
    pytest.param(_rows(1.0, 1.0, 0, 1), {"0 rewinds on the clean controls"}, id="a-rewind-on-a-control"),
])
def test_the_targets_read_the_rows(rows, failing, monkeypatch):
    monkeypatch.setattr(long_runs, "OVERHEAD_FILE", Path("/nonexistent"))
    missed = {t["target"] for t in long_runs.targets(rows) if t["met"] is False}
    assert {next(m for m in missed if key in m) for key in failing} == missed


def _overhead(tmp_path, reports_pct, guard_pct, share=0.094):
    result = {"reports_pct": reports_pct, "overhead_pct": guard_pct, "step_ms_off": 0.6, "one_percent_from_ms": 2.0}
    path = tmp_path / "overhead.json"
    path.write_text(json.dumps({"command": "cmd", "date_utc": "now", "report_call_share_pct": share,
                                "results": {"a": result, "b": {**result, "overhead_pct": 0.5}}}))
    return path


@pytest.mark.parametrize("reports_pct, guard_pct, share, expected", [
    pytest.param(0.9, 0.5, 0.094, (True, True), id="both-within"),
    pytest.param(0.95, 0.5, 0.094, (False, True), id="the-report-calls-share-counts"),
    pytest.param(0.2, 3.0, 0.094, (True, False), id="the-guard-is-its-own-row"),
    pytest.param(0.2, 0.5, None, (None, True), id="no-report-call-measured"),
])
def test_the_overhead_rows_read_the_cited_results(tmp_path, monkeypatch, reports_pct, guard_pct, share, expected):
    monkeypatch.setattr(long_runs, "OVERHEAD_FILE", _overhead(tmp_path, reports_pct, guard_pct, share))
    reporting, guard = long_runs._overhead_targets()
    assert (reporting["met"], guard["met"]) == expected
    assert "step reporting overhead" in reporting["target"] and "spike guard" in guard["target"]


@pytest.mark.parametrize("losses, onset, expected", [
    pytest.param([(p, 1.0) for p in range(10)] + [(10, 5.0)], 10, 10, id="a-corrupted-batch-spikes-at-once"),
    pytest.param([(p, 1.0) for p in range(10)] + [(10, 1.0), (11, 1.0), (12, 1.5)], 10, 12,
                 id="a-rate-rise-moves-the-loss-later"),
    pytest.param([(p, 1.0) for p in range(10) if p != 7] + [(7, 2.0), (10, 1.5), (11, 2.5)], 10, 11,
                 id="the-range-is-the-windows-largest-loss"),
    pytest.param([(p, 1.0) for p in range(10)] + [(10, float("nan"))], 10, 10, id="nan-left-the-range"),
    pytest.param([(p, 1.0) for p in range(12)], 10, None, id="never-left-it"),
    pytest.param([(p, 9.0) for p in range(5)] + [(p, 1.0) for p in range(5, 10)] + [(10, 2.0)], 10, 10,
                 id="only-the-window-before-the-injection-counts"),
])
def test_the_spikes_own_onset_is_where_the_loss_left_alone_leaves_its_range(losses, onset, expected):
    assert long_runs_methods.spike_onset(losses, onset, window=5) == expected


def test_every_row_gets_the_left_alone_runs_onset_and_its_lag_from_it():
    case = Case("c", TINY, 100, Injection("lr", onset=5, length=None))
    run = long_runs_methods.Run(val_loss=1.0, curve=[], compute=100, trajectory=100, reached=True)
    alone = dataclasses.replace(run, loss_onset=9)
    guard = dataclasses.replace(run, rewinds=[(3, 3, 3), (11, 11, 10)])
    stop = dataclasses.replace(run, detected_at=8)
    rows = long_runs_methods.with_loss_onset([long_runs_methods._row(case, 0, method, r, run, 0) for method, r in
                                              (("guard", guard), ("left_alone", alone), ("detect_stop", stop))])
    assert [(r["loss_onset"], r["loss_onset_lag"], r["detection_lag"]) for r in rows] == [
        (9, 2, 6), (9, None, None), (9, -1, 3)]  # an alarm before the injection (3) is not the detection


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_is_a_valid_config_and_its_onset_is_past_the_warm_up(case):
    TrainingSpec(**{**case.config, "epochs": 1})
    if case.injection is not None:  # the rule judges nothing before its warm-up and half a window
        rule = SpikeParams()  # the guard's defaults (no case sets symptoms.loss_spike)
        assert max(rule.warmup_steps, rule.window_steps // 2) < case.injection.onset < case.steps


@pytest.mark.parametrize("rewinds, detected, trained, jumps", [
    pytest.param([(5, 5, 0)], None, 2, 0, id="one-rewind-rejects-one-of-three"),
    pytest.param([(5, 5, 0), (6, 0, 5), (7, 5, 0)], None, 0, 1, id="each-rejected-one-jump-forward"),
    pytest.param([], 5, 2, 0, id="a-stop-rejects-its-batch"),
])
def test_the_row_counts_corrupted_batches_trained_on_and_forward_jumps(rewinds, detected, trained, jumps):
    case = Case("c", TINY, 100, Injection("corrupt", onset=5, length=3))
    run = long_runs_methods.Run(val_loss=1.0, curve=[], compute=100, trajectory=100, reached=True,
                                rewinds=rewinds, detected_at=detected, corrupted_at=[5, 6, 7])
    row = long_runs_methods._row(case, 0, "guard", run, run, 0)
    assert (row["corrupted_trained"], row["forward_jumps"], row["detection_lag"]) == (trained, jumps, 0)


@pytest.mark.parametrize("injection, start", [
    pytest.param(Injection("corrupt", onset=5, length=6), 8, id="inside-a-corrupted-window"),
    pytest.param(Injection("corrupt", onset=5, length=6), 12, id="past-the-window"),
    pytest.param(None, 30, id="clean-across-an-epoch-boundary"),  # 7 batches an epoch
])
def test_a_stream_started_at_a_position_replays_the_same_batches(injection, start):
    whole = _draw(_stream(injection), 40)
    resumed = _stream(injection, start=start)
    drawn = _draw(resumed, 40 - start)
    pairs = zip(drawn, whole[start:], strict=True)
    assert all(torch.equal(x, x0) and torch.equal(y, y0) for (x, y, _), (x0, y0, _) in pairs)
    assert resumed.corrupted == [p for p in range(start, 40) if injection is not None and injection.covers(p)]


@pytest.mark.parametrize("start, rate", [(1, 0.1), (2, 3.0), (4, 3.0), (5, 0.1)])  # burst x30 on 2..4
def test_a_stream_started_inside_an_lr_burst_puts_it_on_the_new_optimizer(start, rate):
    stream = _stream(Injection("lr", onset=2, length=3, lr_factor=30.0), start=start)
    stream.target = 1
    next(iter(stream.epoch(1)))  # the first batch drawn: the rate it is trained at
    assert stream.optimizer.param_groups[0]["lr"] == pytest.approx(rate)


@pytest.mark.parametrize("injection, relaunched", [
    pytest.param(None, False, id="clean-run-left-alone"),
    pytest.param(Injection("lr", onset=120, length=None, lr_factor=20.0), True, id="rate-x20-relaunched-warm"),
])
def test_the_warm_relaunch_is_the_engines_and_counts_every_step(injection, relaunched):
    counted = [0]  # every optimizer.step() in this process, whoever runs it
    handle = register_optimizer_step_post_hook(
        lambda *_: counted.__setitem__(0, counted[0] + 1))
    try:
        run = long_runs_warm.train_warm_relaunch(Case("tiny", TINY, 300, injection), 0)
    finally:
        handle.remove()
    assert (len(run.attempts) > 1, run.reached, run.isolation) == (relaunched, True, [])
    assert run.compute == counted[0] == sum(a["compute"] for a in run.attempts)
    assert (run.compute > run.trajectory) == relaunched  # the steps of the run thrown away are counted
    row = long_runs_methods._row(Case("tiny", TINY, 300, injection), 0, "warm_relaunch", run, run,
                                 len(run.attempts) - 1)
    assert (row["relaunches"] > 0, row["detected_at"] is not None) == (relaunched, relaunched)
    if relaunched:
        child = run.attempts[1]
        shipped = {p.name for p in load_policies([BUILTIN])}
        assert (child["start"], child["parent"], child["policy"] in shipped) == ("warm", "a0", True)
        assert 0 < child["from_step"] <= injection.onset and child["patch"]  # a healthy checkpoint, a patched config
        assert run.kept == child["id"] and run.val_loss == child["val_loss"]


@pytest.mark.parametrize("detected, restart_compute, relaunches", [
    pytest.param(600, 600 + 1500, 1, id="stopped-then-restarted-compute-adds-up"),
    pytest.param(None, 1500, 0, id="nothing-detected-nothing-restarted"),
])
def test_stop_and_restart_is_one_method_for_both_launchers(detected, restart_compute, relaunches):
    """run_case and run_ddp_case share it: the restart's compute counts the stopped run's."""
    case = next(c for c in CASES if c.injection is not None)
    calls: list[dict[str, Any]] = []

    def run(**kwargs: Any) -> Any:
        calls.append(kwargs)
        stopped = kwargs.get("stop_at_spike", False)
        return long_runs_methods.Run(val_loss=1.0, curve=[], compute=600 if stopped and detected else 1500,
                                     trajectory=1500, reached=True, detected_at=detected if stopped else None)

    clean = long_runs_methods.Run(val_loss=1.0, curve=[], compute=1500, trajectory=1500, reached=True)
    rows = long_runs_methods.stop_and_restart(case, 0, clean, run)
    assert [r["method"] for r in rows] == ["detect_stop", "restart_low_lr"]
    assert (rows[1]["compute"], rows[1]["relaunches"]) == (restart_compute, relaunches)
    assert calls == [{"stop_at_spike": True}] + ([{"lr_scale": long_runs_methods.RESTART_LR_SCALE}] if detected else [])
