"""Training-loop bugs, named and never answered by a relaunch (autofix/symptoms/code.py, the
probe's loop check, the worker's warning capture), and knob hints for skipped remedies."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import autofix
from autofix.judge.history import History
from autofix.probes import Probe
from autofix.probes.loopcheck import LoopCheck
from autofix.rules.engine import Engine, Plan
from autofix.rules.lineage import Outcome
from autofix.rules.policy import load_policies
from autofix.symptoms import HARD, SYMPTOMS, build_detectors

from conftest import FIXTURES

CODE_BUGS = ("missing_zero_grad", "loss_broadcast", "detached_loss", "nan_metric")


# -- the probe's loop check: real PyTorch loops ------------------------------------------------

def _loop(mode: str, steps: int = 12, accumulate: int = 1) -> dict[str, float]:
    """``steps`` batches of a small MLP trained with SGD in one of several (buggy) ways."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    params = list(model.parameters())
    if mode == "head_only":  # fine-tuning: the first layer is trainable but not in the optimizer
        params = list(model[2].parameters())
    if mode == "other_model":  # the optimizer holds a copy's parameters
        params = list(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    probe = Probe(model, opt, every_steps=5)
    for i in range(steps):
        x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        with probe.step(x):
            if mode in ("zero", "head_only", "other_model", "detached"):
                opt.zero_grad()
            elif mode == "zero_in_place":
                opt.zero_grad(set_to_none=False)
            elif mode == "model_zero":
                model.zero_grad()
            out = model(x)
            if mode == "detached":  # the "fix" for backward's error that hides the bug
                loss = F.cross_entropy(out.detach(), y).requires_grad_(True)
            else:
                loss = F.cross_entropy(out, y)
            loss.backward()
            if (i + 1) % accumulate == 0:
                opt.step()
                if mode == "accumulate":
                    opt.zero_grad()
    return probe.epoch_metrics()


@pytest.mark.parametrize("mode, accumulate, stale, gradless", [
    ("zero", 1, 0, 0),  # zero_grad() before backward: set to None
    ("zero_in_place", 1, 0, 0),  # zero_grad(set_to_none=False): zeroed in place (version bump)
    ("model_zero", 1, 0, 0),
    ("accumulate", 4, 0, 0),  # gradient accumulation over 4 batches, zeroed after each step
    ("none", 1, 11, 0),  # zero_grad() forgotten: every backward after a step accumulates
    ("none", 3, 3, 0),  # forgotten with accumulation too: the first backward after each step
    ("head_only", 1, 0, 0),  # a trainable parameter outside the optimizer keeps its gradient: no bug
    ("detached", 1, 0, 12),  # a loss on detached outputs: no parameter ever has a gradient
    ("other_model", 1, 0, 12),  # the optimizer holds another model's parameters
])
def test_loop_check_counts_stale_and_gradless_steps(mode, accumulate, stale, gradless):
    metrics = _loop(mode, accumulate=accumulate)
    steps = 12 // accumulate
    assert metrics["optimizer_steps"] == steps
    assert metrics["gradless_steps"] == gradless
    assert metrics.get("stale_grad_steps", 0.0) == stale
    if gradless == 0 and mode != "other_model":
        assert metrics["stale_grad_checks"] == steps - 1  # every step but the last is followed by a backward


def test_loop_check_needs_an_optimizer_and_resets_every_epoch():
    model = nn.Linear(3, 2)
    assert LoopCheck(list(model.parameters()), None).epoch_metrics() == {}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    check = LoopCheck(list(model.parameters()), opt)
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    assert check.epoch_metrics() == {"optimizer_steps": 3.0, "gradless_steps": 0.0,
                                     "stale_grad_checks": 2.0, "stale_grad_steps": 2.0}
    assert check.epoch_metrics() == {}
    model(torch.randn(4, 3)).sum().backward()  # an epoch's first backward is not checked (as after a restore)
    opt.step()
    assert check.epoch_metrics() == {"optimizer_steps": 1.0, "gradless_steps": 0.0}
    check.remove()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert check.epoch_metrics() == {}


# -- the detectors ----------------------------------------------------------------------------

def _history(rows: list[dict[str, float]]) -> History:
    return History({i: {"val_loss": 2.0 - 0.1 * i, "step": 10.0 * i, **row} for i, row in enumerate(rows)})


def _check(symptom: str, rows: list[dict[str, float]], **params: Any):
    return SYMPTOMS[symptom]("val_loss", **params).check(_history(rows))


NAN = math.nan


@pytest.mark.parametrize("symptom, rows, fires", [
    ("missing_zero_grad", [{}, {"stale_grad_steps": 24, "stale_grad_checks": 24}], True),
    ("missing_zero_grad", [{}, {"stale_grad_steps": 0, "stale_grad_checks": 24}], False),
    ("missing_zero_grad", [{}, {"stale_grad_steps": 1, "stale_grad_checks": 1}], False),  # one step: too few
    ("missing_zero_grad", [{}, {"stale_grad_steps": 5, "stale_grad_checks": 24}], False),  # a minority of steps
    ("missing_zero_grad", [{}, {"stale_grad_steps": 12, "stale_grad_checks": 24}], True),
    ("missing_zero_grad", [{"stale_grad_steps": 9, "stale_grad_checks": 9}, {}], False),  # judged on the last report
    ("loss_broadcast", [{"loss_broadcast_warnings": 1, "loss_broadcast_input_numel": 640,
                         "loss_broadcast_target_numel": 64}], True),
    ("loss_broadcast", [{}, {"loss_broadcast_warnings": 0}], False),
    ("loss_broadcast", [{}, {}], False),
    ("detached_loss", [{}, {"gradless_steps": 25, "optimizer_steps": 25}], True),
    ("detached_loss", [{}, {"gradless_steps": 1, "optimizer_steps": 25}], False),
    ("detached_loss", [{}, {"gradless_steps": 0, "optimizer_steps": 0}], False),
    ("nan_metric", [{"val_accuracy": 0.1}, {"val_accuracy": 0.5}, {"val_accuracy": NAN}], True),
    ("nan_metric", [{"val_macro_f1": 0.1}, {"val_macro_f1": math.inf}], True),
    ("nan_metric", [{"val_accuracy": NAN}, {"val_accuracy": NAN}, {"val_accuracy": NAN}], False),  # never finite
    ("nan_metric", [{"val_accuracy": 0.1}, {"val_accuracy": NAN, "val_loss": NAN}], False),  # the loss too: outputs
    ("nan_metric", [{"val_accuracy": 0.1}, {"val_accuracy": NAN, "val_nonfinite_outputs": 1.0}], False),
    ("nan_metric", [{"val_accuracy": NAN, "step": 0.0}], False),  # the untrained report alone
    ("nan_metric", [{"val_accuracy": 0.1}, {"val_accuracy": 0.4}], False),
    ("nan_metric", [{"train_acc": 0.1}, {"train_acc": NAN}], False),  # not a judged metric by default
])
def test_code_bug_detectors(symptom, rows, fires):
    finding = _check(symptom, rows)
    assert (finding is not None) == fires
    if fires:
        assert finding.symptom == symptom and finding.evidence and finding.reason


def test_nan_metric_reads_the_metrics_it_is_given():
    rows = [{"train_acc": 0.1}, {"train_acc": NAN}]
    assert _check("nan_metric", rows, metrics=("train_acc",)) is not None


@pytest.mark.parametrize("text, fires", [
    ("Traceback ...\nRuntimeError: element 0 of tensors does not require grad and does not have a grad_fn", True),
    ("RuntimeError: element 3 of tensors does not require grad", True),
    ("ValueError: boom: the data loader fell over", False),
    ("", False),
])
def test_detached_loss_from_the_trials_error(text, fires):
    finding = SYMPTOMS["detached_loss"]("val_loss").from_error(_history([{}]), text)
    assert (finding is not None) == fires


def _across(here: list[dict], there: list[dict]):
    return SYMPTOMS["nan_metric"]("val_loss").across(_history(here), [_history(there)])


@pytest.mark.parametrize("here, there, fires", [
    # NaN from the first report on in both attempts, at the same epoch (2), finite loss: the code
    ([{"val_accuracy": NAN}, {"val_accuracy": 0.3}, {"val_accuracy": NAN, "epoch": 2}],
     [{"val_accuracy": NAN}, {"val_accuracy": 0.2}, {"val_accuracy": NAN, "epoch": 2}], True),
    ([{"val_accuracy": NAN}, {"val_accuracy": 0.3}, {"val_accuracy": NAN, "epoch": 2}],
     [{"val_accuracy": NAN}, {"val_accuracy": 0.2}, {"val_accuracy": 0.4, "epoch": 2}], False),  # not there
    ([{"val_accuracy": NAN}, {"val_accuracy": NAN, "epoch": 1}],
     [{"val_accuracy": NAN}, {"val_accuracy": 0.2, "epoch": 1}, {"val_accuracy": NAN, "epoch": 2}], False),
    ([{"val_accuracy": NAN}, {"val_accuracy": NAN, "val_nonfinite_outputs": 1.0, "epoch": 1}],
     [{"val_accuracy": NAN}, {"val_accuracy": NAN, "epoch": 1}], False),  # NaN outputs here
    ([{"val_accuracy": NAN, "epoch": 0}], [{"val_accuracy": NAN, "epoch": 0}], False),  # untrained: step 0
])
def test_nan_metric_across_two_attempts(here, there, fires):
    assert (_across(here, there) is not None) == fires


def test_code_bugs_are_hard_unfixable_and_answered_by_stop_run():
    policies = load_policies(["builtin"])
    for name in CODE_BUGS:
        cls = SYMPTOMS[name]
        assert cls.severity == HARD and not cls.fixable and "Check" in cls.advice, name
        answering = [p for p in policies if p.when.symptom == name]
        assert [a.name for p in answering for a in p.then] == ["stop_run"], name


# -- the engine: named in the first attempt, never relaunched ----------------------------------

def _engine(config: dict | None = None, aliases: dict | None = None, **plan: Any) -> tuple[Engine, list]:
    events: list = []
    eng = Engine(Plan(config=config or {"lr": 0.01, "optimizer": "sgd"}, aliases=aliases or {"optimizer.lr": "lr"},
                      **plan), build_detectors(plan.get("loss_metric", "val_loss")), load_policies(["builtin"]),
                 journal=lambda event, **data: events.append((event, data)))
    return eng, events


def _row(i: int, **extra: float) -> dict[str, float]:
    return {"epoch": i, "val_loss": 2.3 * 0.7 ** i, "val_accuracy": 0.1 + 0.05 * i, "step": 25.0 * i,
            "planned_steps": 375.0, **extra}


BUG_ROWS = {
    "missing_zero_grad": {"stale_grad_steps": 24.0, "stale_grad_checks": 24.0},
    "loss_broadcast": {"loss_broadcast_warnings": 3.0},
    "detached_loss": {"gradless_steps": 25.0, "optimizer_steps": 25.0},
    "nan_metric": {"val_accuracy": NAN},
}


@pytest.mark.parametrize("symptom", CODE_BUGS)
@pytest.mark.parametrize("at", [1, 2])
def test_a_loop_bug_stops_the_run_after_its_first_attempt(symptom, at):
    eng, events = _engine()
    a0 = eng.suggest("t0")
    stopped = None
    for i in range(6):
        extra = BUG_ROWS[symptom] if i == at else {}
        if eng.observe("t0", i, _row(i, **extra)).stop:
            stopped = i
            break
    eng.complete("t0")
    assert stopped == at
    assert a0.outcome == Outcome.SICK and a0.decision.policy == symptom.replace("_", "-")
    assert a0.decision.child is None and a0.decision.finding.symptom == symptom
    assert eng.halted and "not fixable by configuration" in eng.halted and "Check" in eng.halted
    assert eng.suggest("t1") is None and eng.done
    assert [e for e, _ in events].count("attempt_launched") == 1


@pytest.mark.parametrize("error, outcome, symptom", [
    ("Traceback\nRuntimeError: element 0 of tensors does not require grad and does not have a grad_fn",
     Outcome.SICK, "detached_loss"),
    ("Traceback\nValueError: boom", Outcome.ERROR, None),
])
def test_a_trial_that_raised_on_a_graphless_loss_is_named(error, outcome, symptom):
    eng, _ = _engine()
    a0 = eng.suggest("t0")
    eng.observe("t0", 0, _row(0))
    eng.complete("t0", error=error)
    assert a0.outcome == outcome
    assert [f.symptom for f in a0.findings] == ([symptom] if symptom else [])
    assert (eng.halted is not None) == (symptom is not None)
    assert eng.suggest("t1") is None


def test_a_trial_that_raised_before_any_report_is_still_named():
    eng, _ = _engine()
    a0 = eng.suggest("t0")
    eng.complete("t0", error="RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn")
    assert a0.outcome == Outcome.SICK and a0.decision.finding.symptom == "detached_loss"


# -- knob hints -------------------------------------------------------------------------------

def _imbalanced(i: int) -> dict[str, float]:
    """A run whose majority class carries the loss down while the minority classes are lost."""
    return {**_row(i), "val_accuracy": 0.9, "val_balanced_accuracy": 0.3, "label_frac_max": 0.9,
            "label_classes": 10.0}


@pytest.mark.parametrize("aliases, child_patch, hinted", [
    ({"optimizer.lr": "lr"}, None, ["loss.class_weights", "data.sampler"]),
    ({"optimizer.lr": "lr", "loss.class_weights": "class_weights"}, "loss.class_weights", []),
])
def test_a_remedy_skipped_for_want_of_a_knob_names_the_knob(aliases, child_patch, hinted):
    config = {"lr": 0.001, "optimizer": "adam", "class_weights": None}
    eng, events = _engine(config, aliases)
    a0 = eng.suggest("t0")
    for i in range(16):
        if eng.observe("t0", i, _imbalanced(i)).stop:
            break
    eng.complete("t0")
    hints = [h for h in a0.hints if "label-imbalance" in h]
    assert [h.split("`")[1] for h in hints] == hinted
    for hint in hints:
        assert "in `knobs` to let autofix weight the loss (or the sampler)" in hint
        assert "policy 'label-imbalance' on label_imbalance" in hint
    assert [d["hint"] for e, d in events if e == "knob_hint" and "label-imbalance" in d["hint"]] == hints
    if child_patch:
        assert [c.path for c in a0.decision.patch] == [child_patch]
    skipped = [s for e, d in events if e in ("decision", "policy_exhausted") for s in d.get("skipped") or []]
    assert all("map `" in s for s in skipped if "the config has no" in s)
    from autofix.reports.html import render_html
    from autofix.reports.reporting import build_report

    report = build_report(eng, "hints", "/tmp/hints", 1.0, "done")
    assert report.attempts[0].hints == a0.hints
    assert sum(line.strip().startswith("hint ") for line in report.summary().splitlines()) == len(a0.hints)
    page = render_html(report)
    assert all(f"hint: {h}".replace("'", "&#x27;") in page for h in a0.hints) and "judged by" in page


# -- the worker's capture of PyTorch's broadcast warning ----------------------------------------

@pytest.mark.parametrize("output, target, counted, sizes", [
    ((8, 10), (8, 1), 3, (80.0, 8.0)),
    ((8,), (8, 1), 3, (8.0, 8.0)),  # (N,) outputs against (N, 1) targets: broadcast to (N, N)
    ((8, 10), (8, 10), 0, None),
])
def test_the_worker_counts_loss_broadcast_warnings(output, target, counted, sizes):
    from autofix.tune import trial

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        with trial._loop_warnings():
            for _ in range(3):
                F.mse_loss(torch.randn(*output), torch.randn(*target))
            captured = dict(trial._CAPTURED)
        assert trial._CAPTURED == {}
    assert captured.get("loss_broadcast_warnings", 0) == counted
    if sizes:
        assert (captured["loss_broadcast_input_numel"], captured["loss_broadcast_target_numel"]) == sizes
    assert len([w for w in shown if "target size" in str(w.message)]) == (1 if counted else 0)  # shown once


# -- end to end: a user's own Tune trainable on Ray ---------------------------------------------

@pytest.mark.ray
@pytest.mark.parametrize("bug, symptom", [
    ("none", None),
    ("zero_grad", "missing_zero_grad"),
    ("broadcast", "loss_broadcast"),
    ("detached", "detached_loss"),
    ("detached_raises", "detached_loss"),
    ("nan_metric", "nan_metric"),
])
def test_a_custom_loops_bug_is_named_in_its_first_attempt(ray_session, tmp_path, bug, symptom):
    spec = {"name": "loop-bugs", "trainable": "loop_bugs:train_fn", "config": {"bug": bug, "lr": 0.05, "epochs": 4},
            "knobs": {"optimizer.lr": "lr"}, "python_path": [str(FIXTURES)], "ledger": False,
            "budget": {"max_attempts": 3, "wall_clock_s": 300}}
    report = autofix.run(spec, tmp_path / "out")
    launched = [a for a in report.attempts if a.trial_id is not None]
    assert len(launched) == 1, report.summary()
    a0 = report.attempts[0]
    assert report.judged_by and report.judged_by[0].startswith("healthy: val_loss falls")
    if symptom is None:
        assert report.status == "healthy" and report.missing_inputs == [] and a0.findings == []
        return
    assert report.status == "unfixed"
    assert a0.outcome == "sick" and a0.decision["finding"]["symptom"] == symptom and a0.decision["child"] is None
    assert "not fixable by configuration" in report.ended_because and "Check" in report.ended_because


# -- do no harm: a hard stop before the first step proves nothing about training ------------------

def _curve(first: float, last: float, n: int = 8, nan_at: int | None = None, init: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        loss = first + (last - first) * (i / (n - 1)) ** 0.5
        row = {"epoch": i, "val_loss": math.nan if i == nan_at else loss, "step": 25.0 * i, "planned_steps": 175.0,
               "val_accuracy": 0.1 + 0.8 * i / (n - 1), "chance_accuracy": 0.1}
        if init and i == 0:
            row.update(init_loss=first, chance_loss=math.log(10))
        rows.append(row)
    return rows


def _run(eng: Engine, trial: str, rows: list[dict]) -> Any:
    attempt = eng.suggest(trial)
    for i, row in enumerate(rows):
        if eng.observe(trial, i, row).stop:
            break
    eng.complete(trial)
    return attempt


@pytest.mark.parametrize("alone, status, keep", [
    (_curve(500.0, 0.3, init=True), "healthy", "a2"),  # left alone it learns, better than the fix: a false alarm
    (_curve(500.0, 1.5, init=True), "fixed", "a1"),  # left alone it learns less: the fix beats it
    (_curve(500.0, 0.3, nan_at=3, init=True), "fixed", "a1"),  # broken once it trains: nothing to compare
])
def test_a_hard_stop_at_initialization_is_compared_with_the_run_left_alone(alone, status, keep):
    from autofix.rules import settle

    config = {"optimizer": {"name": "sgd", "lr": 0.001}, "init": None}
    eng = Engine(Plan(config=config), build_detectors("val_loss"), load_policies(["builtin"]))
    a0 = _run(eng, "t0", alone[:1])  # the loss at init is 217x ln(10): stopped at step 0
    assert a0.outcome == Outcome.SICK and a0.decision.finding.metric == "init_loss" and a0.decision.child == "a1"
    assert settle.reference_state(a0) == settle.SOFT_STOPPED  # not shown broken: it never trained
    a1 = _run(eng, "t1", _curve(2.3, 0.5))
    assert a1.outcome == Outcome.HEALTHY and eng.queue == ["a2"]  # a0 continued, unpatched
    control = _run(eng, "t2", alone)
    assert control.role == "control" and control.patch == []
    verdict = settle.verdict(eng.attempts, "val_loss", "min")
    assert (verdict.status, verdict.keep) == (status, keep)


def test_a_code_bug_at_initialization_is_broken_at_once():
    from autofix.rules import settle

    eng, _ = _engine()
    a0 = eng.suggest("t0")
    assert eng.observe("t0", 0, {**_row(0), "loss_broadcast_warnings": 1.0}).stop
    eng.complete("t0")
    assert settle.reference_state(a0) == settle.BROKEN and eng.halted


def _done(aid: str, loss: float, role: str = "treatment", **scores: float):
    from autofix.rules.lineage import Attempt

    attempt = Attempt(id=aid, parent=None, config={}, role=role, outcome=Outcome.HEALTHY)
    attempt.history.record(0, {"val_loss": 2.3, "step": 0.0})
    attempt.history.record(1, {"val_loss": loss, "step": 100.0, **scores})
    return attempt


@pytest.mark.parametrize("metric, mode, fix, alone, beats", [
    ("val_loss", "min", {"val_accuracy": 0.635}, {"val_accuracy": 0.815}, False),  # a lower loss, a worse model
    ("val_loss", "min", {"val_accuracy": 0.80}, {"val_accuracy": 0.815}, True),  # within the 0.02 margin
    ("val_loss", "min", {"val_macro_f1": 0.7, "val_accuracy": 0.5}, {"val_macro_f1": 0.6, "val_accuracy": 0.9},
     True),  # macro-F1 decides first (a reweighted model trades accuracy for the minority classes)
    ("val_loss", "min", {}, {"val_accuracy": 0.815}, True),  # a score only one side reports: no guard
    ("val_macro_f1", "max", {"val_macro_f1": 0.9, "val_accuracy": 0.5}, {"val_macro_f1": 0.8, "val_accuracy": 0.9},
     True),  # the watched metric is a score: the user's choice
])
def test_a_fix_must_not_buy_its_loss_with_a_worse_classifier(metric, mode, fix, alone, beats):
    from autofix.rules import settle

    cand, ref = _done("a1", 1.3, **fix), _done("a0", 61.0, **alone)  # the fix's loss is far lower
    compared = settle.compare(cand, ref, metric, mode)
    assert compared["beats"] is beats
    assert ("but its" in compared["why"]) is (not beats)
