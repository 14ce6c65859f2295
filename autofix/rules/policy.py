"""Policy files: declarative ``when symptom [where ...] for N steps then [actions...]`` rules.

Modelled on Prometheus alerting rules: unknown keys are errors, every problem in every file
is collected with ``file:line``, and files compose: a later file (the user's) overrides an
earlier one (the shipped ``autofix/policies/``) policy by policy, by name, and ``enabled: false``
switches a shipped policy off. Conditions are data (``{optimizer.lr: {gt: 0.01}}``), never
evaluated as code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from autofix.actions import ActionSpec, get_path
from autofix.errors import InputError, Problem
from autofix.rules.alerts import AlertState, PolicyState, Transition
from autofix.rules.policypaths import Known, check_where
from autofix.spec.sources import Source, load_yaml, problems_from_validation
from autofix.symptoms import SYMPTOMS

__all__ = [
    "BUILTIN", "SHIPPED_POLICIES", "Condition", "Policy", "PolicyFile", "PolicySet", "load_policies",
    "metrics_lookup", "step_policies",
]

SHIPPED_POLICIES = Path(__file__).resolve().parents[1] / "policies"  # inside the package: wheels ship it
BUILTIN = "builtin"  # the name of the shipped policy directory in a spec's ``policies`` list
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


class Condition(BaseModel):
    """Comparisons on one value; all given must hold. ``in`` / ``not_in`` take lists."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    gt: float | None = None  # greater than
    ge: float | None = None  # greater than or equal
    lt: float | None = None  # less than
    le: float | None = None  # less than or equal
    eq: Any = None  # equal
    ne: Any = None  # not equal (a missing value passes)
    in_: list[Any] | None = Field(default=None, alias="in")  # one of
    not_in: list[Any] | None = None  # none of (a missing value passes)

    @model_validator(mode="after")
    def _some(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("a condition needs at least one of gt, ge, lt, le, eq, ne, in, not_in")
        return self

    def holds(self, value: Any) -> bool:
        """True when ``value`` passes every comparison given.

        A missing value (None) passes only ``ne`` and ``not_in``, as a Prometheus ``!=``
        matcher matches a series without the label.
        """
        if value is None:
            return bool(self.model_fields_set) and self.model_fields_set <= {"ne", "not_in"}
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        checks = {
            "gt": lambda b: numeric and value > b,
            "ge": lambda b: numeric and value >= b,
            "lt": lambda b: numeric and value < b,
            "le": lambda b: numeric and value <= b,
            "eq": lambda b: _norm(value) == _norm(b),
            "ne": lambda b: _norm(value) != _norm(b),
            "in_": lambda b: _norm(value) in [_norm(x) for x in b],
            "not_in": lambda b: _norm(value) not in [_norm(x) for x in b],
        }
        return all(checks[k](getattr(self, k)) for k in self.model_fields_set)


def _norm(value: Any) -> Any:
    # Optimizer names are case-insensitive in specs ("Adam" == "adam").
    return value.lower() if isinstance(value, str) else value


class When(BaseModel):
    """Which finding a policy answers: a symptom, and conditions on its evidence or the config."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    symptom: str  # the symptom answered
    where: dict[str, Condition] = Field(default_factory=dict)  # config path, evidence.KEY or metrics.KEY

    @field_validator("symptom")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SYMPTOMS:
            raise ValueError(f"unknown symptom '{value}'; available: {', '.join(sorted(SYMPTOMS))}")
        return value


class Policy(BaseModel):
    """One rule: when a symptom has held for ``for_steps`` optimizer steps, try the next candidate.

    Prometheus's ``for``: the policy is *pending* from the first report that matches and
    *fires* once the match has held, report after report, for ``for_steps`` optimizer steps
    (0: at the first matching report). ``cooldown_steps``: a child launched by this policy
    gives it that many of its own steps before it may fire again. A soft symptom's policy
    also waits for the run's patience (:class:`autofix.rules.engine.Plan`).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=_NAME, max_length=80)  # [a-z0-9_.-]
    description: str = ""  # one line
    enabled: bool = True  # false switches off a policy of that name
    when: When | None = None  # the finding answered
    for_steps: int = Field(default=0, ge=0, le=10_000_000)  # optimizer steps the finding must hold
    cooldown_steps: int = Field(default=0, ge=0, le=10_000_000)  # steps a relaunch trains before it fires again
    max_fires: int | None = Field(default=None, ge=1, le=100)  # per lineage; default: sum of times
    priority: int = Field(default=0, ge=-1000, le=1000)  # higher is considered first
    labels: dict[str, str] = Field(default_factory=dict)  # free-form tags
    then: list[ActionSpec] = Field(default_factory=list, max_length=50)  # candidate actions, in order
    _source: str = PrivateAttr(default="")
    _where_lines: dict[str, int | None] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> str:
        """``file:line`` where this policy was defined."""
        return self._source

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        # A bare ``{name, enabled: false}`` entry only switches off a policy of that name.
        if self.enabled and (self.when is None or not self.then):
            raise ValueError("an enabled policy needs 'when' and a non-empty 'then'")
        if self.when is not None and self.then:
            _check_in_trial(self)
        return self

    @property
    def in_trial(self) -> bool:
        """Runs inside the trial, at every optimizer step (``rewind``; :mod:`autofix.rules.intrial`)."""
        return bool(self.then) and self.then[0].in_trial

    @property
    def fire_limit(self) -> int:
        """Fires allowed per lineage: ``max_fires``, or as many as the candidates answer."""
        return self.max_fires or sum(a.times for a in self.then)

    def matches(self, symptom: str, evidence: dict[str, float], lookup: Callable[[str], Any]) -> bool:
        """Does a finding of ``symptom`` with this evidence call for this policy?

        ``lookup(path)`` reads the attempt's config (through the spec's knob aliases).
        """
        if self.when is None or self.when.symptom != symptom:
            return False
        for path, cond in self.when.where.items():
            if path.startswith("evidence."):
                value = evidence.get(path[len("evidence."):])
            else:
                value = lookup(path)
            if not cond.holds(value):
                return False
        return True

    def remaining(self, used: list[int]) -> list[int]:
        """Indexes of candidates still available after ``used`` (each use spends one ``times``)."""
        return [i for i, a in enumerate(self.then) if used.count(i) < a.times]

    def schedule(self) -> list[int]:
        """Candidate index of each successive fire, in the policy's own order (``times`` each)."""
        return [i for i, a in enumerate(self.then) for _ in range(a.times)]


def _check_in_trial(policy: Policy) -> None:
    """A policy runs either inside the trial (a step-level symptom answered in place) or at the
    driver (a relaunch), never half of each."""
    assert policy.when is not None
    step_level = SYMPTOMS[policy.when.symptom].in_trial
    kinds = {a.name for a in policy.then}
    if step_level and any(not a.in_trial for a in policy.then):
        raise ValueError(f"'{policy.when.symptom}' is judged inside the trial, at every step: its policy can only "
                         f"act there ('then' may list only rewind), got {sorted(kinds)}")
    if any(a.in_trial for a in policy.then) and not step_level:
        in_trial = sorted(n for n, c in SYMPTOMS.items() if c.in_trial)
        raise ValueError(f"rewind acts inside the trial: it answers a symptom judged there ({', '.join(in_trial)}), "
                         f"got '{policy.when.symptom}'")
    if step_level and any(not path.startswith("evidence.") for path in policy.when.where):
        raise ValueError("a policy that runs inside the trial can read only its finding's evidence in 'where' "
                         "(evidence.KEY)")
    if step_level and policy.cooldown_steps:
        raise ValueError("cooldown_steps: a policy that runs inside the trial launches nothing to cool down")


def metrics_lookup(config: dict, aliases: dict[str, str], row: dict[str, float]) -> Callable[[str], Any]:
    """What ``where`` conditions read: ``metrics.x`` from the last report ``row``, any other path
    from the config (through the spec's knob aliases)."""

    def lookup(path: str) -> Any:
        if path.startswith("metrics."):
            return row.get(path[len("metrics."):])
        return get_path(config, aliases.get(path, path), None)

    return lookup


def step_policies(policies: PolicySet, states: dict[str, PolicyState], findings: list,
                  lookup: Callable[[str], Any], row: dict[str, float], step: float,
                  at_end: bool = False) -> tuple[list[tuple[Policy, Any, float]], list[Transition]]:
    """Advance each policy's state (:mod:`autofix.rules.alerts`) at a report made at optimizer step
    ``step``; return ``(policy, matching finding, steps held)`` for the policies that match this
    report, and the state transitions it caused (pending, firing, resolved).

    ``states`` (updated in place) holds each policy's :class:`~autofix.rules.alerts.PolicyState`; a
    policy whose match breaks resolves to inactive. *Held* is the span from the step its match
    began to its latest fresh match. A report whose probe statistics were carried forward
    (``probe_age`` > 0) is no new evidence for a symptom that reads them: its policies keep their
    state (and may act on what they held), none starts, resolves or moves (unless the attempt is
    ending).
    """
    stale = (row.get("probe_age") or 0) > 0 and not at_end
    matching: list[tuple[Policy, Any, float]] = []
    moved: list[Transition] = []
    for policy in policies:
        if policy.in_trial:
            continue  # answered inside the trial, step by step (autofix.rules.intrial)
        # Most reports have no finding: skip building a search per policy (engine hot path).
        match = next((f for f in findings if policy.matches(f.symptom, f.evidence, lookup)), None) if findings else None
        state = states.get(policy.name)
        if stale and getattr(SYMPTOMS.get(policy.when.symptom), "sampled", False):
            if match is not None and state is not None and state.state is not AlertState.INACTIVE:
                matching.append((policy, match, state.held))
            continue
        if match is None:
            if state is not None:
                moved += state.resolve(policy.name, step)
            continue
        state = states.setdefault(policy.name, PolicyState())
        moved += state.match(policy.name, step, policy.for_steps)
        matching.append((policy, match, state.held))
    return matching, moved


class PolicyFile(BaseModel):
    """The top level of a policy file."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]  # the policy format
    policies: list[Policy] = Field(default_factory=list)  # the policies of the file


class PolicySet:
    """The composed, enabled policies in the order they are considered (priority, then file order)."""

    def __init__(self, policies: list[Policy], sources: list[str], warnings: list[Problem] | None = None) -> None:
        order = {p.name: i for i, p in enumerate(policies)}
        self.policies = sorted(
            (p for p in policies if p.enabled), key=lambda p: (-p.priority, order[p.name])
        )
        self.sources = sources
        self.warnings = warnings or []  # where paths that may be typos (autofix.rules.policypaths)

    def __iter__(self):
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)


def load_policies(paths: Sequence[str | Path], known: Known | None = None) -> PolicySet:
    """Load and compose policy files and directories; raise one InputError listing every problem.

    Each ``where`` key is checked against the catalogue and ``known`` (the spec's training
    schema or custom config; None: no spec, :mod:`autofix.rules.policypaths`): its errors are raised
    with the rest, its warnings kept in :attr:`PolicySet.warnings`."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    merged: dict[str, Policy] = {}
    files = _expand(paths, problems)
    for path in files:
        for policy in _load_file(path, problems):
            if not policy.enabled and policy.when is None and policy.name not in merged:
                # A bare switch-off with nothing to switch off is almost always a typo.
                defined = ", ".join(sorted(merged)) or "none"
                file, _, line = policy.source.rpartition(":")
                problems.append(Problem(file, int(line or 0) or None, "name",
                                        f"no earlier policy of this name to disable; defined so far: {defined}",
                                        f"policy '{policy.name}'"))
                continue
            merged.pop(policy.name, None)  # a later definition wins and takes the later place
            merged[policy.name] = policy
            bad, doubtful = check_where(policy, known or Known(), policy._where_lines)
            problems += bad
            warnings += doubtful
    if problems:
        order = {str(f): i for i, f in enumerate(files)}
        problems.sort(key=lambda p: (order.get(p.file, -1), p.line or 0))  # file by file, in line order
        raise InputError(problems)
    return PolicySet(list(merged.values()), [str(f) for f in files], warnings)


def _expand(paths: Sequence[str | Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = SHIPPED_POLICIES if str(raw) == BUILTIN else Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.yaml") if not p.name.endswith(".test.yaml")))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(raw), None, "", "no such policy file or directory"))
    return files


def _load_file(path: Path, problems: list[Problem]) -> list[Policy]:
    try:
        source = load_yaml(path)
    except InputError as exc:
        problems.extend(exc.problems)
        return []
    if not isinstance(source.data, dict):
        problems.append(Problem(source.path, 1, "", "expected a mapping with 'version' and 'policies'"))
        return []
    head = {k: v for k, v in source.data.items() if k != "policies"}
    try:
        PolicyFile.model_validate({**head, "policies": []})
    except pydantic.ValidationError as err:
        problems.extend(problems_from_validation(err, source, PolicyFile))
    items = source.data.get("policies")
    if not isinstance(items, list):
        if items is not None:
            problems.append(Problem(source.path, source.line_of(("policies",)), "policies",
                                    "expected a list of policies"))
        return []
    return _load_items(items, source, problems)


def _load_items(items: list, source: Source, problems: list[Problem]) -> list[Policy]:
    """Validate each policy on its own so one bad policy does not hide another's errors."""
    loaded: list[Policy] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        context = f"policy '{name}'" if isinstance(name, str) else f"policies[{i}]"
        try:
            policy = Policy.model_validate(item)
        except pydantic.ValidationError as err:
            for p in problems_from_validation(err, source, Policy, base=("policies", i)):
                field = p.field.split(".", 1)[1] if "." in p.field else ""
                problems.append(Problem(p.file, p.line, field, p.message, context))
            continue
        line = source.line_of(("policies", i))
        if policy.name in seen:
            problems.append(Problem(source.path, line, "name",
                                    f"duplicate policy name (first on line {seen[policy.name]})", context))
            continue
        seen[policy.name] = line or 0
        policy._source = f"{source.path}:{line}"
        if policy.when is not None:
            policy._where_lines = {f"when.where.{k}": source.line_of(("policies", i, "when", "where", k))
                                   for k in policy.when.where}
            policy._where_lines.update({f"then[{j}].path": source.line_of(("policies", i, "then", j, "path"))
                                        for j in range(len(policy.then))})
        loaded.append(policy)
    return loaded
