"""`autofix schema` validates the shipped files; `autofix explain` reads the registries."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from autofix.actions import ACTIONS
from autofix.cli import main
from autofix.rules.policy import SHIPPED_POLICIES
from autofix.symptoms import SYMPTOMS

from conftest import EXAMPLES


def _schema(kind, capsys):
    assert main(["schema", kind]) == 0
    return json.loads(capsys.readouterr().out)


def test_spec_schema_validates_every_shipped_example(capsys):
    schema = _schema("spec", capsys)
    examples = [*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*/*.yaml")]
    assert len(examples) >= 10
    for path in examples:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_spec_schema_rejects_what_the_loader_rejects(capsys):
    schema = _schema("spec", capsys)
    spec = yaml.safe_load((EXAMPLES / "digits_healthy.yaml").read_text())
    spec["training"]["colour"] = "blue"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema)
    spec["training"].pop("colour")
    spec["budget"]["max_attempts"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema)


def test_policy_schema_validates_every_shipped_policy_file(capsys):
    schema = _schema("policy", capsys)
    for path in SHIPPED_POLICIES.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "policies": [{"name": "x", "when": {"symptom": "plateau"},
                                                         "then": [{"action": "explode"}]}]}, schema)


@pytest.mark.parametrize("name", sorted(SYMPTOMS) + sorted(ACTIONS) + ["plateau-high-lr"])
def test_explain_knows_every_name(name, capsys):
    assert main(["explain", name]) == 0
    out = capsys.readouterr().out
    assert name in out.splitlines()[0]


def test_explain_a_symptom_shows_defaults_sources_and_policies(capsys):
    assert main(["explain", "vanishing_gradients"]) == 0
    out = capsys.readouterr().out
    assert "max_ratio: float = 0.001" in out and "AUTOTRAINER" in out
    assert "answered by: vanishing-gradients" in out


def test_explain_unknown_lists_what_exists(capsys):
    assert main(["explain", "plateu"]) == 2
    err = capsys.readouterr().err
    assert "plateau" in err and "reweight_classes" in err


# A name that is both a symptom and a policy: `policies explain` shows the policy, `explain` the
# symptom; each says the other exists.
@pytest.mark.parametrize("argv, first, also", [
    (["policies", "explain", "overfitting"], "policy overfitting  (", "autofix explain overfitting"),
    (["explain", "overfitting"], "symptom overfitting: ", "autofix policies explain overfitting"),
    (["policies", "explain", "plateau-high-lr"], "policy plateau-high-lr  (", None),
    (["policies", "explain", "plateau"], "symptom plateau: ", None),  # no policy of that name
])
def test_policies_explain_prefers_the_policy_of_a_shared_name(capsys, argv, first, also):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(first), out.splitlines()[0]
    assert (also in out) if also else ("is also a" not in out)
