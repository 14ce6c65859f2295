"""Policy files: schema, conditions, candidates, loading, composition and every error at once."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from autofix.errors import InputError
from autofix.rules.alerts import PolicyState
from autofix.rules.policy import SHIPPED_POLICIES, Condition, Policy, PolicySet, load_policies, step_policies
from autofix.symptoms import SYMPTOMS, Finding

GOLDEN = Path(__file__).resolve().parent / "golden"

SHIPPED_ORDER = [
    "nonfinite-lower-lr", "diverging-lower-lr", "oscillating-lower-lr",
    "plateau-high-lr", "plateau-high-lr-sgd", "plateau-low-lr", "plateau-fallback",
]


def policy(**fields: Any) -> Policy:
    data = {"name": "p", "when": {"symptom": "plateau"},
            "then": [{"action": "scale", "path": "optimizer.lr", "factor": 0.1}]}
    data.update(fields)
    return Policy.model_validate(data)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- conditions ------------------------------------------------------------------------------

@pytest.mark.parametrize("cond, value, expected", [
    ({"gt": 0.01}, 0.1, True),
    ({"gt": 0.01}, 0.01, False),
    ({"ge": 0.01}, 0.01, True),
    ({"ge": 0.01}, 0.001, False),
    ({"lt": 1e-4}, 1e-5, True),
    ({"lt": 1e-4}, 1e-4, False),
    ({"le": 1e-4}, 1e-4, True),
    ({"le": 1e-4}, 1e-3, False),
    ({"ge": 0.01, "lt": 1}, 0.5, True),
    ({"ge": 0.01, "lt": 1}, 1, False),
    ({"gt": 1}, 2, True),  # ints compare with floats
    ({"gt": 0.5}, "1.0", False),  # strings are not numbers
    ({"gt": 0}, True, False),  # bools are not numbers
    ({"eq": "sgd"}, "sgd", True),
    ({"eq": "sgd"}, "SGD", True),
    ({"eq": "SGD"}, "sgd", True),
    ({"eq": "sgd"}, "adam", False),
    ({"eq": 3}, 3.0, True),
    ({"ne": "sgd"}, "Adam", True),
    ({"ne": "sgd"}, "Sgd", False),
    ({"in": ["sgd", "adam"]}, "ADAM", True),
    ({"in": ["SGD"]}, "sgd", True),
    ({"in": ["sgd", "adam"]}, "adamw", False),
    ({"in": [1, 2]}, 2.0, True),
    ({"not_in": ["sgd"]}, "adam", True),
    ({"not_in": ["sgd"]}, "SGD", False),
    # a missing value passes only ne / not_in
    ({"gt": 0}, None, False),
    ({"ge": 0}, None, False),
    ({"lt": 0}, None, False),
    ({"le": 0}, None, False),
    ({"eq": "sgd"}, None, False),
    ({"in": ["sgd"]}, None, False),
    ({"ne": "sgd"}, None, True),
    ({"not_in": ["sgd"]}, None, True),
    ({"ne": "sgd", "not_in": ["adam"]}, None, True),
    ({"ne": "sgd", "gt": 0}, None, False),
])
def test_condition_holds(cond, value, expected):
    assert Condition.model_validate(cond).holds(value) is expected


@pytest.mark.parametrize("cond, message", [
    ({}, "needs at least one of"),
    ({"gte": 1}, "gte"),
    ({"gt": "big"}, "gt"),
    ({"in": "sgd"}, "in"),
])
def test_condition_rejects(cond, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        Condition.model_validate(cond)


# -- candidates and fire limits --------------------------------------------------------------

THEN = [
    {"action": "scale", "path": "optimizer.lr", "factor": 0.1, "times": 3},
    {"action": "add_scheduler", "kind": "reduce_on_plateau"},
    {"action": "scale", "path": "optimizer.lr", "factor": 10, "times": 2},
]


@pytest.mark.parametrize("then, expected", [
    (THEN, [0, 0, 0, 1, 2, 2]),  # scale x0.1 three times, the scheduler once, scale x10 twice
    (THEN[:1], [0, 0, 0]),
    (THEN[1:], [0, 1, 1]),
])
def test_schedule_walks_then_with_times(then, expected):
    assert policy(then=then).schedule() == expected


@pytest.mark.parametrize("used, expected", [
    ([], [0, 1, 2]),
    ([0, 0], [0, 1, 2]),
    ([0, 0, 0], [1, 2]),             # the first candidate's times are spent
    ([1], [0, 2]),                   # a later candidate used first (the ledger's order)
    ([0, 0, 0, 1, 2, 2], []),
])
def test_remaining_spends_one_time_per_use(used, expected):
    assert policy(then=THEN).remaining(used) == expected


@pytest.mark.parametrize("fields, limit", [
    ({"then": THEN}, 6),
    ({"then": THEN, "max_fires": 2}, 2),
    ({"then": THEN[:1]}, 3),
    ({"then": THEN[1:2]}, 1),
    ({"then": THEN[1:2], "max_fires": 5}, 5),
])
def test_fire_limit(fields, limit):
    assert policy(**fields).fire_limit == limit


# -- matching --------------------------------------------------------------------------------

CONFIG = {"optimizer": {"name": "Adam", "lr": 1.0}, "batch_size": 64}


@pytest.mark.parametrize("when, symptom, evidence, expected", [
    ({"symptom": "plateau"}, "plateau", {}, True),
    ({"symptom": "plateau"}, "diverging_loss", {}, False),
    ({"symptom": "plateau", "where": {"optimizer.lr": {"ge": 0.01}}}, "plateau", {}, True),
    ({"symptom": "plateau", "where": {"optimizer.lr": {"lt": 1e-4}}}, "plateau", {}, False),
    ({"symptom": "plateau", "where": {"optimizer.lr": {"ge": 0.01}, "optimizer.name": {"not_in": ["sgd"]}}},
     "plateau", {}, True),
    ({"symptom": "plateau", "where": {"optimizer.name": {"eq": "sgd"}}}, "plateau", {}, False),
    ({"symptom": "plateau", "where": {"optimizer.momentum": {"gt": 0}}}, "plateau", {}, False),
    ({"symptom": "plateau", "where": {"optimizer.momentum": {"ne": 0.9}}}, "plateau", {}, True),
    ({"symptom": "diverging_loss", "where": {"evidence.ratio": {"gt": 10}}}, "diverging_loss", {"ratio": 12.0}, True),
    ({"symptom": "diverging_loss", "where": {"evidence.ratio": {"gt": 10}}}, "diverging_loss", {"ratio": 3.0}, False),
    ({"symptom": "diverging_loss", "where": {"evidence.ratio": {"gt": 10}}}, "diverging_loss", {"rise": 30.0}, False),
    ({"symptom": "plateau", "where": {"evidence.total_drop": {"lt": 0.05}, "batch_size": {"in": [32, 64]}}},
     "plateau", {"total_drop": 0.01}, True),
])
def test_matches(when, symptom, evidence, expected):
    lookups: list[str] = []

    def lookup(path: str) -> Any:
        lookups.append(path)
        node: Any = CONFIG
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    assert policy(when=when).matches(symptom, evidence, lookup) is expected
    assert not any(p.startswith("evidence.") for p in lookups), "evidence paths must not read the config"


def test_disabled_policy_needs_no_when_or_then():
    off = Policy.model_validate({"name": "x", "enabled": False})
    assert off.when is None and off.then == []
    assert off.matches("plateau", {}, lambda p: None) is False


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "when": {"symptom": "plateau"}}, "needs 'when' and a non-empty 'then'"),
    ({"name": "x", "then": [{"action": "set", "path": "a", "value": 1}]}, "needs 'when'"),
    ({"name": "X Y", "enabled": False}, "pattern"),
    ({"name": "x", "enabled": False, "for_steps": -1}, "for_steps"),
    ({"name": "x", "enabled": False, "cooldown_steps": -1}, "cooldown_steps"),
    ({"name": "x", "enabled": False, "max_fires": 101}, "max_fires"),
    ({"name": "x", "enabled": False, "when": {"symptom": "loss_spikes"}}, "available: .*diverging_loss"),
])
def test_policy_validation(data, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        Policy.model_validate(data)


# -- pending state, counted in optimizer steps -----------------------------------------------

@pytest.mark.parametrize("symptom, reports, held, pending", [
    # reports: (step, the finding matches, probe_age > 0); held: what step_policies returns per report
    pytest.param("plateau", [(0, 1, 0), (10, 1, 0), (25, 1, 0)], [0, 10, 25], [0, 25], id="held-since-the-first-match"),
    pytest.param("plateau", [(100, 1, 0), (400, 1, 0)], [0, 300], [100, 400], id="steps-not-reports"),
    pytest.param("plateau", [(0, 1, 0), (10, 0, 0), (20, 1, 0), (30, 1, 0)], [0, None, 0, 10], [20, 30],
                 id="a-break-resets"),
    pytest.param("plateau", [(0, 1, 0), (10, 1, 1), (20, 1, 1)], [0, 10, 20], [0, 20],
                 id="stale-reports-count-for-a-loss-symptom"),
    pytest.param("dying_relu", [(0, 1, 1), (10, 1, 1), (20, 1, 0)], [None, None, 0], [20, 20],
                 id="stale-never-starts-a-sampled-symptom"),
    pytest.param("dying_relu", [(0, 1, 0), (10, 1, 1), (20, 1, 0)], [0, 0, 20], [0, 20],
                 id="stale-keeps-what-was-held-without-adding"),
    pytest.param("dying_relu", [(0, 1, 0), (10, 0, 1), (20, 1, 0)], [0, None, 20], [0, 20],
                 id="stale-never-resets-a-sampled-symptom"),
    pytest.param("dying_relu", [(0, 1, 0), (10, 0, 0)], [0, None], None, id="a-fresh-break-resets"),
])
def test_step_policies_holds_matches_in_steps(symptom, reports, held, pending):
    policies = PolicySet([policy(when={"symptom": symptom})], [])
    state: dict[str, PolicyState] = {}
    got = []
    for step, matches, stale in reports:
        findings = [Finding(symptom, 0, "val_loss", "seen")] if matches else []
        out, _ = step_policies(policies, state, findings, lambda path: None, {"probe_age": float(stale)}, float(step))
        got.append(out[0][2] if out else None)
    assert got == held
    p = state.get("p")
    assert (None if p is None or p.active_at is None else [p.active_at, p.last_match_at]) == pending


@pytest.mark.parametrize("for_steps, matches, expected", [
    # (step, matches) per report -> the transitions, as (event, step, active_at, fired_at)
    pytest.param(20, [(0, 1), (10, 1), (20, 1), (30, 0)],
                 [("policy_pending", 0, 0, None), ("policy_firing", 20, 0, 20), ("policy_resolved", 30, 0, 20)],
                 id="pending-firing-resolved"),
    pytest.param(0, [(0, 1), (10, 1)], [("policy_pending", 0, 0, None), ("policy_firing", 0, 0, 0)],
                 id="for-0-fires-at-its-first-match"),
    pytest.param(20, [(0, 1), (10, 0), (20, 1), (30, 1)],
                 [("policy_pending", 0, 0, None), ("policy_resolved", 10, 0, None), ("policy_pending", 20, 20, None)],
                 id="a-break-resolves-a-pending-policy"),
    pytest.param(20, [(0, 0), (10, 0)], [], id="never-matched-says-nothing"),
])
def test_policy_states_move_as_prometheus_alerts(for_steps, matches, expected):
    policies = PolicySet([policy(when={"symptom": "plateau"}, for_steps=for_steps)], [])
    states: dict[str, PolicyState] = {}
    moved = []
    for step, match in matches:
        findings = [Finding("plateau", 0, "val_loss", "seen")] if match else []
        moved += step_policies(policies, states, findings, lambda path: None, {}, float(step))[1]
    assert [(t.event, t.step, t.active_at, t.fired_at) for t in moved] == expected
    assert all(t.policy == "p" for t in moved)


def test_for_steps_defaults_to_firing_at_the_first_match():
    assert policy().for_steps == 0 and policy().cooldown_steps == 0


# -- the shipped policies --------------------------------------------------------------------

LOSS_FILE = SHIPPED_POLICIES / "loss.yaml"


def test_shipped_policies_load_in_priority_order():
    assert [p.name for p in load_policies([LOSS_FILE])] == SHIPPED_ORDER
    policies = load_policies(["builtin"])
    priorities = [p.priority for p in policies]
    assert priorities == sorted(priorities, reverse=True)
    assert policies.sources == sorted(str(p) for p in SHIPPED_POLICIES.glob("*.yaml"))


@pytest.mark.parametrize("name", [p.name for p in load_policies(["builtin"])])
def test_every_shipped_policy_is_well_formed(name):
    p = load_policies(["builtin"]).get(name)
    assert p is not None and p.enabled
    assert p.when.symptom in SYMPTOMS
    assert p.then and p.description
    assert p.source.startswith(str(SHIPPED_POLICIES) + "/")
    assert all(a.times >= 1 for a in p.then)
    assert p.fire_limit >= 1


def test_every_symptom_has_a_shipped_policy():
    assert {p.when.symptom for p in load_policies(["builtin"])} == set(SYMPTOMS)


# -- composition -----------------------------------------------------------------------------

def test_later_file_overrides_and_disables(tmp_path):
    user = write(tmp_path, "mine.yaml", """\
        version: 1
        policies:
          - name: plateau-fallback
            when: {symptom: plateau}
            for_steps: 5
            priority: 200
            then:
              - {action: set, path: optimizer.name, value: sgd}
          - {name: oscillating-lower-lr, enabled: false}
          - name: plateau-high-lr
            when: {symptom: plateau}
            priority: 20
            then:
              - {action: scale, path: optimizer.lr, factor: 0.5}
        """)
    policies = load_policies([LOSS_FILE, user])
    assert [p.name for p in policies] == [
        "plateau-fallback", "nonfinite-lower-lr", "diverging-lower-lr",
        "plateau-high-lr-sgd", "plateau-low-lr", "plateau-high-lr",  # the override takes the later place
    ]
    assert policies.get("oscillating-lower-lr") is None
    fallback = policies.get("plateau-fallback")
    assert fallback.for_steps == 5 and fallback.then[0].action == "set"
    assert fallback.source == f"{user}:3"
    assert policies.get("plateau-high-lr").then[0].factor == 0.5
    assert policies.sources == [str(SHIPPED_POLICIES / "loss.yaml"), str(user)]


def test_file_order_decides_who_wins(tmp_path):
    a = write(tmp_path, "a.yaml", """\
        version: 1
        policies:
          - {name: x, when: {symptom: plateau}, then: [{action: set, path: k, value: a}]}
        """)
    b = write(tmp_path, "b.yaml", """\
        version: 1
        policies:
          - {name: x, when: {symptom: plateau}, then: [{action: set, path: k, value: b}]}
        """)
    assert load_policies([a, b]).get("x").then[0].value == "b"
    assert load_policies([b, a]).get("x").then[0].value == "a"


def test_directory_loads_sorted_yaml_and_skips_test_files(tmp_path):
    write(tmp_path, "10-base.yaml", """\
        version: 1
        policies:
          - {name: x, priority: 1, when: {symptom: plateau}, then: [{action: set, path: k, value: 1}]}
          - {name: y, priority: 1, when: {symptom: plateau}, then: [{action: set, path: k, value: 2}]}
        """)
    write(tmp_path, "20-user.yaml", """\
        version: 1
        policies:
          - {name: x, enabled: false}
          - {name: z, priority: 5, when: {symptom: diverging_loss}, then: [{action: set, path: k, value: 3}]}
        """)
    write(tmp_path, "broken.test.yaml", "this: [is not loaded\n")
    write(tmp_path, "notes.txt", "not yaml at all: [\n")
    policies = load_policies([tmp_path])
    assert [p.name for p in policies] == ["z", "y"]
    assert [Path(s).name for s in policies.sources] == ["10-base.yaml", "20-user.yaml"]


@pytest.mark.parametrize("priorities, expected", [
    ({"a": 0, "b": 0, "c": 0}, ["a", "b", "c"]),
    ({"a": 0, "b": 5, "c": -5}, ["b", "a", "c"]),
    ({"a": 1, "b": 2, "c": 2}, ["b", "c", "a"]),
])
def test_priority_then_file_order(tmp_path, priorities, expected):
    lines = ["version: 1", "policies:"] + [
        f"  - {{name: {n}, priority: {p}, when: {{symptom: plateau}}, then: [{{action: set, path: k, value: 1}}]}}"
        for n, p in priorities.items()
    ]
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert [p.name for p in load_policies([path])] == expected


# -- errors: every problem of every file at once ---------------------------------------------

def golden_cases():
    for bad in sorted(GOLDEN.glob("*.bad.yaml")):
        stem = bad.name[: -len(".bad.yaml")]
        yield pytest.param(bad, bad.with_name(stem + ".expected"), id=stem)


def problem_lines(paths: list[Path]) -> list[str]:
    with pytest.raises(InputError) as info:
        load_policies(paths)
    return [str(dataclasses.replace(p, file=os.path.relpath(p.file, GOLDEN))) for p in info.value.problems]


def test_there_are_enough_golden_files():
    assert len(list(GOLDEN.glob("*.bad.yaml"))) >= 5
    for bad in GOLDEN.glob("*.bad.yaml"):
        assert bad.with_name(bad.name[: -len(".bad.yaml")] + ".expected").is_file()


@pytest.mark.parametrize("bad, expected", list(golden_cases()))
def test_golden_policy_errors(bad, expected):
    assert problem_lines([bad]) == expected.read_text().splitlines()


@pytest.mark.parametrize("stem, count", [
    ("many_errors", 11),
    ("wrong_types", 7),
    ("unknown_keys", 3),
    ("duplicate_key", 2),
])
def test_all_errors_of_a_file_are_reported_at_once(stem, count):
    lines = problem_lines([GOLDEN / f"{stem}.bad.yaml"])
    assert len(lines) == count
    assert len(set(lines)) == count


def test_all_files_are_checked_before_raising():
    stems = ["top_level", "unknown_symptom", "duplicate_name", "syntax", "empty"]
    lines = problem_lines([GOLDEN / f"{s}.bad.yaml" for s in stems] + [GOLDEN / "missing.yaml", "builtin"])
    expected = []
    for s in stems:
        expected += (GOLDEN / f"{s}.expected").read_text().splitlines()
    assert lines == ["missing.yaml: no such policy file or directory"] + expected


def test_input_error_message_is_one_line_per_problem():
    with pytest.raises(InputError) as info:
        load_policies([GOLDEN / "many_errors.bad.yaml"])
    assert str(info.value).splitlines() == [str(p) for p in info.value.problems]


def test_no_problem_line_has_an_empty_field():
    lines = problem_lines([GOLDEN / "incomplete_policy.bad.yaml"])
    assert len(lines) == 2
    assert not any(": : " in line for line in lines)


def test_action_validator_errors_name_real_keys():
    lines = problem_lines([GOLDEN / "action_checks.bad.yaml"])
    assert len(lines) == 2
    assert not any(".scale:" in line for line in lines)
