"""A policy's ``where`` keys checked against the catalogue, the detectors' evidence and the spec."""

from __future__ import annotations

import textwrap

import pytest

from autofix.cli import main
from autofix.errors import InputError
from autofix.rules.policy import load_policies
from autofix.rules.policypaths import Known, schema_has_path
from autofix.spec.training import TrainingSpec

from conftest import EXAMPLES

MANAGED = Known(managed=True)
CUSTOM = Known(managed=False, config={"lr": 0.1, "opt": {"name": "adam"}}, aliases={"optimizer.lr": "lr"})


@pytest.mark.parametrize("path, known", [
    ("optimizer.lr", True), ("optimizer.name", True), ("optimizer.kwargs.weight_decay", True),
    ("model.args.hidden", True), ("architecture.activation", True), ("scheduler.name", True),
    ("init.scheme", True), ("loss.expects", True), ("optimiser.lr", False), ("optimizer.rate", False),
    ("optimizer.lr.value", False),  # nothing lies below a number
    ("batch_size", True), ("batchsize", False),
])
def test_schema_has_path(path, known):
    assert schema_has_path(TrainingSpec, path) is known


def _where(tmp_path, symptom: str, key: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        policies:
          - name: mine
            when:
              symptom: {symptom}
              where:
                {key}: {{gt: 0}}
            then:
              - {{action: scale, path: optimizer.lr, factor: 0.1}}
        """))
    return str(path)


@pytest.mark.parametrize("symptom, key, known, outcome", [
    ("dying_relu", "evidence.dead_frac_max", None, "ok"),
    ("dying_relu", "evidence.dead_frac", None, "error"),
    ("dying_relu", "evidence.dead_frac", CUSTOM, "error"),
    ("overfitting", "metrics.input_ndim", MANAGED, "ok"),
    ("overfitting", "metrics.dead_frac/features.0", MANAGED, "ok"),
    ("overfitting", "metrics.input_dims", MANAGED, "error"),
    ("overfitting", "metrics.input_dims", None, "warning"),
    ("overfitting", "metrics.my_f1", CUSTOM, "warning"),  # a custom trainable reports its own
    ("plateau", "optimizer.lr", MANAGED, "ok"),
    ("plateau", "optimiser.lr", MANAGED, "error"),
    ("plateau", "optimiser.lr", None, "warning"),
    ("plateau", "opt.name", CUSTOM, "ok"),  # a key of the custom config
    ("plateau", "optimizer.name", CUSTOM, "ok"),  # autofix's own vocabulary: never matches there
    ("plateau", "opt.nmae", CUSTOM, "error"),
])
def test_where_keys(tmp_path, symptom, key, known, outcome):
    path = _where(tmp_path, symptom, key)
    if outcome == "error":
        with pytest.raises(InputError) as err:
            load_policies([path], known)
        assert str(err.value.problems[0]).startswith(f"{path}:7: policy 'mine': when.where.{key}: ")
        return
    policies = load_policies([path], known)
    assert [str(w).split(": ", 1)[0] for w in policies.warnings] == ([f"{path}:7"] if outcome == "warning" else [])


def test_the_shipped_policies_pass_for_managed_and_custom_specs():
    for known in (None, MANAGED, CUSTOM):
        assert load_policies(["builtin"], known).warnings == []


def test_policies_check_warns_without_a_spec_and_refuses_with_one(tmp_path, capsys):
    path = _where(tmp_path, "plateau", "optimiser.lr")
    assert main(["policies", "check", path]) == 0
    captured = capsys.readouterr()
    assert f"autofix: warning: {path}:7: policy 'mine': when.where.optimiser.lr: 'optimiser.lr' is not" in captured.err
    assert "1 warning(s)" in captured.out
    assert main(["policies", "check", path, "--spec", str(EXAMPLES / "digits_lr_too_high.yaml")]) == 2
    assert f"{path}:7: policy 'mine': when.where.optimiser.lr" in capsys.readouterr().err


@pytest.mark.parametrize("path, known, outcome", [
    ("optimizer.lr", MANAGED, "ok"),
    ("optimiser.lr", MANAGED, "error"),
    ("optimiser.lr", None, "warning"),
    ("lr", CUSTOM, "ok"),  # the custom config's own key
    ("opt.lr", CUSTOM, "error"),
])
def test_the_path_an_action_patches_is_checked_too(tmp_path, path, known, outcome):
    file = tmp_path / "p.yaml"
    file.write_text(textwrap.dedent(f"""\
        version: 1
        policies:
          - name: mine
            when: {{symptom: plateau}}
            then:
              - {{action: scale, path: {path}, factor: 0.1}}
        """))
    if outcome == "error":
        with pytest.raises(InputError) as err:
            load_policies([str(file)], known)
        assert str(err.value.problems[0]).startswith(f"{file}:6: policy 'mine': then[0].path: '{path}'")
        return
    warnings = load_policies([str(file)], known).warnings
    assert [str(w).split(": ", 1)[0] for w in warnings] == ([f"{file}:6"] if outcome == "warning" else [])
