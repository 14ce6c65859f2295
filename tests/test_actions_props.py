"""Invariants of every registered action, over generated configs (hypothesis)."""

from __future__ import annotations

import copy

import pydantic
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import TypeAdapter

from autofix.actions import ACTIONS, ActionSpec, NotApplicable, get_path
from autofix.spec.training import TrainingSpec

SPEC = TypeAdapter(ActionSpec)
# One valid YAML form per action (the fields each needs); every registered action must be here.
FORMS = {
    "add_batch_norm": {},
    "add_dropout": {"p": 0.3},
    "add_scheduler": {"kind": "warmup_cosine", "warmup_epochs": 2},
    "augment": {"rotation": 5},
    "clip_gradients": {"max": 1.0},
    "isolate": {"rung": "simple_model"},
    "rewind": {"lr_factor": 0.5, "clip_factor": 0.3},
    "normalize_inputs": {},
    "reinitialize": {"scheme": "xavier", "pattern": "fc"},
    "reweight_classes": {"method": "sampler"},
    "scale": {"path": "optimizer.lr", "factor": 0.1, "min": 1e-4, "max": 0.5},
    "set": {"path": "batch_size", "value": 32},
    "set_output_activation": {"to": "matching"},
    "stop_run": {},
    "swap_activation": {"to": "elu", "scope": "nonfinite", "init": "matching"},
    "switch_optimizer": {"to": "sgd", "momentum": 0.9},
    "warmup": {"epochs": 2},
    "weight_decay": {"value": 0.01},
}

configs = st.builds(
    lambda lr, bs, opt, wd, sched, norm: TrainingSpec.model_validate({
        "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 64, "num_classes": 10}},
        "data": {"factory": "digits", "normalize": norm},
        "optimizer": {"name": opt, "lr": lr, "kwargs": {"weight_decay": wd} if wd else {}},
        "scheduler": sched, "batch_size": bs,
    }).model_dump(mode="json"),
    st.floats(1e-6, 10, allow_nan=False), st.integers(1, 4096), st.sampled_from(["adam", "sgd", "adamw"]),
    st.sampled_from([0.0, 1e-4, 0.01]),
    st.sampled_from([None, {"name": "step", "kwargs": {"step_size": 3}}]), st.booleans(),
)


def test_every_action_has_a_form():
    assert set(FORMS) == set(ACTIONS)


@pytest.mark.parametrize("name", sorted(FORMS))
@settings(max_examples=40, deadline=None, database=None)
@given(config=configs)
def test_apply_never_mutates_and_yields_a_valid_config(name, config):
    action = SPEC.validate_python({"action": name, **FORMS[name]})
    before = copy.deepcopy(config)
    try:
        patched, changes = action.apply(config)
    except NotApplicable:
        assert config == before
        return
    assert config == before  # the input is untouched
    assert patched is not config
    TrainingSpec.model_validate(patched)  # still a config the harness accepts
    for change in changes:  # managed configs use the policy paths as they are (no knob aliases)
        assert get_path(patched, change.path) == change.new
        assert get_path(before, change.path) == change.old


@pytest.mark.parametrize("name", sorted(set(FORMS) - {"scale", "stop_run", "isolate", "rewind"}))
@settings(max_examples=25, deadline=None, database=None)
@given(config=configs)
def test_applying_twice_equals_once(name, config):
    action = SPEC.validate_python({"action": name, **FORMS[name]})
    try:
        once, _ = action.apply(config)
    except NotApplicable:
        return
    with pytest.raises(NotApplicable):  # nothing left to change
        action.apply(once)


@settings(max_examples=80, deadline=None, database=None)
@given(config=configs, factor=st.floats(1e-3, 1e3).filter(lambda f: abs(f - 1) > 1e-9),
       lo=st.floats(1e-7, 1e-2), span=st.floats(1.0, 1e4))
def test_scale_stays_within_bounds(config, factor, lo, span):
    hi = lo * span
    action = SPEC.validate_python({"action": "scale", "path": "optimizer.lr", "factor": factor, "min": lo, "max": hi})
    try:
        patched, _ = action.apply(config)
    except NotApplicable:
        return
    assert lo <= patched["optimizer"]["lr"] <= hi


def _generated_invalid():
    from invalid import invalid_values
    for name, cls in sorted(ACTIONS.items()):
        for field, value, why in invalid_values(cls):
            yield pytest.param(name, field, value, id=f"{name}-{field}-{why}")


@pytest.mark.parametrize("name, field, value", list(_generated_invalid()))
def test_every_declared_bound_of_every_action_rejects_the_value_past_it(name, field, value):
    """Generated from each action's field constraints (tests/invalid.py), on its valid form."""
    with pytest.raises(pydantic.ValidationError) as info:
        SPEC.validate_python({"action": name, **FORMS[name], field: value})
    assert any(field in err["loc"] for err in info.value.errors())
