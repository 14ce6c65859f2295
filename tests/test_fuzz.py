"""Bad input never crashes: fuzzed specs and policy files exit 2 naming file (line, field).

The strategies and the property live in benchmarks/fuzzcases.py (``benchmarks/fuzz.py``
runs >= 1,000 cases); here a few dozen run, plus golden cases whose message is known.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzzcases  # noqa: E402
from fuzzcases import Case, run_case  # noqa: E402

DIGITS = (ROOT / "examples" / "digits_healthy.yaml").read_text()
POLICY = (ROOT / "autofix" / "policies" / "loss.yaml").read_text()


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(fuzzcases.cases())
def test_fuzzed_input_exits_2_naming_the_file_or_is_valid(tmp_path_factory, case):
    outcome = run_case(case, tmp_path_factory.mktemp("case"), existing_output=len(case.data) % 2 == 0)
    assert not outcome.failures, (outcome.failures, outcome.stderr[-1500:])


def _rejected(tmp_path: Path, kind: str, data: bytes, existing_output: bool = False) -> list[str]:
    """Run one case; assert the whole property; return its error lines."""
    outcome = run_case(Case(kind, "golden", data), tmp_path, existing_output=existing_output)
    assert not outcome.failures, (outcome.failures, outcome.stderr)
    assert outcome.exit_code == 2 and not outcome.started, outcome.stderr
    path = tmp_path / ("spec.yaml" if kind == "spec" else "policy.yaml")
    lines = outcome.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"autofix: error: {path}") for line in lines), lines
    return lines


def _replace(text: str, old: str, new: str) -> bytes:
    assert old in text
    return text.replace(old, new, 1).encode()


@pytest.mark.parametrize("kind", ["spec", "policy"])
@pytest.mark.parametrize("data", [b"", b"\n\n", b"# nothing\n", b"---\n"],
                         ids=["empty", "newlines", "comment", "marker"])
def test_empty_file(tmp_path, kind, data):
    (line,) = _rejected(tmp_path, kind, data)
    assert "empty" in line


@pytest.mark.parametrize("kind", ["spec", "policy"])
def test_binary_junk(tmp_path, kind):
    (line,) = _rejected(tmp_path, kind, bytes(range(256)) * 2)
    assert "UTF-8" in line


def test_nan_lr_names_line_and_field(tmp_path):
    (line,) = _rejected(tmp_path, "spec", _replace(DIGITS, "lr: 1.0e-3", "lr: .nan"), existing_output=True)
    number = 1 + DIGITS.splitlines().index(next(x for x in DIGITS.splitlines() if "lr: 1.0e-3" in x))
    assert f"spec.yaml:{number}: training.optimizer.lr: " in line and "nan" in line


def test_huge_epochs_names_line_and_field(tmp_path):
    (line,) = _rejected(tmp_path, "spec", _replace(DIGITS, "epochs: ", "epochs: 1" + "0" * 400 + "\n  #"))
    assert ": training.epochs: " in line and "spec.yaml:" in line.split(": training")[0]


def test_unknown_key_lists_the_allowed_ones(tmp_path):
    (line,) = _rejected(tmp_path, "spec", DIGITS.encode() + b"colour: blue\n")
    assert ": colour: unknown key; expected one of: " in line and "budget" in line


def test_unknown_policy_key_names_the_policy(tmp_path):
    (line,) = _rejected(tmp_path, "policy", _replace(POLICY, "    for_steps:", "    colour: blue\n    for_steps:"))
    assert "policy '" in line and "colour: unknown key" in line


# -- regressions: inputs the fuzzer found crashing or hanging ------------------------------------

BOMB = "version: 1\na0: &a0 [x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8))


@pytest.mark.parametrize("kind", ["spec", "policy"])
def test_alias_bomb_is_refused_quickly(tmp_path, kind):
    # 10^7 values once expanded: `policies check` used to walk them all (> 60 s)
    (line,) = _rejected(tmp_path, kind, BOMB.encode())
    assert "aliases are expanded" in line


@pytest.mark.parametrize("kind", ["spec", "policy"])
@pytest.mark.parametrize("doc", ["version: 1\nx: &r {k: *r}\n", "version: 1\nname: &r [*r]\n"], ids=["map", "list"])
def test_recursive_anchor_is_refused(tmp_path, kind, doc):
    # used to raise RecursionError with a traceback
    (line,) = _rejected(tmp_path, kind, doc.encode())
    assert "spec.yaml:2:" in line or "policy.yaml:2:" in line
    assert "recursive anchor" in line


@pytest.mark.parametrize("depth", [150, 5000, 20000])
def test_deep_nesting_is_refused(tmp_path, depth):
    # 5,000 levels used to raise RecursionError inside PyYAML's composer, with a traceback, and
    # 20,000 took ~13 s in PyYAML's scanner (quadratic in the depth) before failing
    (line,) = _rejected(tmp_path, "spec", f"version: 1\nname: {'[' * depth}1{']' * depth}\n".encode())
    assert "spec.yaml:2: " in line and "nested too deeply" in line


def test_depth_within_the_limit_is_accepted_by_the_reader(tmp_path):
    from autofix.spec.sources import MAX_DEPTH, load_yaml

    path = tmp_path / "ok.yaml"
    path.write_text(f"x: {'[' * (MAX_DEPTH - 1)}1{']' * (MAX_DEPTH - 1)}\n")
    value = load_yaml(path).data["x"]
    for _ in range(MAX_DEPTH - 1):
        (value,) = value
    assert value == 1


def test_non_string_python_path_entries_are_reported_not_raised(tmp_path):
    # python_path: [1, null] raised TypeError in Path() before validation ran
    lines = _rejected(tmp_path, "spec", b"python_path: [1, null]\n" + DIGITS.encode())
    assert [line.split("spec.yaml:")[1].split(": ")[:2] for line in lines] == [["1", "python_path[0]"],
                                                                               ["1", "python_path[1]"]]


@pytest.mark.parametrize("field", [b'python_path: ["a\\0b"]', b'ledger: "a\\0b"'])
def test_nul_in_a_path_is_refused_before_the_run(tmp_path, field):
    # a NUL in python_path passed validation and crashed Path.resolve() after Ray had started
    (line,) = _rejected(tmp_path, "spec", field + b"\n" + DIGITS.encode())
    assert "spec.yaml:1: " in line and "NUL" in line


def test_missing_policy_file_is_named_with_the_spec_line(tmp_path):
    # used to name only the missing path, not the spec's file, line and field
    lines = _rejected(tmp_path, "spec", DIGITS.encode() + b"policies: [builtin, nothere.yaml]\n")
    number = len(DIGITS.splitlines()) + 1
    assert lines == [f"autofix: error: {tmp_path / 'spec.yaml'}:{number}: policies[1]: no such policy file or "
                     f"directory: {tmp_path / 'nothere.yaml'}"]


@pytest.mark.parametrize("key", ["a\u2028b", "a\x85b", "a\rb"])
def test_a_key_with_a_line_break_keeps_the_message_on_one_line(tmp_path, key):
    # the key was printed raw: U+2028, NEL or CR split one problem over two lines
    doc = DIGITS + f"{key!r}: 1\n".replace("'", '"')
    (line,) = _rejected(tmp_path, "spec", doc.encode())
    assert "unknown key" in line


@pytest.mark.parametrize("kind", ["spec", "policy"])
def test_control_character_is_one_line_with_its_line_number(tmp_path, kind):
    # PyYAML's ReaderError printed two lines and no line number
    (line,) = _rejected(tmp_path, kind, b"version: 1\nname: a\x07b\n")
    assert ".yaml:2: invalid YAML: character #x0007 is not allowed" in line
