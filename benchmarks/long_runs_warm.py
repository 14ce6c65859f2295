"""Block "long runs" (issue 17): autofix's own epoch-level warm relaunch, the real engine deciding.

Without the spike guard a managed trial reports once per epoch, and the driver's
:class:`autofix.rules.engine.Engine` judges each report with the symptom detectors and the
shipped policies; on a hard symptom a policy stops the trial and queues a patched child started
warm from the parent's last healthy checkpoint; on a soft one the parent may keep training beside
the fix as the run left alone (a control), and the engine settles which attempt to keep.

Here the engine is built as ``autofix run`` builds it (:func:`autofix.tune.runner.assemble` on a
spec made from the case: a managed ``training:`` section of ``EVAL_CHUNKS`` "epochs", each one
evaluation chunk of the case; spike guard off; shipped policies, default budget, patience and
success bar; probes on as in a real run). It is driven as the controller drives it, without Ray:
``suggest``, one ``observe`` per epoch, ``complete`` when the trial ends, attempts one after the
other (a control kept running is trained to its end too). Each report carries what
:func:`autofix.harness.loop.run_training` reports (epoch 0: the untrained model; then each epoch's
training, evaluation and rate), placed at the trajectory step out of the case's steps, and, as
Tune shows the scheduler, the checkpoint of the report before it. Checkpoints are the harness's
(:func:`autofix.harness.checkpoint.save_checkpoint`), and a child starts from the one the engine
names (``attempt.warm_from``) through :func:`autofix.harness.checkpoint.prepare`, as a relaunched
trial does: weights, optimizer moments, the patched rate. Its data resumes at the checkpoint's
batch position (:class:`long_runs_cases.Stream`'s ``start``): a corrupted shard past it is met
again, an LR burst covering it is in force.

Not emulated: reports between epochs (the engine shows them, never judges them), and the ledger
(off: the bench must not depend on, nor write to, this machine's ``~/.autofix``).

Counted: compute = every ``optimizer.step()`` of every attempt, the discarded ones included;
relaunches = attempts launched after the first; the model judged is the one of the attempt the
engine keeps (its winner, else the settled verdict's ``keep``, else the last attempt that ran its
steps: ``kept``/``kept_by`` in the row). ``detected_at`` is the batch position of the report the
engine first decided on (a stop or a queued fix), so the detection lag is bounded below by the
distance from the onset to the end of its chunk (up to ``steps / EVAL_CHUNKS`` positions).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autofix.harness.builders import normalize_config
from autofix.harness.checkpoint import save_checkpoint
from autofix.harness.isolation import run_rung
from autofix.judge.verdict import PLANNED, STEP
from autofix.rules import settle
from autofix.rules.engine import Engine
from autofix.rules.lineage import Attempt
from autofix.spec.schema import load_spec
from autofix.tune.runner import assemble

from long_runs_cases import Case, Stream
from long_runs_methods import EVAL_CHUNKS, MAX_BATCHES, Run, build_trainer, judge_val_loss

__all__ = ["Relaunched", "spec_of", "train_warm_relaunch"]


def spec_of(case: Case, seed: int) -> dict[str, Any]:
    """The spec a user would write for the case: its config trained for ``EVAL_CHUNKS`` epochs."""
    return {"version": 1, "name": f"long-runs-{case.name}".replace("_", "-"), "ledger": False,
            "training": {**case.config, "epochs": EVAL_CHUNKS, "seed": seed}}


@dataclass
class Relaunched(Run):
    """A run of the warm-relaunch method: the attempts it took and the one kept."""

    attempts: list[dict[str, Any]] = field(default_factory=list)  # per attempt: id, start, patch, outcome, ...
    kept: str | None = None  # the attempt whose model is judged
    kept_by: str = ""  # "winner", "keep" (the settled verdict's), or "last that ran its steps"
    status: str = ""  # the settled verdict's status
    isolation: list[dict[str, Any]] = field(default_factory=list)  # rungs of the isolation ladder run, if any


@dataclass
class _Trial:
    """One attempt as trained here."""

    attempt: Attempt
    trainer: Any
    stream: Stream
    start_step: int
    first: int  # the first epoch it runs (0: it reports the untrained model first)
    steps: list[int] = field(default_factory=lambda: [0])
    curve: list[tuple[int, float]] = field(default_factory=list)
    decided_at: int | None = None

    @property
    def trajectory(self) -> int:
        return self.start_step + self.steps[0]


class _Driver:
    """Plays the controller and the trials for one engine (see the module)."""

    def __init__(self, case: Case, seed: int, inject: bool, out: Path) -> None:
        self.case, self.seed, self.out = case, seed, out
        self.injection = case.injection if inject else None
        self.engine: Engine
        self.engine, self.journal = assemble(load_spec(spec_of(case, seed)), out)
        self.saved: dict[str, tuple[int, int]] = {}  # checkpoint -> (trajectory step, batch position)
        self.trials: list[_Trial] = []
        self.detected_at: int | None = None
        self.rungs: list[dict[str, Any]] = []  # the isolation ladder's rungs run, if any

    def run(self) -> None:
        while not self.engine.done:
            attempt = self.engine.suggest(f"t{len(self.trials)}")
            if attempt is None:
                break
            if attempt.rung is not None:  # a rung of the isolation ladder: the harness's experiment, not training
                self._rung(attempt)
                continue
            self.trials.append(self._start(attempt))
            self._train(self.trials[-1])
            queued = len(self.engine.queue)
            self.engine.complete(attempt.trial_id or "")  # may decide at the end: unhealthy, a fix queued
            self._detected(self.trials[-1], len(self.engine.queue) > queued)
        self.engine.finish("the bench ran every attempt the engine launched")
        self.journal.close()

    def _rung(self, attempt: Attempt) -> None:
        """As ``managed_trainable`` runs it: one report of its numbers (its optimizer steps, on its own
        small batches, are listed as ``isolation_steps``, not added to the run's compute)."""
        trial_id = attempt.trial_id or ""

        def report(metrics: dict[str, Any], _checkpoint: str | None) -> None:
            self.rungs.append({"id": attempt.id, **attempt.rung, "steps": metrics.get("steps")})
            self.engine.observe(trial_id, 0, metrics, None)

        run_rung(attempt.config, attempt.rung or {}, report)
        self.engine.complete(trial_id)

    def _start(self, attempt: Attempt) -> _Trial:
        warm = attempt.warm_from
        cfg = normalize_config({**attempt.config, "warm_start": warm})
        trainer, first, steps = build_trainer(cfg)  # first: the checkpoint's epoch + 1, as a relaunched trial starts
        start_step, position = self.saved[warm] if warm else (0, 0)
        trial = _Trial(attempt, trainer, None, start_step, first, steps)  # type: ignore[arg-type]  # the stream needs the trial
        trial.stream = Stream(trainer.train, self.injection, trainer.optimizer, lambda: trial.trajectory,
                              position + MAX_BATCHES * self.case.steps, int(cfg["model"]["args"]["num_classes"]),
                              start=position)
        return trial

    def _train(self, trial: _Trial) -> None:
        trainer, previous, first = trial.trainer, None, trial.first
        if first == 0:  # epoch 0: the untrained model, from the loader's own epoch 0
            metrics = {**trainer.initial_metrics(), **trainer.evaluate(), "lr": trainer.lr()}
            trial.curve.append((0, judge_val_loss(trainer.model, trainer.val)))
            if self._report(trial, 0, metrics, None):
                return
            first = 1
        trainer.train = trial.stream
        for epoch in range(first, EVAL_CHUNKS + 1):
            trial.stream.target = self.case.steps * epoch // EVAL_CHUNKS
            lr = trainer.lr()
            metrics = {**trainer.train_epoch(epoch), **trainer.evaluate(), "lr": lr}
            trainer.step_scheduler(metrics["val_loss"])
            trial.curve.append((trial.trajectory, judge_val_loss(trainer.model, trainer.val)))
            stop = self._report(trial, epoch, metrics, previous)
            previous = self._keep(trainer, epoch, trial)
            if stop or trial.stream.exhausted:
                return

    def _report(self, trial: _Trial, epoch: int, metrics: dict[str, Any], checkpoint: str | None) -> bool:
        """One report to the engine; whether it stops the trial."""
        row = {"epoch": epoch, **{k: float(v) for k, v in metrics.items()},
               STEP: float(trial.trajectory), PLANNED: float(self.case.steps)}
        queued = len(self.engine.queue)
        verdict = self.engine.observe(trial.attempt.trial_id or "", epoch, row, checkpoint)
        self._detected(trial, verdict.stop or len(self.engine.queue) > queued)
        return verdict.stop

    def _detected(self, trial: _Trial, acted: bool) -> None:
        if acted and self.detected_at is None:
            self.detected_at = trial.stream.position - 1  # the last batch the report had seen

    def _keep(self, trainer: Any, epoch: int, trial: _Trial) -> str:
        """The harness's checkpoint of this epoch, kept where a relaunch can read it."""
        directory = Path(self.out, f"{trial.attempt.id}-e{epoch}")
        shutil.move(save_checkpoint(trainer, epoch), directory)
        self.saved[str(directory)] = (trial.trajectory, trial.stream.position)
        return str(directory)


def _kept(driver: _Driver) -> tuple[_Trial | None, str, str]:
    """The attempt whose model is judged, why it is that one, and the run's status."""
    engine = driver.engine
    final = settle.verdict(engine.attempts, engine.plan.metric, engine.plan.mode)
    by_id = {t.attempt.id: t for t in driver.trials}
    for name, pick in (("winner", engine.winner), ("keep", final.keep)):
        if pick in by_id:
            return by_id[pick], name, final.status
    ran = [t for t in driver.trials if t.trajectory >= driver.case.steps]
    return (ran[-1] if ran else None), "last that ran its steps", final.status


def _attempt_row(trial: _Trial) -> dict[str, Any]:
    a = trial.attempt
    return {"id": a.id, "parent": a.parent, "role": a.role, "start": a.start, "from_step": trial.start_step,
            "patch": [c.to_dict() for c in a.patch], "policy": a.policy, "answers": a.answers,
            "outcome": a.outcome, "reason": a.reason, "compute": trial.steps[0], "trajectory": trial.trajectory,
            "val_loss": trial.curve[-1][1] if trial.curve else float("nan")}


def train_warm_relaunch(case: Case, seed: int, *, inject: bool = True) -> Relaunched:
    """Train ``case`` as ``autofix run`` would heal it between epochs (see the module)."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="long-runs-warm-") as out:
        driver = _Driver(case, seed, inject, Path(out))
        driver.run()
    kept, kept_by, status = _kept(driver)
    curve = kept.curve if kept is not None else []
    return Relaunched(
        val_loss=curve[-1][1] if curve else float("nan"), curve=curve,
        compute=sum(t.steps[0] for t in driver.trials),
        trajectory=kept.trajectory if kept is not None else 0,
        reached=kept is not None and kept.trajectory >= case.steps, detected_at=driver.detected_at,
        onset_step=next((t.stream.onset_step for t in driver.trials if t.stream.onset_step is not None), None),
        corrupted_at=[p for t in driver.trials for p in t.stream.corrupted],
        seconds=round(time.perf_counter() - began, 2), attempts=[_attempt_row(t) for t in driver.trials],
        kept=kept.attempt.id if kept is not None else None, kept_by=kept_by, status=status, isolation=driver.rungs)
