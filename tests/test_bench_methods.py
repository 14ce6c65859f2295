"""The benchmark's baselines: knob spaces, PBT mutations, random repair's draw, the judging stopper."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:  # the bench modules import each other as common, spaces, methods.*
    sys.path.insert(0, str(BENCH))

from autofix.actions import ACTIONS  # noqa: E402
from autofix.rules.policy import SHIPPED_POLICIES  # noqa: E402
from autofix.spec.training import TrainingSpec  # noqa: E402

from common import Budget, Case, Judge, is_custom, load_cases, training_config  # noqa: E402
from methods.judging import JudgingStopper  # noqa: E402
from methods.random_repair import KNOB_OF_PATH, policy_actions, random_step  # noqa: E402
from spaces import SPACES, materialize  # noqa: E402

_CASES = {c.name: c for c in load_cases()}


def _base(name: str) -> dict:
    return training_config(_CASES[name], seed=0)


@pytest.mark.parametrize("case", sorted(n for n, c in _CASES.items() if not is_custom(c)))  # searches: managed only
@pytest.mark.parametrize("space", sorted(SPACES))
def test_sampled_configs_are_valid_training_specs(case, space):
    knobs = SPACES[space](_base(case))
    rng = random.Random(1)
    for _ in range(40):
        TrainingSpec.model_validate(knobs.materialize(knobs.sample(rng)))


def test_space_sizes():
    base = _base("sgd_lr_high")
    assert SPACES["small"](base).names == ["lr", "optimizer", "scheduler", "init", "class_weights",
                                           "grad_clip", "normalize"]
    assert len(SPACES["large"](base).names) >= 15


def test_materialize_keeps_user_intent_where_the_knob_allows():
    base = _base("late_warmup_high")  # SGD with momentum 0.9 and a warm-up schedule
    assert base["optimizer"]["kwargs"] == {"momentum": 0.9}
    same = materialize(base, {"optimizer": "sgd", "lr": 0.05})
    assert same["optimizer"] == {**base["optimizer"], "lr": 0.05}
    adam = materialize(base, {"optimizer": "adam"})
    assert adam["optimizer"]["kwargs"] == {}  # Adam takes no momentum
    warm = materialize(base, {"scheduler": "cosine", "warmup_epochs": 3})
    assert warm["scheduler"]["name"] == "warmup_cosine"
    assert warm["scheduler"]["kwargs"]["warmup_epochs"] == 3
    assert materialize(base, {"scheduler": "none"})["scheduler"] is None
    assert base["scheduler"]["name"] == "linear_warmup"  # the base is never mutated
    with pytest.raises(KeyError, match="unknown knob"):
        materialize(base, {"learning_rate": 0.1})


@pytest.mark.parametrize("space", sorted(SPACES))
def test_pbt_mutations_stay_inside_the_space(space):
    from ray.tune.schedulers.pbt import _explore  # the function PBT's exploit step calls

    knobs = SPACES[space](_base("adam_lr_high"))
    by_name = {k.name: k for k in knobs.knobs}
    random.seed(0)
    config = {**knobs.param_space(), "knobs": knobs.sample(random.Random(0))}
    for _ in range(300):
        config, _ops = _explore(config, knobs.mutations(), 0.25, (0.8, 1.2), knobs.clip_config)
        for name, value in config["knobs"].items():
            assert by_name[name].contains(value), (name, value)
        TrainingSpec.model_validate(knobs.materialize(config["knobs"]))


def _shipped_action_specs() -> list[dict]:
    import yaml

    specs = []
    for path in sorted(SHIPPED_POLICIES.glob("*.yaml")):
        for policy in yaml.safe_load(path.read_text())["policies"]:
            specs.extend(policy.get("then") or [])
    return specs


def test_random_repair_draws_only_shipped_policy_actions():
    shipped = _shipped_action_specs()
    actions = policy_actions()
    assert actions and all(type(a) is ACTIONS[a.action] for a in actions)
    assert not any(a.terminal for a in actions)  # stop_run is no repair
    for action in actions:
        fields = action.model_dump(exclude={"times", "start"}, exclude_defaults=True)
        fields["action"] = action.action
        assert any(all(spec.get(k) == v for k, v in fields.items() if k != "action")
                   and spec["action"] == action.action for spec in shipped), action
    assert len({repr(a.model_dump(exclude={"times", "start"})) for a in actions}) == len(actions)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_random_steps_stay_in_the_space_and_valid(space):
    base = _base("dying_relu")
    knobs = set(SPACES[space](base).names)
    actions = policy_actions()
    rng = random.Random(3)
    config, drawn = base, []
    for _ in range(6):
        step = random_step(config, rng, knobs, actions)
        if step is None:
            break
        patched, action = step
        assert action in actions
        TrainingSpec.model_validate(patched)
        config = patched
        drawn.append(action)
    assert drawn
    changed = {KNOB_OF_PATH[p] for p in _changed_paths(base, config)}
    assert changed <= knobs
    if space == "small":
        assert config["architecture"] == base["architecture"]


def _changed_paths(old: dict, new: dict) -> set[str]:
    paths = set()
    for path in KNOB_OF_PATH:
        get = lambda c, path=path: _get(c, path)  # noqa: E731
        if get(old) != get(new):
            paths.add(path)
    return paths


def _get(config: dict, path: str):
    node = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def test_random_step_none_when_nothing_applies():
    base = _base("dying_relu")
    assert random_step(base, random.Random(0), set(), policy_actions()) is None


def _stopper(max_epochs: int = 100) -> JudgingStopper:
    case = Case(name="t", spec="none.yaml", fault="x", kind="config")
    return JudgingStopper(Judge(case, reference_score=0.9), Budget(max_trials=4, max_epochs_total=max_epochs))


def _result(epoch: int, loss: float, acc: float = 0.95) -> dict:
    return {"epoch": epoch, "val_loss": loss, "val_accuracy": acc, "time_this_iter_s": 0.5}


def test_stopper_stops_all_at_first_healthy_report_with_counts():
    stopper = _stopper()
    assert not stopper("a", _result(0, 2.0))
    assert not stopper("b", _result(0, 2.0))
    assert not stopper("a", _result(1, 1.5))  # -25%: not enough
    assert not stopper("b", _result(1, 1.0, acc=0.80))  # loss fine, accuracy 0.1 below reference
    assert not stopper.stop_all()
    assert stopper("b", _result(2, 1.0, acc=0.86))
    assert stopper.stop_all()
    found = stopper.found
    assert (found.trial_id, found.epoch, found.epochs, found.trial_s) == ("b", 2, 3, 2.5)


def test_stopper_baseline_is_the_lineage_epoch_zero():
    stopper = _stopper()
    stopper("a", _result(0, 2.0))
    stopper("a", _result(1, 1.9))
    stopper("c", _result(0, 0.5))  # c's own start is already low...
    stopper.inherit("c", "a")  # ...but PBT cloned a's checkpoint into it
    assert stopper("c", _result(2, 1.0))
    assert not _stopper()("z", _result(3, 0.1))  # no epoch-0 report seen: no baseline, no verdict


def test_stopper_enforces_the_epoch_budget():
    stopper = _stopper(max_epochs=2)
    stopper("a", _result(0, float("nan")))
    stopper("a", _result(1, float("nan")))
    assert not stopper.stop_all()
    stopper("a", _result(2, float("nan")))
    assert stopper.stop_all() and stopper.found is None and stopper.epochs == 2


@pytest.mark.ray
@pytest.mark.parametrize("method", ["random_repair", "pbt"])  # ASHA shares run_experiment
def test_baselines_run_through_tune_within_budget(ray_session, method):
    import importlib

    module = importlib.import_module(f"methods.{method}")
    run = getattr(module, f"run_{method}")
    case = _CASES["healthy_blobs_mlp"]
    budget = Budget(max_trials=2, max_epochs_total=8)
    result = run(case, 0, "small", 0.0, budget)
    assert result.method == method and result.case == case.name
    assert 1 <= result.trials <= budget.max_trials
    assert result.total_epochs <= budget.max_epochs_total + result.trials  # in-flight reports
    if result.healed:
        assert 1 <= result.epochs <= result.total_epochs and result.trial_s > 0
    else:
        assert result.epochs is None and result.total_epochs >= budget.max_epochs_total
    if method == "random_repair":  # the user's config is healthy: the first attempt heals, unpatched
        assert result.healed and result.trials == 1 and result.patch_keys == []


def test_method_result_patch_is_the_healthy_trials_materialized_config():
    from methods.tuning import method_result, run_seed

    case = _CASES["sgd_lr_high"]
    user = _base("sgd_lr_high")
    stopper = _stopper()
    config = {"base": user, "space": "small", "warm": True, "knobs": {"lr": 0.01, "normalize": True}}
    stopper.observe("a", _result(0, 2.0), config)
    stopper.observe("a", _result(1, 0.5), config)
    result = method_result("pbt", case, 0, "small", 0.0, stopper.budget, stopper, user, (3.0, 1, 0))
    assert result.healed and result.epochs == 1 and result.trials == 1 and result.relaunches == 0
    assert result.patch_keys == ["data.normalize", "optimizer.lr"]
    assert run_seed(case, 0) != run_seed(_CASES["sgd_lr_low"], 0) and run_seed(case, 0) == run_seed(case, 0)
