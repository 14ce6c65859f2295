"""Block "long runs" (issue 17): one training run of a case, and the methods compared on it.

Runs go straight through the managed harness's trainer (``_Trainer.train_epoch``, the loop
``autofix run`` trains with), without Ray: a few thousand steps take seconds, and each step's
count matters, not Tune's scheduling. The trainer's batch loader is replaced by the case's
:class:`long_runs_cases.Stream`; ``train_epoch`` is called once per evaluation chunk, each chunk
ending when the kept trajectory reaches the next tenth of the case's steps.

What is counted, independently of the guard: *compute* is every ``optimizer.step()`` run (a
step-post hook), rolled-back ones included; the *trajectory* is the steps on the path kept
(the guard's own count where a guard runs, else compute). The *judge* is our own cross-entropy
over the whole validation set, not the harness's evaluation.

Methods (``METHODS``): ``left_alone``; ``guard`` (``training.spike_guard`` with the shipped
``loss-spike-rewind`` policy: three plain rewinds, then rewinds that also halve the LR and tighten
clipping); ``guard_skip_only`` (every rewind plain: PaLM's skipping alone); ``guard_lr_cut`` (every
rewind halves the LR); ``detect_stop`` (stop at the first spike the same
rule detects, keep the model at the stop: Lightning's EarlyStopping on a non-finite metric,
llm-foundry's ``KillLossSpike``); ``restart_low_lr`` (after that detection, train again from
scratch at ``RESTART_LR_SCALE`` x the rate; compute = steps to the detection + the restart);
``warm_relaunch`` (no guard: autofix's engine judges one report per chunk and relaunches a patched
child warm from a checkpoint, :mod:`long_runs_warm`; also run on the clean controls, where a
relaunch is a false alarm; not on the DDP case, whose forked ranks run one attempt each).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autofix.harness.builders import normalize_config
from autofix.harness.checkpoint import prepare
from autofix.harness.loop import _Trainer, attach_guard
from autofix.rules.intrial import TrialRules, in_trial_data
from autofix.rules.policy import BUILTIN, Policy, load_policies

from long_runs_cases import Case, Stream

__all__ = ["GUARD", "METHODS", "POLICIES", "RESTART_LR_SCALE", "Run", "StopAtSpike", "build_trainer", "run_case",
           "stop_and_restart", "train"]

# The guard as a user turns it on, and the in-trial policies it is run with: the shipped one, and
# two variants written as a user would (the same ten rewinds; each plain, or each halving the LR).
GUARD: dict[str, Any] = {"enabled": True}


def _policy(*then: dict[str, Any]) -> Policy:
    return Policy.model_validate({"name": "loss-spike-rewind", "when": {"symptom": "loss_spike"},
                                  "then": [{"action": "rewind", **t} for t in then]})


POLICIES: dict[str, list[Policy]] = {
    "guard": [p for p in load_policies([BUILTIN]) if p.in_trial],
    "guard_skip_only": [_policy({"times": 10})],
    "guard_lr_cut": [_policy({"times": 10, "lr_factor": 0.5})],
}
RESTART_LR_SCALE = 0.1  # issue 17: "restart from scratch with a lower LR" (10x lower)
EVAL_CHUNKS = 10  # val_loss judged at every tenth of the run
MAX_BATCHES = 3  # x the case's steps: a run whose trajectory cannot advance (all losses NaN) ends
METHODS = ("left_alone", "ideal_skip", "guard", "guard_skip_only", "guard_lr_cut", "detect_stop", "restart_low_lr",
           "warm_relaunch")


@dataclass
class Run:
    """One training run, as the bench saw it."""

    val_loss: float  # the judge's, at the end
    curve: list[tuple[int, float]]  # (trajectory step, val_loss) at each chunk's end
    compute: int  # optimizer steps run, rolled-back ones included
    trajectory: int  # steps on the path kept
    reached: bool  # the trajectory reached the case's steps
    rewinds: list[tuple[int, int, int]] = field(default_factory=list)  # (batch position, from_step, to_step)
    detected_at: int | None = None  # detect_stop: the batch position it stopped at
    onset_step: int | None = None  # the trajectory step when the injection's first batch was handed out
    corrupted_at: list[int] = field(default_factory=list)  # batch positions handed out corrupted
    seconds: float = 0.0
    loss_onset: int | None = None  # left alone: the batch position where its loss left its range (spike_onset)


def judge_val_loss(model: torch.nn.Module, val: Any) -> float:
    """Mean cross-entropy over the whole validation set (the bench's own judge)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in val.epoch(0):
            total += float(F.cross_entropy(model(x), y, reduction="sum"))
            count += len(y)
    model.train()
    return total / count if count else math.nan


class StopAtSpike:
    """Stands where the harness keeps its guard: judges each step's loss by the same rules, and
    on the first spike ends the run (the batch is not trained on) instead of rewinding."""

    def __init__(self, stream: Stream) -> None:
        self.rules, self.stream = TrialRules([_policy({"times": 1})]), stream
        self.detected_at: int | None = None

    def spiked(self, loss: float) -> object | None:
        return self._stop(self.rules.judge(loss))

    @property
    def judges_norms(self) -> bool:
        return self.rules.params.grad_norm

    def grad_spiked(self, grad_norm: float) -> object | None:
        return self._stop(self.rules.judge_norm(grad_norm))

    def _stop(self, order: object | None) -> object | None:
        if order is not None:
            self.detected_at = self.stream.position - 1
            self.stream.stop()
        return order

    def stepped(self, loss: float, grad_norm: float | None = None, batch: Any = None) -> None:
        self.rules.stepped(loss, grad_norm)

    def metrics(self) -> dict[str, float]:
        return {}


ONSET_WINDOW = 128  # steps before the injection whose largest loss is the range a spike leaves


class _LossLog:
    """Stands where the harness keeps its guard in a run left alone: notes every step's loss
    (under DDP the mean over the ranks) by batch position, and judges nothing."""

    judges_norms = False

    def __init__(self, stream: Stream) -> None:
        self.stream, self.losses = stream, []  # type: list[tuple[int, float]]

    def spiked(self, loss: float) -> None:
        self.losses.append((self.stream.position - 1, loss))

    def stepped(self, loss: float, grad_norm: float | None = None, batch: Any = None) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        return {}


def spike_onset(losses: list[tuple[int, float]], onset: int, window: int = ONSET_WINDOW) -> int | None:
    """The spike's own onset, which no detector defines: the first batch position at or after the
    injection's ``onset`` whose loss (left alone) is above every loss of the ``window`` steps
    before the injection, or not finite. A corrupted batch spikes at once; a rate rise takes
    steps to move the loss, and a loss-based detector cannot see it before then."""
    before = [loss for p, loss in losses if onset - window <= p < onset and math.isfinite(loss)]
    top = max(before, default=math.inf)
    return next((p for p, loss in losses if p >= onset and not (loss <= top)), None)


class _Recorder:
    """Stands between the harness and its guard: notes the batch position (in the stream) of
    each rewind, with the rewind's own from and to steps."""

    def __init__(self, guard: Any, stream: Stream) -> None:
        self.guard, self.stream = guard, stream
        self.rewinds: list[tuple[int, int, int]] = []

    def spiked(self, loss: float) -> Any:
        return self._note(self.guard.spiked(loss))

    @property
    def judges_norms(self) -> bool:
        return bool(self.guard.judges_norms)

    def grad_spiked(self, grad_norm: float) -> Any:
        return self._note(self.guard.grad_spiked(grad_norm))

    def _note(self, rewind: Any) -> Any:
        if rewind is not None:
            self.rewinds.append((self.stream.position - 1, int(rewind.from_step), int(rewind.to_step)))
        return rewind

    def stepped(self, loss: float, grad_norm: float | None = None, batch: Any = None) -> None:
        self.guard.stepped(loss, grad_norm, batch)

    def metrics(self) -> dict[str, float]:
        return self.guard.metrics()


def build_trainer(cfg: dict[str, Any], parallel: Any = None) -> tuple[_Trainer, int, list[int]]:
    """The harness's trainer for a normalized ``cfg``, seeded as ``run_training`` seeds a trial and
    prepared (a ``warm_start`` in ``cfg`` loaded); the first epoch to run, and a one-item counter of
    every ``optimizer.step()`` it takes (compute)."""
    torch.set_num_threads(1)
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    trainer = _Trainer(cfg, parallel)
    first = prepare(trainer, None)
    steps = [0]
    trainer.optimizer.register_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    return trainer, first, steps


def train(case: Case, seed: int, *, inject: bool = True, guard: str | None = None,
          stop_at_spike: bool = False, lr_scale: float = 1.0, drop: bool = False, parallel: Any = None) -> Run:
    """Train ``case`` for its steps on the kept trajectory (see the module); ``parallel``: as one
    rank of a DDP run (:class:`autofix.harness.distributed.Parallel`)."""
    began = time.perf_counter()
    cfg = normalize_config({**case.config, "epochs": EVAL_CHUNKS, "seed": seed, "probes": {"enabled": False}})
    cfg["optimizer"]["lr"] *= lr_scale
    trainer, _, steps = build_trainer(cfg, parallel)
    cfg["spike_guard"] = GUARD
    spike_guard = None if guard is None else attach_guard(trainer, in_trial_data(POLICIES[guard]))

    def trajectory() -> int:  # the guard's count of the steps kept (the one read of its insides)
        return spike_guard.step if spike_guard is not None else steps[0]

    injection = case.injection if inject else None
    if drop and injection is not None:  # the clean run that never trains on the window's batches
        injection = dataclasses.replace(injection, kind="drop")
    stream = Stream(trainer.train, injection, trainer.optimizer, trajectory,
                    MAX_BATCHES * case.steps, int(case.config["model"]["args"]["num_classes"]))
    trainer.train = stream
    recorder = _Recorder(spike_guard, stream) if spike_guard is not None else None
    watcher = StopAtSpike(stream) if stop_at_spike else None
    log = _LossLog(stream) if injection is not None and not drop and not (recorder or watcher) else None
    trainer.guard = recorder or watcher or log  # type: ignore[assignment]  # the four calls the loop makes of a guard
    curve = [(0, judge_val_loss(trainer.model, trainer.val))]
    for chunk in range(1, EVAL_CHUNKS + 1):
        stream.target = case.steps * chunk // EVAL_CHUNKS
        trainer.train_epoch(chunk)
        curve.append((trajectory(), judge_val_loss(trainer.model, trainer.val)))
        trainer.step_scheduler(curve[-1][1])  # once per chunk, as the harness steps it once per epoch
        if stream.exhausted:
            break
    return Run(val_loss=curve[-1][1], curve=curve, compute=steps[0], trajectory=trajectory(),
               reached=trajectory() >= case.steps, rewinds=recorder.rewinds if recorder is not None else [],
               detected_at=watcher.detected_at if watcher is not None else None, onset_step=stream.onset_step,
               corrupted_at=list(stream.corrupted), seconds=round(time.perf_counter() - began, 2),
               loss_onset=spike_onset(log.losses, injection.onset) if log is not None and injection else None)


def run_case(case: Case, seed: int, ddp: str = "ray") -> list[dict[str, Any]]:
    """Every method on one (case, seed), plus the clean twin (and the guard on it): JSON rows;
    ``ddp``: how a DDP case's ranks run (:data:`long_runs_ddp.LAUNCHERS`)."""
    if "ddp" in case.tags:
        from long_runs_ddp import run_ddp_case  # imported here: it imports this module

        return run_ddp_case(case, seed, ddp)
    from long_runs_warm import train_warm_relaunch  # imported here: it imports this module

    clean = train(case, seed, inject=False)
    rows = [_row(case, seed, "clean", clean, clean, 0)]
    rows.append(_row(case, seed, "clean_guard", train(case, seed, inject=False, guard="guard"), clean, 0))
    warm = train_warm_relaunch(case, seed)
    rows.append(_row(case, seed, "warm_relaunch", warm, clean, len(warm.attempts) - 1))
    if case.control:
        return rows
    rows.append(_row(case, seed, "left_alone", train(case, seed), clean, 0))
    rows.append(_row(case, seed, "ideal_skip", train(case, seed, drop=True), clean, 0))
    for method in POLICIES:
        rows.append(_row(case, seed, method, train(case, seed, guard=method), clean, 0))
    return with_loss_onset(rows + stop_and_restart(case, seed, clean, functools.partial(train, case, seed)))


def with_loss_onset(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One (case, seed)'s rows, each with the spike's own onset (the left-alone run's
    ``loss_onset``) and its first alarm's lag from it (``loss_onset_lag``; None: no alarm after
    the injection, or a loss that never left its range)."""
    onset = next((r["loss_onset"] for r in rows if r["method"] == "left_alone"), None)
    for r in rows:
        first = r["first_alarm"]
        r["loss_onset"] = onset
        r["loss_onset_lag"] = first - onset if first is not None and onset is not None else None
    return rows


def stop_and_restart(case: Case, seed: int, clean: Run, run: Callable[..., Run]) -> list[dict[str, Any]]:
    """The rows of detect-and-stop and of a restart from scratch at ``RESTART_LR_SCALE`` x the
    rate after that stop (its compute counts the stopped run's too); ``run(**kwargs)`` trains."""
    stopped = run(stop_at_spike=True)
    rows = [_row(case, seed, "detect_stop", stopped, clean, 0)]
    if stopped.detected_at is None:  # nothing detected: the run went on to its end, nothing to restart
        return [*rows, _row(case, seed, "restart_low_lr", stopped, clean, 0)]
    restart = run(lr_scale=RESTART_LR_SCALE)
    restart.compute += stopped.compute
    restart.detected_at = stopped.detected_at
    restart.seconds = round(restart.seconds + stopped.seconds, 2)
    return [*rows, _row(case, seed, "restart_low_lr", restart, clean, 1)]


def _row(case: Case, seed: int, method: str, run: Run, clean: Run, relaunches: int) -> dict[str, Any]:
    """The JSON row of one run: what it cost and how it ended, against the clean twin.

    Detection is by batch position, the injection's own unit: the first rewind (or stop) at or
    after the onset; rewinds or a stop before it are false alarms (``early_alarms``)."""
    onset = None if case.injection is None or method.startswith("clean") else case.injection.onset
    alarms = [p for p, *_ in run.rewinds] + ([run.detected_at] if run.detected_at is not None else [])
    after = [p for p in alarms if onset is not None and p >= onset]
    return {**asdict(run), "case": case.name, "seed": seed, "method": method, "control": case.control,
            "tags": list(case.tags), "steps": case.steps, "onset": onset, "clean_val_loss": clean.val_loss,
            "val_ratio": run.val_loss / clean.val_loss if clean.val_loss > 0 else math.nan,
            "compute_ratio": run.compute / clean.compute if clean.compute else math.nan,
            "relaunches": relaunches, "early_alarms": len(alarms) - len(after) if onset is not None else len(alarms),
            "first_alarm": after[0] if after else None,  # the batch position of the detection
            "detection_lag": after[0] - onset if after and onset is not None else None,
            # what the burst case shows: corrupted batches the run did not reject (trained on, unless
            # the stream ended first), and rewinds that restored a snapshot *newer* than their step
            "corrupted_trained": len(set(run.corrupted_at) - {p for p, *_ in run.rewinds} - {run.detected_at}),
            "forward_jumps": sum(1 for _, f, t in run.rewinds if t > f)}
