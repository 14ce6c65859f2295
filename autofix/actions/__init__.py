"""Remediation actions, by YAML name. Pure config patches: no torch, no ray."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from autofix.actions.base import Action, Change, NotApplicable, get_path, has_path, resolve_path, set_path
from autofix.actions.config import Scale, Set
from autofix.actions.schedule import AddScheduler

__all__ = [
    "ACTIONS",
    "Action",
    "ActionSpec",
    "Change",
    "NotApplicable",
    "get_path",
    "has_path",
    "resolve_path",
    "set_path",
]

ACTIONS: dict[str, type[Action]] = {cls.name: cls for cls in (AddScheduler, Scale, Set)}

# The YAML form of one candidate action: the ``action`` key picks the class.
ActionSpec = Annotated[Union[tuple(ACTIONS.values())], Field(discriminator="action")]
