"""Actions: pure, validated config patches recorded as diffs."""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from autofix.actions import ACTIONS, ActionSpec, Change, NotApplicable, get_path, has_path, set_path
from autofix.actions.config import Scale, Set
from autofix.actions.model import SetOutputActivation, SwapActivation
from autofix.actions.optim import ACCEPTS, SwitchOptimizer
from autofix.actions.schedule import AddScheduler

SPEC = pydantic.TypeAdapter(ActionSpec)



def base() -> dict[str, Any]:
    """A managed-training config as the spec dumps it."""
    return {
        "model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
        "optimizer": {"name": "adam", "lr": 1.0, "weight_decay": 0.0},
        "scheduler": None,
        "batch_size": 64,
        "epochs": 15,
        "amp": False,
    }


# -- scale -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, config_patch, path, expected", [
    pytest.param({"path": "optimizer.lr", "factor": 0.1}, {}, "optimizer.lr", 0.1, id="lr-x0.1"),
    pytest.param({"path": "optimizer.lr", "factor": 10}, {}, "optimizer.lr", 10.0, id="lr-x10"),
    pytest.param({"path": "optimizer.lr", "factor": 0.1}, {"optimizer": {"name": "adam", "lr": 3e-4}},
                 "optimizer.lr", 3e-5, id="no-float-noise"),
    pytest.param({"path": "optimizer.lr", "factor": 0.1, "min": 0.5}, {}, "optimizer.lr", 0.5, id="clamped-to-min"),
    pytest.param({"path": "optimizer.lr", "factor": 10, "max": 2.0}, {}, "optimizer.lr", 2.0, id="clamped-to-max"),
    pytest.param({"path": "optimizer.lr", "factor": 0.1, "min": 1e-7, "max": 1.0}, {}, "optimizer.lr", 0.1,
                 id="within-bounds"),
    pytest.param({"path": "batch_size", "factor": 0.5}, {}, "batch_size", 32, id="int-halved"),
    pytest.param({"path": "batch_size", "factor": 3}, {}, "batch_size", 192, id="int-tripled"),
    pytest.param({"path": "batch_size", "factor": 0.3}, {}, "batch_size", 19, id="int-rounded"),
    pytest.param({"path": "batch_size", "factor": 0.1, "min": 16}, {}, "batch_size", 16, id="int-clamped-min"),
    pytest.param({"path": "batch_size", "factor": 4, "max": 100}, {}, "batch_size", 100, id="int-clamped-max"),
    pytest.param({"path": "epochs", "factor": 2}, {}, "epochs", 30, id="top-level-int"),
])
def test_scale(spec, config_patch, path, expected):
    config = {**base(), **config_patch}
    patched, changes = Scale(**spec).apply(config)
    got = get_path(patched, path)
    assert got == pytest.approx(expected) and type(got) is type(get_path(config, path))
    assert changes == [Change(spec["path"], get_path(config, path), got)]


@pytest.mark.parametrize("spec, config_patch, why", [
    pytest.param({"path": "optimizer.lr", "factor": 0.1, "min": 1.0}, {}, "already at its bound", id="at-min"),
    pytest.param({"path": "optimizer.lr", "factor": 10, "max": 1.0}, {}, "already at its bound", id="at-max"),
    pytest.param({"path": "batch_size", "factor": 0.5, "min": 64}, {}, "already at its bound", id="int-at-min"),
    pytest.param({"path": "batch_size", "factor": 1.001}, {}, "already at its bound", id="int-rounds-back"),
    pytest.param({"path": "optimizer.name", "factor": 0.1}, {}, "not a number", id="string"),
    pytest.param({"path": "amp", "factor": 2}, {}, "not a number", id="bool"),
    pytest.param({"path": "scheduler", "factor": 2}, {}, "not a number", id="null"),
    pytest.param({"path": "model", "factor": 2}, {}, "not a number", id="mapping"),
    pytest.param({"path": "optimizer.momentum", "factor": 0.5}, {}, "knobs", id="missing-leaf"),
    pytest.param({"path": "trainer.lr", "factor": 0.5}, {}, "knobs", id="missing-parent"),
    pytest.param({"path": "optimizer.lr.value", "factor": 0.5}, {}, "knobs", id="path-through-a-number"),
])
def test_scale_not_applicable(spec, config_patch, why):
    config = {**base(), **config_patch}
    with pytest.raises(NotApplicable, match=why):
        Scale(**spec).apply(config)


