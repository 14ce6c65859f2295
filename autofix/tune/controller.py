"""The only module that touches ``ray.tune``'s control plane: a Searcher and a TrialScheduler
sharing one :class:`~autofix.rules.engine.Engine`.

Measured on Ray 2.60 (docs/ray-tune.md): only a scheduler can stop a running trial
(``on_trial_result`` -> ``STOP``), only a searcher can add one (``suggest``). The scheduler
runs first, so a sick trial's patched child is already queued when Tune asks the searcher for
the next config; with ``num_samples=-1`` the searcher ends the run by answering ``FINISHED``.
Relaunching through a searcher with ``reuse_actors=True`` costs ~0.05 s, against ~4.5 s per
outer ``Tuner.fit()`` round.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from autofix.rules.engine import Engine
from autofix.rules.lineage import Attempt
from autofix.tune import interrupt
from autofix.tune.trial import RESERVED

__all__ = ["AutofixScheduler", "AutofixSearcher", "iteration_of", "tune_config"]


def iteration_of(result: dict[str, Any]) -> int:
    """The x-axis of an attempt: the harness's ``epoch`` when reported, else Tune's iteration.

    Keyed this way a warm restart continues its parent's epochs, and a restored trial's
    replayed reports overwrite instead of looking like new ones.
    """
    epoch = result.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and epoch == epoch:
        return int(epoch)
    return int(result.get("training_iteration", 0))


def tune_config(attempt: Attempt, sys_path: list[str], in_trial: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config a trial receives: the attempt's config plus autofix's reserved metadata (with the
    run's in-trial policies when its spike guard is on: :mod:`autofix.rules.intrial`)."""
    meta: dict[str, Any] = {"attempt": attempt.id, "warm_from": attempt.warm_from, "sys_path": sys_path}
    managed = attempt.config.get("spike_guard") or {}
    if in_trial is not None and (managed.get("enabled") or (in_trial.get("guard") or {}).get("enabled")):
        meta["in_trial"] = in_trial
    if attempt.rung is not None:  # the harness runs this isolation rung instead of training (autofix.rules.ladder)
        meta["isolate"] = attempt.rung
    return {**attempt.config, RESERVED: meta}


# Set by ``autofix.tune.resume`` before ``Tuner.restore``: the restored engine is unpickled by Tune,
# without the terminal view or the ledger sink (neither is part of a pickled run).
ON_RESTORE: Callable[[Engine], None] | None = None


class AutofixSearcher(Searcher):
    """Hands out the engine's queued attempts; says FINISHED when the engine is done."""

    def __init__(self, engine: Engine, sys_path: list[str], metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.engine = engine
        self.sys_path = sys_path

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Ray omits FINISHED (a str)
        interrupt.poll()  # a Ctrl-C that came before Tune's handler existed
        if self.engine.done:
            return Searcher.FINISHED
        attempt = self.engine.suggest(trial_id)
        return tune_config(attempt, self.sys_path, self.engine.in_trial) if attempt is not None else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Errors were already recorded, with their text, by AutofixScheduler.on_trial_error.
        if not error:
            self.engine.complete(trial_id)

    def get_state(self) -> dict:
        return {"engine": self.engine.state_dict()}

    def set_state(self, state: dict) -> None:
        self.engine.load_state_dict(state["engine"])
        if ON_RESTORE is not None:  # a resuming driver re-attaches its journal sinks and live view
            ON_RESTORE(self.engine)

    def save(self, checkpoint_path: str) -> None:
        """Called by Tune with its experiment state: the lineage survives a killed driver."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class AutofixScheduler(FIFOScheduler):
    """Feeds each result to the engine; stops the trial when the engine says so."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        interrupt.poll()
        if self.engine.deadline is not None and time.time() >= self.engine.deadline:
            # Tune's own time_budget_s restarts from zero on restore: a resumed run counts here.
            self.engine.expire("wall-clock budget spent (counted across the resume)")
        ckpt = trial.checkpoint.path if trial.checkpoint is not None else None
        verdict = self.engine.observe(trial.trial_id, iteration_of(result), result, checkpoint=ckpt)
        return TrialScheduler.STOP if verdict.stop else TrialScheduler.CONTINUE

    def on_trial_error(self, tune_controller, trial) -> None:
        # Tune calls this for every failure, also the ones FailureConfig retries (the trial is
        # then already ERROR and will be requeued): only the last failure ends the attempt.
        if trial.status == trial.ERROR and trial.should_recover():
            lines = _error_text(trial).strip().splitlines()
            self.engine.journal("attempt_retried", attempt=self.engine.by_trial.get(trial.trial_id),
                                failures=trial.num_failures, error=lines[-1] if lines else "")
            return
        self.engine.complete(trial.trial_id, error=_error_text(trial), log=_error_log(trial))


def _error_log(trial) -> str | None:
    """Where the failure's full traceback is kept: the trial's folder in the run's storage
    (``OUTPUT/tune/...``), not the driver's staging copy under Ray's session folder."""
    if not trial.error_file:
        return None
    folder = getattr(trial, "path", None)
    return f"{folder}/{Path(trial.error_file).name}" if folder else trial.error_file


def _error_text(trial) -> str:
    """The exception Tune recorded for a failed trial (its last failure)."""
    try:
        text = Path(trial.error_file).read_text(encoding="utf-8") if trial.error_file else ""
    except OSError:
        text = ""
    return text.strip() or "the trial failed without an error message"
