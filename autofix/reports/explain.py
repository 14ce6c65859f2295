"""``autofix explain NAME`` and ``autofix schema``: what a symptom, action or policy means,
its parameters and defaults with their sources, all read from the registries and docstrings
the engine itself uses (nothing here is a second copy that could drift)."""

from __future__ import annotations

import inspect
import json
from typing import Any

from pydantic import BaseModel

from autofix.actions import ACTIONS
from autofix.rules.policy import Policy, PolicyFile, PolicySet
from autofix.symptoms import SYMPTOMS

__all__ = ["explain", "json_schema"]


def _fields(model: Any, skip: tuple[str, ...] = ()) -> list[str]:
    lines = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        ann = info.annotation
        kind = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
        lines.append(f"    {name}: {kind} = {default}")
    return lines


def _symptom(name: str, policies: PolicySet) -> str:
    cls = SYMPTOMS[name]
    tags = [cls.severity] + [t for t, on in (("advisory", cls.advisory), ("not fixable by configuration",
                                                                         not cls.fixable)) if on]
    out = [f"symptom {name}: {cls.summary}" + (f" ({', '.join(tags)})" if tags else ""), "",
           inspect.cleandoc(cls.__doc__ or ""), "", "  parameters (override under `symptoms:` in a spec):"]
    out += _fields(cls.Params) or ["    (none)"]
    answering = [p.name for p in policies if p.when and p.when.symptom == name]
    out += ["", f"  answered by: {', '.join(answering) or 'no enabled policy'}"]
    if cls.advice:
        out += ["", "  advice:", *("    " + line for line in cls.advice.splitlines())]
    return "\n".join(out)


def _action(name: str) -> str:
    cls = ACTIONS[name]
    out = [f"action {name}: {cls.summary}", "", inspect.cleandoc(cls.__doc__ or ""), "", "  fields:"]
    out += _fields(cls, skip=("action",))
    return "\n".join(out)


def _policy(policy: Policy) -> str:
    assert policy.when is not None  # a policy without `when` only switches one off: never listed
    where = ", ".join(f"{k} {v.model_dump(exclude_unset=True, by_alias=True)}" for k, v in policy.when.where.items())
    out = [f"policy {policy.name}  ({policy.source})", f"  {policy.description or '(no description)'}",
           f"  when: {policy.when.symptom}{' where ' + where if where else ''}, held for {policy.for_steps} "
           f"optimizer step(s){_patience(policy.when.symptom)}",
           f"  priority {policy.priority}, cooldown {policy.cooldown_steps} step(s), "
           f"at most {policy.fire_limit} fire(s) per {'trial, inside it' if policy.in_trial else 'lineage'}, "
           f"labels {policy.labels or '{}'}"]
    for i, action in enumerate(policy.then, 1):
        start = "in place" if action.in_trial else f"starts {action.start}"
        out.append(f"  {i}. {action.describe()}  x{action.times}, {start}: {type(action).summary}")
    return "\n".join(out)


def _patience(symptom: str) -> str:
    cls = SYMPTOMS.get(symptom)
    if cls is None or cls.severity == "hard":
        return " (a hard symptom: may act at once)"
    return " (a soft symptom: acts only after the run's patience, on an attempt that is not healthy)"


def explain(name: str, policies: PolicySet, prefer: str = "symptom") -> str | None:
    """Text for a symptom, action or policy name; None when nothing has that name.

    A name can be a symptom and a policy at once (``overfitting``): ``prefer`` says which is
    shown (``autofix policies explain`` prefers the policy), and the text says the other exists.
    """
    policy = policies.get(name)
    if policy is not None and (prefer == "policy" or (name not in SYMPTOMS and name not in ACTIONS)):
        also = f"\n\n  ('{name}' is also a symptom: autofix explain {name})" if name in SYMPTOMS else ""
        return _policy(policy) + also
    if name in SYMPTOMS:
        also = f"\n\n  ('{name}' is also a policy: autofix policies explain {name})" if policy is not None else ""
        return _symptom(name, policies) + also
    if name in ACTIONS:
        return _action(name)
    return None


def json_schema(kind: str) -> str:
    """JSON Schema of a spec or a policy file, generated from the pydantic models."""
    from autofix.spec.schema import Spec

    models: dict[str, type[BaseModel]] = {"spec": Spec, "policy": PolicyFile}
    model = models[kind]
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"autofix {kind}"
    return json.dumps(schema, indent=2)