def test_missing_path_message_names_the_path_and_knobs():
    with pytest.raises(NotApplicable) as info:
        Scale(path="optimizer.momentum", factor=0.5).apply(base())
    assert str(info.value) == "the config has no 'optimizer.momentum'; map it under 'knobs' in the spec"


@pytest.mark.parametrize("config, aliases, real, old, new", [
    pytest.param({"lr": 0.5, "epochs": 3}, {"optimizer.lr": "lr"}, "lr", 0.5, 0.05, id="flat-custom-trainable"),
    pytest.param({"opt": {"learning_rate": 2.0}}, {"optimizer.lr": "opt.learning_rate"}, "opt.learning_rate",
                 2.0, 0.2, id="nested-custom-key"),
    pytest.param(base(), {"batch_size": "bs"}, "optimizer.lr", 1.0, 0.1, id="unrelated-alias-ignored"),
])
def test_scale_through_aliases(config, aliases, real, old, new):
    before = copy.deepcopy(config)
    patched, changes = Scale(path="optimizer.lr", factor=0.1).apply(config, aliases)
    assert get_path(patched, real) == pytest.approx(new)
    assert changes == [Change("optimizer.lr", old, get_path(patched, real))]
    if real != "optimizer.lr":
        assert get_path(patched, "optimizer.lr", None) is None, "the alias target is patched, not the policy path"
    assert config == before


def test_alias_to_missing_key_explains_both_names():
    with pytest.raises(NotApplicable) as info:
        Scale(path="optimizer.lr", factor=0.1).apply({"learning_rate": 1.0}, {"optimizer.lr": "lr"})
    assert "'lr'" in str(info.value) and "for 'optimizer.lr'" in str(info.value) and "knobs" in str(info.value)


@pytest.mark.parametrize("config, spec", [
    pytest.param({"lr": 0.1}, {"path": "lr", "factor": 10, "max": 0.123456789}, id="float-above-max"),
    pytest.param({"lr": 0.1}, {"path": "lr", "factor": 0.1, "min": 0.0987654321}, id="float-below-min"),
    pytest.param({"bs": 1}, {"path": "bs", "factor": 0.1, "min": 0.5}, id="int-below-min"),
])
def test_scale_result_respects_bounds_with_precise_bounds(config, spec):
    action = Scale(**spec)
    patched, _ = action.apply(config)
    value = get_path(patched, spec["path"])
    assert (action.min is None or value >= action.min) and (action.max is None or value <= action.max)


# -- set -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, value", [
    ("optimizer.name", "sgd"),
    ("optimizer.lr", 0.01),
    ("scheduler", {"name": "step", "kwargs": {"step_size": 3}}),
    ("batch_size", None),
    ("amp", True),
    ("model.args.num_classes", 3),
])
def test_set(path, value):
    config = base()
    patched, changes = Set(path=path, value=value).apply(config)
    assert get_path(patched, path) == value
    assert changes == [Change(path, get_path(config, path), value)]
    assert {k: v for k, v in patched.items() if k != path.split(".")[0]} == \
        {k: v for k, v in config.items() if k != path.split(".")[0]}


@pytest.mark.parametrize("path, value, why", [
    ("optimizer.name", "adam", "would change nothing"),
    ("scheduler", None, "would change nothing"),
    pytest.param("optimizer.betas", [0.9, 0.99], "knobs"),
])
def test_set_not_applicable(path, value, why):
    with pytest.raises(NotApplicable, match=why):
        Set(path=path, value=value).apply(base())


