"""The shipped policies' own unit tests, the policy test runner, and the policy/ledger CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from autofix.cli import main
from autofix.rules.ledger import Ledger
from autofix.rules.policy import SHIPPED_POLICIES, load_policies
from autofix.rules.policytest import parse_series, run_policy_tests

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
    ("0x3 _ 1", [0.0, 0.0, 0.0, 0.0, None, 1.0]),      # axn = a+0xn: n+1 values
    ("inf -inf", [float("inf"), float("-inf")]),
    # promtool's own examples (docs: "Unit Testing for Rules", series notation)
    ("-2+4x3", [-2.0, 2.0, 6.0, 10.0]),
    ("1-2x4", [1.0, -1.0, -3.0, -5.0, -7.0]),
    ("1x4", [1.0, 1.0, 1.0, 1.0, 1.0]),
    ("1 _x3 2", [1.0, None, None, None, 2.0]),         # a missing value cannot increment: n of them
    ("1e-5x1 1e-5+1e-5x1", [1e-5, 1e-5, 1e-5, 2e-5]),  # an exponent's sign is no step
    ("nanx1 -infx0", [float("nan"), float("nan"), float("-inf")]),
    ("2.3x0", [2.3]),
])
def test_parse_series(text, expected):
    got = parse_series(text)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g is None and e is None) or (g != g and e != e) or g == pytest.approx(e)


@pytest.mark.parametrize("text", ["1x", "1x-2", "1x1.5", "1x100001", "ax3", "1+x2"])
def test_parse_series_rejects(text):
    with pytest.raises(ValueError):
        parse_series(text)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


STUCK = "2.305 2.541 2.366 2.336 2.367 2.385 2.359 2.381 2.369 2.384 2.421 2.384 2.332 2.329 2.363 2.442"


def test_a_wrong_expectation_fails_with_the_difference(tmp_path, capsys):
    path = _write(tmp_path, "mine.test.yaml", f"""\
        version: 1
        tests:
          - name: wrong patch
            config: {{optimizer: {{name: adam, lr: 1.0}}}}
            steps_per_report: 23
            series: {{val_loss: "{STUCK}"}}
            expect: {{at: 8, symptom: plateau, policy: plateau-high-lr, patch: {{optimizer.lr: 0.5}}}}
        """)
    assert main(["policies", "test", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "patch: expected {'optimizer.lr': 0.5}, got {'optimizer.lr': 0.1}" in out
    assert "0/1 policy tests passed" in out


@pytest.mark.parametrize("timing, at", [
    # report i stands at step i x steps_per_report of planned_steps ((len - 1) x steps_per_report by
    # default); the plateau (window 128 steps) holds 32 steps from report 6, the patience is
    # max(min_steps, share x planned): 172.5 steps here
    pytest.param("steps_per_report: 23", 8, id="23-steps-per-report"),
    pytest.param("steps_per_report: 23\n    patience: {min_steps: 250}", 11, id="min-steps-250"),
    pytest.param("steps_per_report: 23\n    planned_steps: 690", 15, id="planned-690-share-345"),
    pytest.param("steps_per_report: 50\n    planned_steps: 345", 4, id="50-steps-per-report"),
    pytest.param("steps_per_report: 1", None, id="16-steps-never-hold-a-128-step-window"),
])
def test_a_policy_test_counts_steps_not_reports(tmp_path, timing, at):
    expect = f"{{at: {at}, symptom: plateau, policy: plateau-high-lr}}" if at is not None else "null"
    path = tmp_path / "timing.test.yaml"
    path.write_text(f"""\
version: 1
tests:
  - name: timing
    config: {{optimizer: {{name: adam, lr: 1.0}}}}
    {timing}
    series: {{val_loss: "{STUCK}"}}
    expect: {expect}
""")
    assert run_policy_tests([path]) == (1, 0, [])


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


@pytest.mark.parametrize("first_fails, second_heals, order", [
    (5, 1, [1, 2, 0]),  # the first candidate failed 5 times here: its measured rate now counts
    (4, 1, [0, 1, 2]),  # 4 local outcomes are not enough to overrule the shipped (measured) order
    (0, 5, [1, 0, 2]),  # 5 local heals lift the second candidate above the unmeasured ones
    (0, 4, [0, 1, 2]),
])
def test_ledger_reorders_a_policy_only_after_5_local_outcomes(tmp_path, capsys, first_fails, second_heals, order):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    policy = load_policies(["builtin"]).get("class-collapse")
    first, second = policy.then[0].describe(), policy.then[1].describe()
    for _ in range(first_fails):
        ledger.record("r", "a1", "class_collapse", policy.name, first, False)
    for _ in range(second_heals):
        ledger.record("r", "a2", "class_collapse", policy.name, second, True)
    rank = ledger.ranker()
    assert rank("class_collapse", policy.name, list(enumerate(policy.then))) == order
    assert rank("plateau", policy.name, list(enumerate(policy.then))) == [0, 1, 2]  # no evidence: policy order
    assert rank("class_collapse", "another-policy", list(enumerate(policy.then))) == [0, 1, 2]  # other context
    assert main(["ledger", "--path", str(ledger.path)]) == 0
    out = capsys.readouterr().out
    assert "class_collapse" in out and ("100%" in out if second_heals else "0%" in out)


@pytest.mark.parametrize("line, counted", [
    pytest.param('{"v": 2, "symptom": "plateau", "policy": "p", "action": "a", "healed": true}', True, id="v2"),
    pytest.param('{"symptom": "plateau", "policy": "p", "action": "a", "healed": true}', False, id="no-version"),
    pytest.param('{"v": 1, "symptom": "plateau", "policy": "p", "action": "a", "healed": true}', False, id="v1"),
    pytest.param('{"v": "2", "symptom": "plateau", "policy": "p", "action": "a", "healed": true}', False,
                 id="version-as-text"),
    pytest.param('{"v": 2, "symptom": "plateau", "policy": "p", "heal', False, id="torn-line"),
])
def test_ledger_learns_only_rows_of_its_version(tmp_path, line, counted):
    """Rows written under the old verdicts (no "v": 2) are ignored: they counted a relative rise as healed."""
    path = tmp_path / "ledger.jsonl"
    path.write_text(line + "\n")
    ledger = Ledger(path)
    assert ledger.stats() == ({("plateau", "p", "a"): (1, 1)} if counted else {})
    ledger.record("r", "a1", "plateau", "p", "a", False)  # what record writes is always read back
    assert ledger.stats() == {("plateau", "p", "a"): (2, 1) if counted else (1, 0)}
    assert json.loads(path.read_text().splitlines()[-1])["v"] == 2


def test_a_gradient_norm_series_without_its_loss_series_is_an_input_error(tmp_path, capsys):
    path = _write(tmp_path, "norms.test.yaml", """\
        version: 1
        tests:
          - name: norms alone
            series: {step_grad_norm: "3x100 60"}
            expect: null
        """)
    assert main(["policies", "test", str(path)]) == 2
    err = capsys.readouterr().err
    assert "norms.test.yaml:4: tests[0].series: " in err and "give both" in err
