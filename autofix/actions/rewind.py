"""The ``rewind`` action: answer a loss spike in place, inside the trial, and skip its batches.

A policy whose ``then`` lists ``rewind`` candidates runs inside the trial (its symptom must be
judged there: ``loss_spike``). The spike guard (:mod:`autofix.harness.spikes`) first asks whether
the batch or the weights are to blame: weights still sound on an earlier batch mean a bad batch,
skipped with nothing undone; otherwise it restores the model and optimizer from the newest
in-memory snapshot taken before the spike and does not replay the batches consumed since (PaLM
skipped the batches around a spike; replaying them re-spiked). Either way it trains on, in the
same trial. No config is patched and nothing relaunches.
Each fire spends one of the candidate's ``times``, as for any policy; once every candidate is
spent the guard stands down and the epoch-level symptoms answer, with a relaunch.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from autofix.actions.base import Action, Change, NotApplicable

__all__ = ["Rewind"]


class Rewind(Action):
    """Skip a spiking batch, or restore the last snapshot before it when the weights are hurt;
    optionally cut the LR and tighten clipping."""

    name = "rewind"
    summary = ("Answer a loss spike in place (in the trial): skip its batch, or restore the last snapshot before "
               "it when the weights are hurt.")
    in_trial: ClassVar[bool] = True
    action: Literal["rewind"] = "rewind"
    lr_factor: float | None = Field(default=None, gt=0, le=1)
    """Multiply the learning rate by this (OPT-175B lowered it when restarting after a spike); None keeps it."""
    clip_factor: float | None = Field(default=None, gt=0, le=1)
    """Tighten gradient clipping to this share of its bound (OPT-175B: 1.0 -> 0.3); a run that
    does not clip is left so (measured: starting to clip at this share of the recent median
    norm clipped every step and cost a lasting rate rise 4-11% of val_loss)."""

    def patch(self, config: dict, aliases: dict[str, str]) -> list[Change]:
        raise NotApplicable("rewind patches nothing; the trial's spike guard runs it in place")
