"""What an action is: a pure, validated config patch recorded as a diff.

Like PBT's ``explore()``, an action maps a config to a *new* config (a deep copy); the input
is never mutated, so the parent's config stays in the lineage exactly as it ran. An action
that cannot change anything (value already at its bound, key not exposed by the trainable)
raises :class:`NotApplicable` with the reason, which the engine journals before it tries the
next candidate.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Action", "Change", "KnobMissing", "NotApplicable", "get_path", "has_path", "resolve_path", "set_path"]

_MISSING = object()


class NotApplicable(Exception):
    """The action cannot change this config; the message says why."""


class KnobMissing(NotApplicable):
    """The config has no key for the policy path ``path``: a custom trainable that did not map it
    under ``knobs`` (the engine turns this into a hint naming the path to map)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Change:
    """One changed config value: ``{path, from, to}`` in reports."""

    path: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "from": self.old, "to": self.new}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(data["path"], data["from"], data["to"])


def get_path(config: dict, path: str, default: Any = _MISSING) -> Any:
    """Value at a dotted path (``optimizer.lr``); ``default`` or KeyError when absent."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise KeyError(path)
            return default
        node = node[part]
    return node


def has_path(config: dict, path: str) -> bool:
    """Whether every key along the dotted path exists (a None value counts as present)."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def set_path(config: dict, path: str, value: Any) -> None:
    """Set a dotted path in place, creating intermediate mappings (callers pass a copy)."""
    parts = path.split(".")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def resolve_path(path: str, config: dict, aliases: dict[str, str]) -> str:
    """The trainable's own key for a policy path (a custom trainable maps ``optimizer.lr`` -> ``lr``)."""
    real = aliases.get(path, path)
    if not has_path(config, real):
        hint = f" (for '{path}')" if real != path else ""
        raise KnobMissing(f"the config has no '{real}'{hint}; map it under 'knobs' in the spec", path)
    return real


class Action(BaseModel):
    """Base of every action: validated fields, ``times`` and ``start``, and a pure :meth:`apply`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: ClassVar[str]
    summary: ClassVar[str]
    terminal: ClassVar[bool] = False  # True: ends the run instead of patching (see StopRun)
    in_trial: ClassVar[bool] = False  # True: run inside the trial, in place, instead of patching (see Rewind)

    times: int = Field(default=1, ge=1, le=100)
    """How many fires of its policy in one lineage this candidate answers before the next one."""
    start: Literal["cold", "warm"] = "cold"
    """cold: the patched attempt trains from scratch; warm: from the parent's last healthy checkpoint."""

    def apply(self, config: dict, aliases: dict[str, str] | None = None) -> tuple[dict, list[Change]]:
        """Return ``(patched deep copy, changes)``; never mutates ``config``."""
        patched = copy.deepcopy(config)
        changes = self.patch(patched, aliases or {})
        if not changes:
            raise NotApplicable(f"{self.name} would change nothing")
        return patched, changes

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        """Mutate the (already copied) config; return the changes. Subclasses implement this."""
        raise NotImplementedError

    def set_value(self, config: dict, aliases: dict[str, str], path: str, value: Any) -> list[Change]:
        """Set one (existing) path to ``value``; ``[]`` when it already holds it."""
        real = resolve_path(path, config, aliases)
        old = get_path(config, real)
        if old == value and type(old) is type(value):
            return []
        set_path(config, real, copy.deepcopy(value))
        return [Change(path, copy.deepcopy(old), copy.deepcopy(value))]

    def describe(self) -> str:
        fields = self.model_dump(exclude={"times", "start"}, exclude_none=True)
        fields.pop("action", None)
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
