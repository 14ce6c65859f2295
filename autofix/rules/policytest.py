"""``autofix policies test``: unit tests for policies, in the spirit of ``promtool test rules``.

A test file (``*.test.yaml``, usually in ``autofix/policies/tests/``) gives metric series and a config;
the engine is driven with them exactly as during a run, and the first decision (iteration,
symptom, policy, patch) is compared with the expectation::

    version: 1
    policy_files: [../loss.yaml]          # relative to the test file; default: builtin
    tests:
      - name: lr=1.0 stuck at chance
        config: {optimizer: {name: adam, lr: 1.0}}
        series: {val_loss: "2.305 2.541 2.366 2.336 2.367 2.385"}
        expect: {at: 5, symptom: plateau, policy: plateau-high-lr, patch: {optimizer.lr: 0.1}}
      - name: healthy run, no decision
        series: {val_loss: "2.3 2.0 1.2 0.5 0.3 0.2"}
        expect: null

Series are space-separated numbers in promtool's expanding notation: ``a+bxn`` is the n+1 values
``a, a+b, ..., a+n*b``, ``axn`` is n+1 copies of ``a``, ``_`` is no value (``_xn``: n of them);
``nan`` and ``inf`` are understood (:func:`parse_series`). Report ``i`` stands at optimizer step
``i x steps_per_report`` (default 1) of ``planned_steps`` (default: the series' length in
steps), so ``for_steps``, detector windows and the patience of soft symptoms (``patience:
{min_steps, share}``, the spec's defaults otherwise) count steps as in a run. ``fired: {policy:
n}`` starts the lineage as if that policy had already fired n times (to test later candidates).
``rungs: {rung: {numbers}}`` gives what each isolation rung reports when the decision starts
the ladder (autofix/rules/ladder.py): the decision compared is then the one the ladder leads to, and
``expect.part`` its conclusion.

A ``step_loss`` series is one training loss per optimizer step, judged by the in-trial policies
(``rewind``; :mod:`autofix.rules.intrial`) exactly as the trial's spike guard judges it: ``at`` is
the step, and ``expect.then`` the candidate chosen (``{action: rewind, lr_factor: 0.5}``). A
``step_grad_norm`` series beside it gives each step's gradient norm, judged after its loss passed
(``_`` where a step has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from autofix.errors import InputError
from autofix.judge.history import PLANNED, STEP
from autofix.rules.engine import Engine, Plan
from autofix.rules.intrial import TrialRules
from autofix.rules.policy import BUILTIN, SHIPPED_POLICIES, load_policies
from autofix.spec.sources import load_yaml, problems_from_validation
from autofix.symptoms import build_detectors
from autofix.symptoms.spike import STEP_GRAD_NORM, STEP_LOSS, LossSpike, SpikeParams

__all__ = ["PolicyTestFile", "parse_series", "run_policy_tests"]


def parse_series(text: str) -> list[float | None]:
    """Series values in ``promtool test rules``' expanding notation.

    ``a+bxn`` is the n+1 values ``a, a+b, ..., a+n*b`` (``a-bxn`` counts down) and ``axn`` is
    ``a+0xn``: n+1 copies of ``a``; ``_`` is a report without the metric and ``_xn`` n of them
    (a missing value cannot increment); ``nan`` and ``inf`` are values. So
    ``"2.3 _ 1-0.5x2 0x2"`` -> ``[2.3, None, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0]``.
    """
    out: list[float | None] = []
    for token in str(text).split():
        head, sep, times = token.rpartition("x")
        if not sep:
            out.append(None if token == "_" else float(token))
            continue
        if not times.isdigit() or int(times) > 100_000:
            raise ValueError(f"repeat count must be a whole number in 0..100000, got {token!r}")
        n = int(times)
        if head == "_":
            out.extend([None] * n)
            continue
        # the step's sign: the last + or - that is neither the value's own sign nor an exponent's
        cut = max((i for i, c in enumerate(head) if c in "+-" and i > 0 and head[i - 1] not in "eE"), default=0)
        start, step = (float(head[:cut]), float(head[cut:])) if cut else (float(head), 0.0)
        out.extend(start + i * step for i in range(n + 1))
    return out


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: int = Field(ge=0)
    symptom: str
    policy: str
    patch: dict[str, Any] = Field(default_factory=dict)
    then: dict[str, Any] | None = None  # an in-trial policy's candidate: {action: rewind, lr_factor: 0.5}
    part: str | None = None  # the isolation ladder's conclusion (training_step | model | data | optimizer)


class PolicyTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    series: dict[str, str]
    metric: str = "val_loss"
    knobs: dict[str, str] = Field(default_factory=dict)
    symptoms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fired: dict[str, int] = Field(default_factory=dict)
    steps_per_report: int = Field(default=1, ge=1, le=1_000_000)
    planned_steps: int | None = Field(default=None, ge=1)
    patience: dict[str, float] = Field(default_factory=dict)
    rungs: dict[str, dict[str, float]] = Field(default_factory=dict)  # isolation rung -> the numbers it reports
    expect: Expect | None

    @field_validator("series")
    @classmethod
    def _parses(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            parse_series(text)
        if STEP_GRAD_NORM in value and STEP_LOSS not in value:
            raise ValueError(f"a {STEP_GRAD_NORM} series is judged beside a {STEP_LOSS} series: give both")
        return value


class PolicyTestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(1, ge=1, le=1)
    policy_files: list[str] = Field(default_factory=lambda: [BUILTIN])
    tests: list[PolicyTest] = Field(min_length=1)


def _managed_defaults() -> dict[str, Any]:
    """A complete managed config (digits, small CNN, Adam 1e-3) that test configs are merged over."""
    from autofix.spec.training import TrainingSpec

    minimal = {"model": {"factory": "autofix.harness.models:small_cnn"}, "data": {"factory": "digits"},
               "optimizer": {"name": "adam", "lr": 1e-3}}
    return TrainingSpec.model_validate(minimal).model_dump(mode="json")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class _Got:
    """The first decision of a test, from the engine (per report) or the in-trial rules (per step)."""

    at: int
    symptom: str
    policy: str
    reason: str
    patch: dict[str, Any]
    then: dict[str, Any] | None
    part: str | None


def _first_in_trial(test: PolicyTest, policies) -> _Got | None:
    """A ``step_loss`` series, one value per optimizer step (and any ``step_grad_norm`` series),
    fed to the in-trial rules exactly as the trial's spike guard feeds them
    (:mod:`autofix.rules.intrial`)."""
    rules = TrialRules(policies, SpikeParams(**test.symptoms.get(LossSpike.name, {})))
    for name, times in test.fired.items():
        if name not in rules.fires:
            raise ValueError(f"fired: no enabled in-trial policy named '{name}'")
        rules.fires[name] = times
    losses = parse_series(test.series[STEP_LOSS])
    norms = parse_series(test.series.get(STEP_GRAD_NORM, ""))
    for step, loss in enumerate(losses):
        if loss is None:
            raise ValueError(f"{STEP_LOSS}: every optimizer step has a loss ('_' at step {step})")
        norm = norms[step] if step < len(norms) else None
        order = rules.judge(loss)
        if order is None and norm is not None:
            order = rules.judge_norm(norm)
        if order is not None:
            then = {"action": order.action.name, **order.action.model_dump(exclude_defaults=True,
                                                                            exclude={"times", "start"})}
            return _Got(step, order.finding.symptom, order.policy, order.finding.reason, {}, then, None)
        rules.stepped(loss, norm)
    return None


def _first_decision(test: PolicyTest, policies) -> _Got | None:
    from autofix.spec.schema import PatienceSpec

    config = test.config if test.knobs else _merge(_managed_defaults(), test.config)
    patience = PatienceSpec.model_validate(test.patience)
    plan = Plan(config=config, metric=test.metric, loss_metric=test.metric, max_attempts=3, aliases=test.knobs,
                soft_min_steps=patience.min_steps, soft_share=patience.share)
    engine = Engine(plan, build_detectors(test.metric, test.symptoms), policies)
    attempt = engine.suggest("t")
    assert attempt is not None  # a0, queued by the engine
    for name, times in test.fired.items():
        policy = policies.get(name)
        if policy is None:
            raise ValueError(f"fired: no enabled policy named '{name}'")
        attempt.fires[name] = times
        attempt.used[name] = policy.schedule()[:times]
    columns = {k: parse_series(v) for k, v in test.series.items()}
    length = max(len(c) for c in columns.values())
    planned = test.planned_steps or (length - 1) * test.steps_per_report
    for i in range(length):
        row = {k: c[i] for k, c in columns.items() if i < len(c) and c[i] is not None}
        row.update({STEP: float(i * test.steps_per_report), PLANNED: float(planned)})
        if test.metric not in row:
            continue  # no report at this iteration
        if engine.observe("t", i, row).stop and attempt.decision is not None:
            _feed_rungs(engine, test.rungs)
            decision = attempt.decision
            return _Got(i, decision.finding.symptom, decision.policy, decision.reason,
                        {c.path: c.new for c in decision.patch}, None, (attempt.ladder or {}).get("part"))
    return None


def _feed_rungs(engine: Engine, rungs: dict[str, dict[str, float]]) -> None:
    """When the decision started an isolation ladder, each queued rung reports the test's numbers
    for it (``rungs``), as its trial would; the decision that follows the ladder is then the one
    compared (a hand-over to model policies), or the ladder's own when it stopped the run."""
    for n in range(len(rungs) + 1):
        queued = [rung for i in engine.queue if (rung := engine.attempts[i].rung) is not None]
        if not rungs or not queued:
            return
        name = queued[0]["rung"]
        if name not in rungs:
            raise ValueError(f"rungs: no numbers for the isolation rung '{name}' the ladder ran")
        engine.suggest(f"rung{n}")
        engine.observe(f"rung{n}", 0, {"epoch": 0, **rungs[name]})


