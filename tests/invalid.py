"""Invalid values generated from a pydantic model's declared constraints (scikit-learn's
``generate_invalid_param_val`` in spirit): the constraints are written once, on the model, and
every test of the error path reads them from there instead of a hand-written list."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterator
from typing import Any

import annotated_types
from pydantic import BaseModel

__all__ = ["invalid_values"]


def _numeric(annotation: Any) -> type | None:
    """int or float when the field takes numbers (None allowed beside them), else None."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    kinds = {a for a in (args or (annotation,)) if a is not type(None)}
    if kinds <= {int, float} and kinds:
        return float if float in kinds else int
    return None


def _outside(kind: type, constraint: Any) -> Iterator[tuple[Any, str]]:
    """Values just outside one bound: the bound itself where it is strict, the next value past it."""
    step = (lambda v, d: v + d) if kind is int else (lambda v, d: math.nextafter(v, d * math.inf))
    if isinstance(constraint, annotated_types.Gt):
        yield constraint.gt, f"= gt {constraint.gt}"
    elif isinstance(constraint, annotated_types.Ge):
        yield step(constraint.ge, -1), f"just below ge {constraint.ge}"
    elif isinstance(constraint, annotated_types.Lt):
        yield constraint.lt, f"= lt {constraint.lt}"
    elif isinstance(constraint, annotated_types.Le):
        yield step(constraint.le, 1), f"just above le {constraint.le}"


def invalid_values(model: type[BaseModel]) -> Iterator[tuple[str, Any, str]]:
    """``(field, value, why)``: per numeric field, a value past each declared bound and one of
    the wrong type; per string field with a minimum length, one too short."""
    for name, info in model.model_fields.items():
        kind = _numeric(info.annotation)
        if kind is not None:
            for constraint in info.metadata:
                for value, why in _outside(kind, constraint):
                    yield name, value, why
            yield name, "many", "a string for a number"
        for constraint in info.metadata:
            if isinstance(constraint, annotated_types.MinLen) and constraint.min_length > 0:
                yield name, "", f"shorter than min_length {constraint.min_length}"