def test_set_through_alias():
    patched, changes = Set(path="optimizer.name", value="sgd").apply({"opt": "adam"}, {"optimizer.name": "opt"})
    assert patched == {"opt": "sgd"}
    assert [c.to_dict() for c in changes] == [{"path": "optimizer.name", "from": "adam", "to": "sgd"}]


# -- add_scheduler ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ({"kind": "reduce_on_plateau"},
     {"name": "reduce_on_plateau", "kwargs": {"factor": 0.2, "patience": 5, "min_lr": 1e-3}}),
    ({"kind": "reduce_on_plateau", "factor": 0.5, "patience": 0},
     {"name": "reduce_on_plateau", "kwargs": {"factor": 0.5, "patience": 0, "min_lr": 1e-3}}),
    ({"kind": "step"}, {"name": "step", "kwargs": {"step_size": 5, "gamma": 0.5}}),
    ({"kind": "step", "step_size": 2, "gamma": 0.1}, {"name": "step", "kwargs": {"step_size": 2, "gamma": 0.1}}),
    ({"kind": "exponential"}, {"name": "exponential", "kwargs": {"gamma": 0.9}}),
    ({"kind": "exponential", "gamma": 0.95}, {"name": "exponential", "kwargs": {"gamma": 0.95}}),
    ({"kind": "cosine"}, {"name": "cosine", "kwargs": {"T_max": 20}}),
    ({"kind": "cosine", "t_max": 7}, {"name": "cosine", "kwargs": {"T_max": 7}}),
])
def test_add_scheduler(spec, expected):
    config = base()
    patched, changes = AddScheduler(**spec).apply(config)
    assert patched["scheduler"] == expected
    assert [c.to_dict() for c in changes] == [{"path": "scheduler", "from": None, "to": expected}]
    assert config["scheduler"] is None


@pytest.mark.parametrize("config, aliases, why", [
    pytest.param({**base(), "scheduler": {"name": "reduce_on_plateau",
                                          "kwargs": {"factor": 0.2, "patience": 5, "min_lr": 1e-3}}},
                 {}, "would change nothing", id="same-scheduler"),
    pytest.param({"lr": 0.1}, {}, "knobs", id="no-scheduler-key"),
    pytest.param({"lr": 0.1}, {"scheduler": "sched"}, "for 'scheduler'", id="alias-target-missing"),
])
def test_add_scheduler_not_applicable(config, aliases, why):
    with pytest.raises(NotApplicable, match=why):
        AddScheduler(kind="reduce_on_plateau").apply(config, aliases)


@pytest.mark.parametrize("config, aliases, fields, min_lr", [
    pytest.param(base(), {}, {}, 1e-3, id="lr-1"),
    pytest.param({**base(), "optimizer": {"name": "adam", "lr": 3e-4}}, {}, {}, 3e-7, id="lr-3e-4"),
    pytest.param({**base(), "optimizer": {"name": "sgd", "lr": 2}}, {}, {}, 2e-3, id="int-lr"),
    pytest.param(base(), {}, {"min_lr_share": 0.01}, 1e-2, id="own-share"),
    pytest.param({"lr": 0.5, "scheduler": None}, {"optimizer.lr": "lr"}, {}, 5e-4, id="lr-through-alias"),
    pytest.param({"epochs": 3, "scheduler": None}, {}, {}, None, id="no-lr"),
    pytest.param({**base(), "optimizer": {"name": "adam", "lr": "auto"}}, {}, {}, None, id="lr-not-a-number"),
    pytest.param({**base(), "optimizer": {"name": "adam", "lr": 0.0}}, {}, {}, None, id="lr-zero"),
    pytest.param({"lr": {"grid_search": [0.1, 0.01]}, "scheduler": None}, {"optimizer.lr": "lr"}, {}, None,
                 id="lr-search-space"),
])
def test_reduce_on_plateau_floor_is_a_share_of_the_configs_lr(config, aliases, fields, min_lr):
    patched, _ = AddScheduler(kind="reduce_on_plateau", **fields).apply(config, aliases)
    kwargs = patched["scheduler"]["kwargs"]
    assert kwargs.get("min_lr") == (None if min_lr is None else pytest.approx(min_lr, rel=1e-12))
    assert (kwargs["factor"], kwargs["patience"]) == (0.2, 5)