def _check(test: PolicyTest, policies) -> list[str]:
    try:
        got = _first_in_trial(test, policies) if STEP_LOSS in test.series else _first_decision(test, policies)
    except ValueError as exc:
        return [str(exc)]
    want = test.expect
    if want is None:
        if got is None:
            return []
        return [f"expected no decision, got policy '{got.policy}' at {got.at}: {got.reason}"]
    if got is None:
        return [f"expected {want.symptom} -> '{want.policy}' at {want.at}, got no decision"]
    fails = []
    for label, expected, actual in (("at", want.at, got.at), ("symptom", want.symptom, got.symptom),
                                    ("policy", want.policy, got.policy)):
        if expected != actual:
            fails.append(f"{label}: expected {expected!r}, got {actual!r}")
    if want.patch and want.patch != got.patch:
        fails.append(f"patch: expected {want.patch}, got {got.patch}")
    if want.then is not None and want.then != got.then:
        fails.append(f"then: expected {want.then}, got {got.then}")
    if want.part is not None and want.part != got.part:
        fails.append(f"part: expected {want.part!r}, got {got.part!r}")
    return fails


def run_policy_tests(paths: list[str | Path]) -> tuple[int, int, list[str]]:
    """Run every test in the given files/directories (``builtin``: the shipped policies' own);
    ``(tests run, tests failed, failure lines)``."""
    files: list[Path] = []
    for raw in paths:
        p = SHIPPED_POLICIES if str(raw) == BUILTIN else Path(raw)
        files.extend(sorted(p.rglob("*.test.yaml")) if p.is_dir() else [p])
    count, failed, failures, problems = 0, 0, [], []
    for path in files:
        source = load_yaml(path)
        try:
            spec = PolicyTestFile.model_validate(source.data)
        except pydantic.ValidationError as err:
            problems.extend(problems_from_validation(err, source, PolicyTestFile))
            continue
        policies = load_policies([p if p == BUILTIN else str(path.parent / p) for p in spec.policy_files])
        for i, test in enumerate(spec.tests):
            count += 1
            line = source.line_of(("tests", i))
            lines = [f"{path}:{line}: test '{test.name}': {f}" for f in _check(test, policies)]
            failed += bool(lines)
            failures.extend(lines)
    if problems:
        raise InputError(problems)
    return count, failed, failures
