"""Remediation actions, by YAML name. Pure config patches: no torch, no ray."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from autofix.actions.base import Action, Change, KnobMissing, NotApplicable, get_path, has_path, resolve_path, set_path
from autofix.actions.config import Scale, Set, StopRun
from autofix.actions.data import Augment, NormalizeInputs, ReweightClasses
from autofix.actions.isolate import Isolate
from autofix.actions.model import AddBatchNorm, AddDropout, Reinitialize, SetOutputActivation, SwapActivation
from autofix.actions.optim import ClipGradients, SwitchOptimizer, WeightDecay
from autofix.actions.rewind import Rewind
from autofix.actions.schedule import AddScheduler, Warmup

__all__ = [
    "ACTIONS",
    "Action",
    "ActionSpec",
    "Change",
    "KnobMissing",
    "NotApplicable",
    "get_path",
    "has_path",
    "resolve_path",
    "set_path",
]

ACTIONS: dict[str, type[Action]] = {
    cls.name: cls
    for cls in (
        AddBatchNorm, AddDropout, AddScheduler, Augment, ClipGradients, Isolate, NormalizeInputs, Reinitialize,
        ReweightClasses, Rewind, Scale, Set, SetOutputActivation, StopRun, SwapActivation, SwitchOptimizer, Warmup,
        WeightDecay,
    )
}

# The YAML form of one candidate action: the ``action`` key picks the class.
if TYPE_CHECKING:  # to a type checker one candidate is an Action; pydantic gets the real union
    ActionSpec = Action
else:  # a union built from the registry at import time, which `X | Y` syntax cannot spell
    ActionSpec = Annotated[Union[tuple(ACTIONS.values())], Field(discriminator="action")]  # noqa: UP007
