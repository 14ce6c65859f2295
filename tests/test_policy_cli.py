"""The shipped policies' own unit tests, the policy test runner, and the policy/ledger CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from autofix.cli import main
from autofix.ledger import Ledger
from autofix.policy import SHIPPED_POLICIES, load_policies
from autofix.policytest import parse_series, run_policy_tests

TESTS = SHIPPED_POLICIES / "tests"


def test_every_shipped_policy_test_passes():
    count, failed, failures = run_policy_tests([TESTS])
    assert failures == [] and failed == 0
    assert count >= 20


def test_every_shipped_policy_has_a_test():
    tested = set()
    for path in TESTS.glob("*.test.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            if test["expect"]:
                tested.add(test["expect"]["policy"])
    assert {p.name for p in load_policies(["builtin"])} <= tested


@pytest.mark.parametrize("text, expected", [
    ("1 2.5 nan", [1.0, 2.5, float("nan")]),
    ("0x3 _ 1", [0.0, 0.0, 0.0, None, 1.0]),
    ("inf -inf", [float("inf"), float("-inf")]),
])
def test_parse_series(text, expected):
    got = parse_series(text)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g is None and e is None) or (g != g and e != e) or g == e


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_wrong_expectation_fails_with_the_difference(tmp_path, capsys):
    path = _write(tmp_path, "mine.test.yaml", """\
        version: 1
        tests:
          - name: wrong patch
            config: {optimizer: {name: adam, lr: 1.0}}
            series: {val_loss: "2.305 2.541 2.366 2.336 2.367 2.385 2.359"}
            expect: {at: 5, symptom: plateau, policy: plateau-high-lr, patch: {optimizer.lr: 0.5}}
        """)
    assert main(["policies", "test", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "patch: expected {'optimizer.lr': 0.5}, got {'optimizer.lr': 0.1}" in out
    assert "0/1 policy tests passed" in out


def test_a_malformed_test_file_is_an_input_error(tmp_path, capsys):
    path = _write(tmp_path, "bad.test.yaml", """\
        version: 1
        tests:
          - name: no series
            expect: null
            colour: red
        """)
    assert main(["policies", "test", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.test.yaml:3: tests[0].series: required field is missing" in err
    assert "bad.test.yaml:5: tests[0].colour: unknown key" in err


def test_policies_check_reports_every_file_and_exits_2(capsys):
    golden = Path(__file__).resolve().parent / "golden"
    code = main(["policies", "check", str(golden / "unknown_keys.bad.yaml"), str(golden / "unknown_symptom.bad.yaml")])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert any("unknown_keys.bad.yaml" in line for line in err)
    assert any("unknown_symptom.bad.yaml" in line for line in err)
    assert all(line.startswith("autofix: error: ") for line in err)


def test_policies_check_accepts_the_shipped_set(capsys):
    assert main(["policies", "check", str(SHIPPED_POLICIES)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_explain_names_what_a_policy_answers_and_does(capsys):
    assert main(["policies", "explain", "plateau-high-lr"]) == 0
    out = capsys.readouterr().out
    assert "when: plateau where optimizer.lr" in out and "scale(path=optimizer.lr, factor=0.1" in out
    assert main(["policies", "explain", "nope"]) == 2
    assert "available symptoms: " in capsys.readouterr().err


def test_ledger_ranks_by_measured_success_and_prints_a_table(tmp_path, capsys):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    policy = load_policies(["builtin"]).get("class-collapse")
    first, second = policy.then[0].describe(), policy.then[1].describe()
    for healed in (False, False, False):
        ledger.record("r", "a1", "class_collapse", policy.name, first, healed)
    ledger.record("r", "a2", "class_collapse", policy.name, second, True)
    rank = ledger.ranker()
    assert rank("class_collapse", policy.name, list(enumerate(policy.then)))[:2] == [1, 2]  # proven first
    assert rank("plateau", policy.name, list(enumerate(policy.then))) == [0, 1, 2]  # no evidence: policy order
    assert rank("class_collapse", "another-policy", list(enumerate(policy.then))) == [0, 1, 2]  # other context
    assert main(["ledger", "--path", str(ledger.path)]) == 0
    out = capsys.readouterr().out
    assert "class_collapse" in out and "100%" in out and "0%" in out