def test_a_plateau_schedule_without_a_floor_gets_one():
    old = {"name": "reduce_on_plateau", "kwargs": {"factor": 0.2, "patience": 5}}
    patched, changes = AddScheduler(kind="reduce_on_plateau").apply({**base(), "scheduler": old})
    assert [c.to_dict() for c in changes] == [{"path": "scheduler", "from": old, "to": patched["scheduler"]}]
    assert patched["scheduler"]["kwargs"] == {**old["kwargs"], "min_lr": 1e-3}


def test_add_scheduler_replaces_another():
    config = {**base(), "scheduler": {"name": "step", "kwargs": {"step_size": 5, "gamma": 0.5}}}
    patched, changes = AddScheduler(kind="cosine").apply(config)
    assert changes[0].old == {"name": "step", "kwargs": {"step_size": 5, "gamma": 0.5}}
    assert patched["scheduler"] == {"name": "cosine", "kwargs": {"T_max": 20}}


# -- switch_optimizer ------------------------------------------------------------------------

@pytest.mark.parametrize("config, aliases, to", [
    pytest.param({"optimizer": {"name": "adam", "lr": 1e-3}}, {}, "adam", id="adam"),
    pytest.param({"optimizer": {"name": "Adam", "lr": 1e-3}}, {}, "adam", id="capitalised"),
    pytest.param({"optimizer": {"name": "SGD", "lr": 0.1, "kwargs": {"momentum": 0.9}}}, {}, "sgd", id="upper"),
    pytest.param({"opt": "AdamW"}, {"optimizer": "opt"}, "adamw", id="custom-name-key"),
])
def test_switch_to_the_optimizer_in_use_is_not_applicable(config, aliases, to):
    before = copy.deepcopy(config)
    with pytest.raises(NotApplicable, match=f"already is {to}"):
        SwitchOptimizer(to=to).apply(config, aliases)
    assert config == before


@pytest.mark.parametrize("config, aliases, action, real, expected", [
    pytest.param({"optimizer": {"name": "Adam", "lr": 1.0, "kwargs": {"weight_decay": 0.01, "amsgrad": True,
                                                                     "betas": [0.8, 0.9]}}}, {},
                 {"to": "sgd", "momentum": 0.9}, "optimizer",
                 {"name": "sgd", "lr": 1.0, "kwargs": {"weight_decay": 0.01, "momentum": 0.9}}, id="adam-to-sgd"),
    pytest.param({"optimizer": {"name": "SGD", "lr": 0.5, "kwargs": {"momentum": 0.9, "nesterov": True}}}, {},
                 {"to": "adam"}, "optimizer", {"name": "adam", "lr": 0.5, "kwargs": {}}, id="sgd-to-adam-keeps-lr"),
    pytest.param({"optimizer": {"name": "SGD", "lr": 0.5, "kwargs": {"momentum": 0.9}}}, {},
                 {"to": "rmsprop"}, "optimizer", {"name": "rmsprop", "lr": 0.5, "kwargs": {"momentum": 0.9}},
                 id="sgd-to-rmsprop-keeps-momentum"),
    pytest.param({"optimizer": {"name": "adam", "lr": 2e-3, "kwargs": {"eps": 1e-7, "betas": [0.9, 0.99]}}}, {},
                 {"to": "adamw"}, "optimizer",
                 {"name": "adamw", "lr": 2e-3, "kwargs": {"eps": 1e-7, "betas": [0.9, 0.99]}}, id="adam-to-adamw"),
    pytest.param({"optimizer": {"name": "sgd", "lr": 1e-5, "kwargs": {"weight_decay": 1e-4}}}, {},
                 {"to": "adam", "lr": 1e-3}, "optimizer",
                 {"name": "adam", "lr": 1e-3, "kwargs": {"weight_decay": 1e-4}}, id="the-policy-sets-the-lr"),
    pytest.param({"opt": "sgd"}, {"optimizer": "opt"}, {"to": "adam"}, "opt", "adam", id="custom-name-key"),
])
def test_switch_to_another_optimizer_keeps_the_rate_and_the_kwargs_it_accepts(config, aliases, action, real,
                                                                              expected):
    patched, changes = SwitchOptimizer(**action).apply(config, aliases)
    assert get_path(patched, real) == expected
    assert changes == [Change("optimizer", get_path(config, real), expected)]


