"""The ``isolate`` action: run one rung of the isolation ladder instead of patching the config.

A policy whose ``then`` lists ``isolate`` candidates is a ladder: when it fires, the engine runs
the rungs in the listed order as short trials of the managed harness and stops at the first
conclusive one (:mod:`autofix.rules.isolation`, :mod:`autofix.rules.ladder`). Reorder the candidates to
reorder the rungs; disable the policy to switch the ladder off.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from autofix.actions.base import Action, Change, NotApplicable

__all__ = ["Isolate"]


class Isolate(Action):
    """Run one isolation rung: ``overfit_batch``, ``simple_model`` or ``shuffled_labels``."""

    name = "isolate"
    summary = "Run an isolation experiment (overfit one batch, a simple model, shuffled labels)."
    isolates: ClassVar[bool] = True
    action: Literal["isolate"] = "isolate"
    rung: Literal["overfit_batch", "simple_model", "shuffled_labels"]

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        raise NotApplicable("isolate patches nothing; the engine runs the rung as a trial")
