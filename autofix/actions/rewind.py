"""The ``rewind`` action: put the weights back in place, inside the trial, and skip the batches.

A policy whose ``then`` lists ``rewind`` candidates runs inside the trial (its symptom must be
judged there: ``loss_spike``): the managed harness's spike guard (:mod:`autofix.harness.spikes`)
restores the model and optimizer from the newest in-memory snapshot taken before the spike,
does not replay the batches consumed since (PaLM skipped the batches around a spike; replaying
them re-spiked) and trains on, in the same trial. No config is patched and nothing relaunches.
Each fire spends one of the candidate's ``times``, as for any policy; once every candidate is
spent the guard stands down and the epoch-level symptoms answer, with a relaunch.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from autofix.actions.base import Action, Change, NotApplicable

__all__ = ["Rewind"]


class Rewind(Action):
    """Rewind to the last snapshot before the spike; optionally cut the LR and tighten clipping."""

    name = "rewind"
    summary = "Rewind in place to the last snapshot before a loss spike and skip its batches (in the trial)."
    in_trial: ClassVar[bool] = True
    action: Literal["rewind"] = "rewind"
    lr_factor: float | None = Field(default=None, gt=0, le=1)
    """Multiply the learning rate by this (OPT-175B lowered it when restarting after a spike); None keeps it."""
    clip_factor: float | None = Field(default=None, gt=0, le=1)
    """Tighten norm clipping to this share of its bound (OPT-175B: 1.0 -> 0.3); a run that does not
    clip starts clipping at this share of the median gradient norm of its last steps."""

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        raise NotApplicable("rewind patches nothing; the trial's spike guard runs it in place")
