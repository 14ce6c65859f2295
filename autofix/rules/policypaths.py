"""What a policy's ``where`` may name, checked against the catalogue and the spec.

A ``where`` key is ``evidence.KEY`` (a number the symptom's detector puts in its finding),
``metrics.NAME`` (a metric of the last report) or a config path (``optimizer.lr``). A typo in
any of them used to match silently never (or always, under ``ne``/``not_in``). Now:

* ``evidence.KEY`` not among the symptom's ``evidence_keys``: always an error;
* ``metrics.NAME`` not in :mod:`autofix.spec.catalogue`: an error for a managed-training spec (its
  harness reports nothing else), a warning otherwise (a custom trainable reports its own);
* a config path (in ``where``, or the ``path`` a ``scale``/``set`` action patches): a field of
  the training schema (autofix's own vocabulary, which the shipped policies use), or, for a
  custom trainable, a key of its ``config`` or a ``knobs`` alias; else an error with a spec, a
  warning checked without one.

Pure Python: no torch, no ray.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from autofix.actions import has_path
from autofix.errors import Problem
from autofix.spec.catalogue import is_metric
from autofix.symptoms import SYMPTOMS

__all__ = ["Known", "check_where", "schema_has_path"]


@dataclass(frozen=True)
class Known:
    """What a run can supply to ``where``: the training schema (managed) or a custom config."""

    managed: bool | None = None  # None: no spec given (``autofix policies check`` alone)
    config: dict[str, Any] = field(default_factory=dict)  # a custom trainable's config
    aliases: dict[str, str] = field(default_factory=dict)  # the spec's knobs: policy path -> config key


def schema_has_path(model: type[BaseModel], path: str) -> bool:
    """Whether ``path`` names a field of ``model`` (dotted; any key below a dict or Any field)."""
    current: Any = model
    for part in path.split("."):
        models = _models(current)
        if not models:
            return _open(current)
        hit = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        if hit is None:
            return False
        current = hit.annotation
    return True


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _open(annotation: Any) -> bool:
    """A field below which any key is valid: a dict, Any, or a union holding one."""
    if annotation is Any or annotation is dict or typing.get_origin(annotation) is dict:
        return True
    return any(_open(arg) for arg in typing.get_args(annotation)) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else False


def check_where(policy: Any, known: Known, lines: dict[str, int | None]) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for each ``where`` key of ``policy`` and each path its actions patch;
    ``lines``: the line of each (by its field name: ``when.where.KEY``, ``then[j].path``)."""
    from autofix.spec.training import TrainingSpec

    errors: list[Problem] = []
    warnings: list[Problem] = []
    if policy.when is None:
        return errors, warnings
    file = policy.source.rpartition(":")[0]
    context = f"policy '{policy.name}'"
    keys = [(key, f"when.where.{key}") for key in policy.when.where]
    keys += [(action.path, f"then[{j}].path") for j, action in enumerate(policy.then)
             if isinstance(getattr(action, "path", None), str)]  # the knob an action patches (scale, set)
    for key, where in keys:
        bad, error = _judge(key, policy.when.symptom, known, TrainingSpec)
        if bad:
            (errors if error else warnings).append(Problem(file, lines.get(where), where, bad, context))
    return errors, warnings


def _judge(key: str, symptom: str, known: Known, schema: type[BaseModel]) -> tuple[str, bool]:
    """(what is wrong or "", whether it is an error rather than a warning)."""
    if key.startswith("evidence."):
        allowed = SYMPTOMS[symptom].evidence_keys
        name = key.removeprefix("evidence.")
        return ("", False) if name in allowed else (
            f"{symptom} puts no '{name}' in its evidence; it gives: {', '.join(allowed)}", True)
    if key.startswith("metrics."):
        name = key.removeprefix("metrics.")
        if is_metric(name):
            return "", False
        return (f"'{name}' is no metric autofix reports (docs/reference/metrics.md)"
                + ("" if known.managed else "; fine only if your trainable reports it"), bool(known.managed))
    if schema_has_path(schema, key):  # autofix's own vocabulary: absent from a custom config, it never matches
        return "", False
    if known.managed is False:
        return ("", False) if has_path(known.config, known.aliases.get(key, key)) else (
            f"'{key}' is neither a training-config path nor a key of the spec's config or knobs", True)
    return f"'{key}' is not a field of the training config (docs/reference/spec.md)", bool(known.managed)
