"""The sick-zoo benchmark's own pieces: the independent judge, config overrides, patch size,
the zoo specs, epoch padding, the report's target checks, and autofix as a method."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:  # the bench modules import each other as common, methods.*
    sys.path.insert(0, str(BENCH))

from autofix.spec.schema import load_spec  # noqa: E402
from autofix.spec.training import TrainingSpec  # noqa: E402
from autofix.symptoms import SYMPTOMS  # noqa: E402

from common import (  # noqa: E402
    Case,
    Judge,
    apply_overrides,
    case_config,
    changed_keys,
    is_custom,
    load_cases,
    patch_size,
    reference_config,
    training_config,
)

CASES = load_cases()


def _case(**kw) -> Case:
    base = dict(name="t", spec="adam_lr_high.yaml", fault="x", kind="config", judge_metric="val_accuracy")
    return Case(**{**base, **kw})


def _series(losses, scores, metric="val_accuracy"):
    return [{"epoch": i, "val_loss": loss, metric: s} for i, (loss, s) in enumerate(zip(losses, scores, strict=False))]


def test_judge_needs_both_the_loss_drop_and_the_score():
    judge = Judge(_case(), reference_score=0.9)
    # epoch 2: loss fell 40% but accuracy 0.8 < 0.85; epoch 3: both hold
    assert judge.first_healthy(_series([2.0, 1.5, 1.2, 1.0], [0.1, 0.5, 0.8, 0.86])) == 3
    assert judge.first_healthy(_series([2.0, 1.5, 1.41, 1.41], [0.1, 0.9, 0.95, 0.95])) is None  # drop < 30%
    assert judge.first_healthy(_series([2.0, 0.1], [0.1, 0.849])) is None


def test_judge_epoch_zero_is_never_healthy_and_nan_is_not_healthy():
    judge = Judge(_case(), reference_score=0.5)
    assert judge.first_healthy(_series([1.0], [0.99])) is None
    assert judge.first_healthy(_series([1.0, math.nan, 0.5], [0.1, 0.99, 0.9])) == 2
    assert judge.first_healthy(_series([math.inf, 0.5], [0.1, 0.9])) is None
    assert judge.first_healthy([]) is None


def test_judge_baseline_override_for_a_warm_restart():
    # a warm child's own first report is already low: judged against the lineage's epoch 0
    child = _series([0.9, 0.8], [0.9, 0.9])
    assert Judge(_case(), 0.9).first_healthy(child) is None
    assert Judge(_case(), 0.9, baseline=2.3).first_healthy(child) == 0
    assert Judge(_case(), 0.9).first_healthy(child, baseline=2.3) == 0


def test_judge_final_counts_only_the_last_epoch():
    judge = Judge(_case(judge_at="final"), reference_score=0.9, final_epoch=3)
    healthy_early = _series([2.0, 0.5, 0.5, 2.0], [0.1, 0.95, 0.95, 0.1])
    assert judge.first_healthy(healthy_early) is None
    assert judge.first_healthy(_series([2.0, 0.5, 0.5, 0.5], [0.1, 0.95, 0.95, 0.95])) == 3


def test_judge_macro_f1_metric():
    judge = Judge(_case(judge_metric="val_macro_f1"), reference_score=0.8)
    rows = [{"epoch": 0, "val_loss": 0.7, "val_macro_f1": 0.4, "val_accuracy": 0.95},
            {"epoch": 1, "val_loss": 0.2, "val_macro_f1": 0.49, "val_accuracy": 0.95},
            {"epoch": 2, "val_loss": 0.3, "val_macro_f1": 0.78, "val_accuracy": 0.9}]
    assert judge.first_healthy(rows) == 2


def test_apply_overrides_is_pure_and_creates_sections():
    config = {"optimizer": {"name": "adam", "lr": 1.0, "kwargs": {}}, "init": None}
    before = copy.deepcopy(config)
    out = apply_overrides(config, {"optimizer.lr": 1e-3, "optimizer.kwargs.weight_decay": 0.01,
                                   "init.scheme": "kaiming", "scheduler": None})
    assert config == before
    assert out["optimizer"] == {"name": "adam", "lr": 1e-3, "kwargs": {"weight_decay": 0.01}}
    assert out["init"] == {"scheme": "kaiming"} and out["scheduler"] is None
    out["optimizer"]["kwargs"]["x"] = 1
    assert "x" not in config["optimizer"]["kwargs"]


def test_patch_size_counts_intended_keys():
    user = training_config(load_cases(["adam_lr_high"])[0], seed=0)
    assert patch_size(user, user) == 0
    assert changed_keys(user, apply_overrides(user, {"optimizer.lr": 0.01})) == ["optimizer.lr"]
    # a new init section written with its schema defaults is one intended key
    with_init = TrainingSpec.model_validate(apply_overrides(user, {"init.scheme": "kaiming"})).model_dump(mode="json")
    assert changed_keys(user, with_init) == ["init.scheme"]
    # bookkeeping (seed, epochs, padding, warm start) is not a patch
    assert patch_size(user, {**user, "seed": 7, "epochs": 99, "min_epoch_s": 0.25, "warm_start": "/x"}) == 0
    assert patch_size(user, apply_overrides(user, {"optimizer.name": "sgd", "batch_size": 32,
                                                   "data.normalize": True})) == 3


def test_zoo_composition():
    kinds = [c.kind for c in CASES]
    assert sum(k != "healthy" for k in kinds) >= 16 and kinds.count("healthy") >= 3
    assert {"late_onset", "loop_bug", "config"} <= set(kinds)
    assert len({c.name for c in CASES}) == len(CASES)
    for case in CASES:
        assert set(case.expect) <= set(SYMPTOMS), case.name
        assert case.judge_metric in ("val_accuracy", "val_macro_f1")
        assert (case.onset_epoch is not None) == (case.kind == "late_onset"), case.name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_zoo_spec_loads_and_its_reference_validates(case):
    spec = load_spec(case.spec_path)
    if is_custom(case):  # a user's own Tune trainable: its config, autofix only
        assert spec.trainable is not None and case.block == "custom-loops"
        config = case_config(case, seed=3)
        assert config["seed"] == 3 and set(config) == set(spec.config)
        assert (reference_config(case, seed=3) != config) == (case.kind != "healthy")
        return
    assert spec.training is not None
    config = training_config(case, seed=3, pad_s=0.25)
    assert config["seed"] == 3 and config["min_epoch_s"] == 0.25
    reference = reference_config(case, seed=3)
    assert (reference != training_config(case, seed=3)) == (case.kind != "healthy")


def test_epoch_padding_sleeps_the_remainder(monkeypatch):
    from autofix.harness import loop, run_training

    slept = []
    monkeypatch.setattr(loop.time, "sleep", slept.append)
    config = {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3}},
              "data": {"factory": "blobs", "args": {"n_samples": 60}}, "optimizer": {"name": "sgd", "lr": 0.1},
              "epochs": 2, "min_epoch_s": 5.0, "probes": {"enabled": False}}
    run_training(TrainingSpec.model_validate(config).model_dump(mode="json"), lambda m, c: None)
    assert len(slept) == 2 and all(4.0 < s <= 5.0 for s in slept)  # one per training epoch, not epoch 0
    slept.clear()
    run_training(TrainingSpec.model_validate({**config, "min_epoch_s": None}).model_dump(mode="json"),
                 lambda m, c: None)
    assert slept == []


def _row(method, case, kind, healed, epochs, **kw):
    row = dict(method=method, case=case, seed=0, space="small", pad_s=0.0, healed=healed, epochs=epochs,
               trial_s=1.0 if healed else None, wall_s=1.0, trials=1, patch_keys=["optimizer.lr"] if healed else [],
               diagnosis=None, detection_reports=None, relaunches=0, total_epochs=epochs or 12, notes="",
               warm_restarts=0, false_alarm=None, skipped=False, block="native-small", kind=kind, fault="lr_too_high",
               case_epochs=12, budget_epochs=72, diagnosis_correct=None, reference=0.9)
    return {**row, **kw}


def test_report_targets_from_rows():
    from bench_report import markdown, summarize

    rows = [_row("autofix", "a", "config", True, 3, diagnosis="diverging_loss", diagnosis_correct=True,
                 detection_reports=1),
            _row("autofix", "b", "config", True, 5, diagnosis="plateau", diagnosis_correct=False, detection_reports=4),
            _row("random_repair", "a", "config", True, 20), _row("random_repair", "b", "config", False, None),
            _row("autofix", "h", "healthy", True, 2, false_alarm=False, total_epochs=12, status="healthy",
                 kept_score=0.98, left_alone=0.98, claim_ok=True),
            _row("autofix", "s", "healthy", True, 2, false_alarm=True, total_epochs=12, status="healthy",
                 kept_score=0.90, left_alone=0.98, claim_ok=False, block="do-no-harm"),
            _row("random_repair", "h", "healthy", True, 2, total_epochs=2)]
    data = {"runs": rows, "methods": ["autofix", "random_repair"], "quick": True, "date_utc": "d", "cores": 2,
            "wall_s": 1.0, "reference_s": 1.0, "command": "c",
            "blocks": [{"name": "native-small", "pad_s": 0.0, "space": "small", "cases": "all", "seeds": 1},
                       {"name": "do-no-harm", "pad_s": 0.0, "space": "small", "cases": ["s"], "seeds": 1}]}
    summary = summarize(data)
    g = summary["by_block"]["native-small"]
    assert g["autofix"]["fix_rate"] == 1.0 and g["random_repair"]["fix_rate"] == 0.5
    assert g["autofix"]["median_epochs_to_fix"] == 4 and g["random_repair"]["median_epochs_to_fix_censored"] == 46
    verdicts = {t["target"].split(":")[0]: t["met"] for t in summary["targets"]}
    assert verdicts["strictly more fixes than random repair at equal budget"] is True
    assert verdicts["correct diagnosis >= 90% (autofix, fixable + loop-bug cases)"] is False
    assert verdicts["zero healthy controls touched (stopped or relaunched)"] is False  # "s" was stopped
    assert verdicts["no healthy/fixed claim below the run left alone - 0.02 or at chance"] is False  # 0.90 < 0.96
    text = markdown(data, summary)
    assert "| native-small | autofix | 1 | 2/2 |" in text
    assert "| do-no-harm | s | 1 | 1/1 | healthy 1 | 0/1 | -0.08 |" in text


@pytest.mark.parametrize("healed, touched, heads, lr, met", [
    (9, [False, False], [[], []], 0, [True, True, True, True]),
    (8, [False, False], [[], []], 0, [False, True, True, True]),        # 8/10 < 90%
    (9, [False, True], [[], []], 0, [True, False, True, True]),         # a control relaunched
    (9, [False, False], [["a1"], []], 0, [True, True, False, True]),    # a hidden-layer patch changed the head
    (9, [False, False], [[], []], 1, [True, True, True, False]),        # an LR cut answered a NaN at init
])
def test_ported_models_targets_from_rows(healed, touched, heads, lr, met):
    from bench_targets import targets

    rows = [_row("autofix", f"b{i}", "config", i < healed, 300, block="ported-models", head_changed=[],
                 diagnosis_correct=True, lr_at_init=lr if i == 0 else 0) for i in range(10)]
    rows += [_row("autofix", f"h{i}", "healthy", True, 300, block="ported-models", false_alarm=t, head_changed=h,
                  lr_at_init=0) for i, (t, h) in enumerate(zip(touched, heads, strict=False))]
    verdicts = {t["target"]: t["met"] for t in targets(rows, {})}
    names = ["ported models: >= 90% of the broken cases healed (independent judge)",
             "ported models: 0 healthy cases touched", "no patch changes the output head except an output action",
             "no learning-rate action answers a loss non-finite since iteration 0"]
    assert [verdicts[n] for n in names] == met


@pytest.mark.ray
def test_autofix_method_stops_on_the_loop_bug_without_relaunching(ray_session):
    from common import Budget
    from methods.autofix_method import run_autofix

    case = load_cases(["loop_bug_reload"])[0]
    result = run_autofix(case, 0, "small", 0.0, Budget.for_case(case))
    assert result.diagnosis == "no_update" and result.relaunches == 0 and not result.healed
    assert result.detection_reports is not None and result.detection_reports <= 3