@pytest.mark.parametrize("name", sorted(ACCEPTS))
def test_the_kwargs_a_switch_keeps_are_those_torch_accepts(name):
    from autofix.harness.builders import OPTIMIZERS

    accepted = set(inspect.signature(OPTIMIZERS[name]).parameters) - {"params", "lr"}
    assert ACCEPTS[name] == accepted  # none rejected by the new optimiser, none of the user's dropped


# -- swap_activation and set_output_activation --------------------------------------------------

@pytest.mark.parametrize("action, expected", [
    ({"to": "selu"}, {"architecture.activation": "selu"}),
    ({"to": "selu", "init": "matching"}, {"architecture.activation": "selu", "init.scheme": "lecun_normal"}),
    ({"to": "tanh", "init": "matching"}, {"architecture.activation": "tanh", "init.scheme": "xavier"}),
    ({"to": "relu", "init": "matching", "scope": "nonfinite"},
     {"architecture.activation": "relu", "architecture.activation_scope": "nonfinite", "init.scheme": "kaiming"}),
    ({"to": "elu", "init": "orthogonal"}, {"architecture.activation": "elu", "init.scheme": "orthogonal"}),
])
def test_swap_activation_patches_the_activation_and_its_matching_init(action, expected):
    config = {"architecture": {"activation": None, "activation_scope": "hidden"}, "init": None}
    patched, changes = SwapActivation(**action).apply(config)
    assert {k: get_path(patched, k) for k in expected} == expected
    assert get_path(patched, "init.head", False) is False  # a hidden-layer remedy keeps the head's weights
    assert [c.path for c in changes] == list(dict.fromkeys(k.rsplit(".", 1)[0] if k.startswith("init") else k
                                                           for k in expected))


@pytest.mark.parametrize("loss, to, expected", [
    ({"name": "categorical_crossentropy"}, "matching", "softmax"),
    ({"name": "nll"}, "matching", "log_softmax"),
    ({"name": "cross_entropy"}, "matching", "identity"),
    ({"name": "bce_with_logits"}, "matching", "identity"),
    ({"name": "pkg.losses:focal", "expects": "probabilities"}, "matching", "softmax"),
    ({"name": "nll"}, "sigmoid", "sigmoid"),
])
def test_set_output_activation_matches_the_loss(loss, to, expected):
    patched, changes = SetOutputActivation(to=to).apply({"loss": loss, "architecture": {"output_activation": None}})
    assert patched["architecture"]["output_activation"] == expected
    assert changes == [Change("architecture.output_activation", None, expected)]


@pytest.mark.parametrize("loss", [{"name": "mse"}, {"name": "pkg.losses:mine"}])
def test_set_output_activation_needs_a_loss_that_says_what_it_takes(loss):
    with pytest.raises(NotApplicable, match="says nothing of its inputs"):
        SetOutputActivation().apply({"loss": loss, "architecture": {"output_activation": None}})


# -- validation of action specs (the YAML form) ----------------------------------------------

@pytest.mark.parametrize("data, expected_type", [
    ({"action": "scale", "path": "optimizer.lr", "factor": 0.1}, Scale),
    ({"action": "set", "path": "optimizer.name", "value": "sgd"}, Set),
    ({"action": "set", "path": "scheduler", "value": None}, Set),
    ({"action": "add_scheduler", "kind": "step", "times": 2, "start": "warm"}, AddScheduler),
])
def test_valid_specs(data, expected_type):
    action = SPEC.validate_python(data)
    assert type(action) is expected_type
    assert ACTIONS[data["action"]] is expected_type


@pytest.mark.parametrize("data, message", [
    pytest.param({"action": "explode"}, ", ".join(f"'{n}'" for n in sorted(ACTIONS)), id="unknown-action"),
    pytest.param({"path": "lr", "factor": 0.1}, "action", id="no-action-key"),
    pytest.param({"action": "scale", "path": "lr", "factor": 1}, "other than 1", id="factor-1"),
    pytest.param({"action": "scale", "path": "lr", "factor": 0}, "greater than 0", id="factor-0"),
    pytest.param({"action": "scale", "path": "lr", "factor": -0.5}, "greater than 0", id="factor-negative"),
    pytest.param({"action": "scale", "path": "lr", "factor": math.inf}, "finite", id="factor-inf"),
    pytest.param({"action": "scale", "path": "lr", "factor": 0.1, "min": 2, "max": 1}, "min (2.0) is above max (1.0)",
                 id="min-above-max"),
    pytest.param({"action": "scale", "path": "lr"}, "factor", id="factor-missing"),
    pytest.param({"action": "scale", "path": "", "factor": 0.1}, "at least 1 character", id="empty-path"),
    pytest.param({"action": "scale", "path": "lr", "factor": 0.1, "colour": "red"}, "colour", id="unknown-key"),
    pytest.param({"action": "scale", "path": "lr", "factor": 0.1, "times": 0}, "times", id="times-0"),
    pytest.param({"action": "scale", "path": "lr", "factor": 0.1, "times": 101}, "times", id="times-101"),
    pytest.param({"action": "scale", "path": "lr", "factor": 0.1, "start": "hot"}, "'cold' or 'warm'", id="bad-start"),
    pytest.param({"action": "set", "path": "lr"}, "value", id="set-without-value"),
    pytest.param({"action": "add_scheduler"}, "kind", id="scheduler-without-kind"),
    pytest.param({"action": "add_scheduler", "kind": "linear"}, "'reduce_on_plateau', 'step' or 'warmup_cosine'",
                 id="unknown-scheduler-kind"),
    pytest.param({"action": "add_scheduler", "kind": "step", "gamma": 1.0}, "less than 1", id="gamma-1"),
    pytest.param({"action": "add_scheduler", "kind": "reduce_on_plateau", "patience": -1}, "patience",
                 id="negative-patience"),
])
def test_invalid_specs(data, message):
    with pytest.raises(pydantic.ValidationError) as info:
        SPEC.validate_python(data)
    assert message in str(info.value)


@pytest.mark.parametrize("action, text", [
    (Scale(path="optimizer.lr", factor=0.1, min=1e-7), "scale(path=optimizer.lr, factor=0.1, min=1e-07)"),
    (Set(path="optimizer.name", value="sgd"), "set(path=optimizer.name, value=sgd)"),
    (AddScheduler(kind="step", gamma=0.1), "add_scheduler(kind=step, path=scheduler, gamma=0.1)"),
])
def test_describe(action, text):
    assert action.describe() == text


@pytest.mark.parametrize("change, data", [
    (Change("optimizer.lr", 1.0, 0.1), {"path": "optimizer.lr", "from": 1.0, "to": 0.1}),
    (Change("scheduler", None, {"name": "cosine"}), {"path": "scheduler", "from": None, "to": {"name": "cosine"}}),
])
def test_change_round_trip(change, data):
    assert change.to_dict() == data
    assert Change.from_dict(data) == change


@pytest.mark.parametrize("config, path, expected", [
    ({"a": {"b": 1}}, "a.b", True),
    ({"a": {"b": None}}, "a.b", True),
    ({"a": 1}, "a", True),
    pytest.param({"a": {"b": 1}}, "a.c", False),
    pytest.param({"a": 1}, "a.b", False),
    pytest.param({}, "x", False),
])
def test_has_path(config, path, expected):
    assert has_path(config, path) is expected


@pytest.mark.parametrize("config, path, default, expected", [
    ({"a": {"b": 1}}, "a.b", None, 1),
    ({"a": {"b": 1}}, "a.c", None, None),
    ({"a": 1}, "a.b", "d", "d"),
])
def test_get_path(config, path, default, expected):
    assert get_path(config, path, default) == expected


@pytest.mark.parametrize("path, value, expected", [
    ("a.b.c", 1, {"a": {"b": {"c": 1}}, "x": 0}),
    ("x", 2, {"x": 2}),
    ("x.y", 3, {"x": {"y": 3}}),
])
def test_set_path_creates_parents(path, value, expected):
    config = {"x": 0}
    set_path(config, path, value)
    assert config == expected


# -- properties ------------------------------------------------------------------------------

nice_floats = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 999), st.integers(-8, 3))
leaf = st.one_of(nice_floats, st.integers(1, 4096), st.sampled_from(["adam", "sgd", None, True]))
configs = st.fixed_dictionaries(
    {"optimizer": st.fixed_dictionaries({"name": st.sampled_from(["adam", "sgd", "AdamW"]), "lr": nice_floats}),
     "scheduler": st.one_of(st.none(), st.fixed_dictionaries({"name": st.just("step"), "kwargs": st.just({})})),
     "batch_size": st.integers(1, 4096)},
    optional={"extra": st.dictionaries(st.sampled_from(["a", "b", "c"]), leaf, max_size=3)},
)
factors = nice_floats.filter(lambda f: f != 1)


@st.composite
def bounded_scales(draw):
    path = draw(st.sampled_from(["optimizer.lr", "batch_size"]))
    lo = draw(st.one_of(st.none(), nice_floats))
    hi = draw(st.one_of(st.none(), nice_floats))
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    if path == "batch_size":  # integer values need integer bounds to be representable
        lo = None if lo is None else float(math.ceil(lo))
        hi = None if hi is None else float(max(math.floor(hi), lo or 0))
    return Scale(path=path, factor=draw(factors), min=lo, max=hi)


actions = st.one_of(
    bounded_scales(),
    st.builds(Set, path=st.sampled_from(["optimizer.lr", "optimizer.name", "scheduler", "batch_size"]), value=leaf),
    st.builds(AddScheduler, kind=st.sampled_from(["cosine", "exponential", "reduce_on_plateau", "step"])),
)
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(config=configs, action=actions)
def test_apply_never_mutates_its_input(config, action):
    before = copy.deepcopy(config)
    try:
        patched, _changes = action.apply(config)
    except NotApplicable:
        assert config == before
        return
    assert config == before
    assert patched is not config
    assert patched != config


@FAST
@given(config=configs, action=bounded_scales())
def test_scale_stays_within_bounds(config, action):
    try:
        patched, _ = action.apply(config)
    except NotApplicable:
        return
    value = get_path(patched, action.path)
    if action.min is not None:
        assert value >= action.min
    if action.max is not None:
        assert value <= action.max


@FAST
@given(config=configs, path=st.sampled_from(["optimizer.lr", "optimizer.name", "scheduler", "batch_size"]), value=leaf)
def test_set_is_idempotent(config, path, value):
    action = Set(path=path, value=value)
    try:
        once, _ = action.apply(config)
    except NotApplicable:
        once = config  # already that value
    with pytest.raises(NotApplicable, match="would change nothing"):
        action.apply(once)
    assert get_path(once, path) == value


@FAST
@given(config=configs, action=actions)
def test_changes_record_from_and_to(config, action):
    try:
        patched, changes = action.apply(config)
    except NotApplicable:
        return
    assert len(changes) == 1
    (change,) = changes
    assert change.path == action.path
    assert change.old == get_path(config, action.path)
    assert change.new == get_path(patched, action.path)
    assert change.old != change.new
    assert change.to_dict() == {"path": action.path, "from": change.old, "to": change.new}
