"""The managed training loop: train a config-described model, report metrics every epoch.

:func:`run_training` knows nothing about Ray: the caller injects ``report(metrics, ckpt_dir)``
(a thin wrapper around ``ray.train.report`` in production, a list append in tests). Epoch 0 is
an evaluation before any step, so detectors get a baseline (initial loss, initial grad norm).
With ``config["probes"]["enabled"]`` an :class:`autofix.probes.Probe` adds per-layer gradient,
update, activation, input, label and prediction statistics to every report.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

import numpy as np
import torch

from autofix.harness.anatomy import nonfinite_metrics
from autofix.harness.assemble import build_run
from autofix.harness.builders import LossFn, build_optimizer, normalize_config
from autofix.harness.checkpoint import STATE_FILE, prepare, save_checkpoint
from autofix.harness.distributed import Parallel, all_finite, mean_across
from autofix.harness.evaluate import (
    chance_metrics,
    evaluate,
    initial_loss_metrics,
    num_classes,
    train_labels,
    val_targets,
)
from autofix.harness.gradients import clip_gradients, grad_norm
from autofix.harness.losses import CLASS_ID_LOSSES
from autofix.harness.spikes import SpikeGuard, reference_loss
from autofix.harness.stepreports import StepReporter
from autofix.harness.weighting import output_width
from autofix.judge.verdict import PLANNED, STEP
from autofix.probes import Probe

__all__ = ["STATE_FILE", "Report", "run_training"]

Report = Callable[[dict[str, Any], str | None], None]
_EPOCH0_TRAIN_BATCHES = 20  # enough for a stable initial-loss estimate, cheap on big sets
_EVAL_BATCH_MIN = 256  # evaluation holds no graph, so bigger batches are free speed


def _spread(x: torch.Tensor, first: torch.Tensor) -> float:
    """The largest |x_i - first| of a batch (inf where a difference is not finite: NaN in the
    data is no evidence that the inputs are all the same)."""
    if x.shape[1:] != first.shape[1:]:
        return math.inf
    diff = (x.float() - first.float()).abs()
    return float(diff.amax()) if bool(torch.isfinite(diff).all()) else math.inf


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


class _Trainer:
    """Holds the built objects of one run; each method is one phase of an epoch."""

    def __init__(self, cfg: dict[str, Any], parallel: Parallel | None = None) -> None:
        self.cfg, self.parallel = cfg, parallel
        run = build_run(cfg, _EVAL_BATCH_MIN, parallel)  # data knobs, sampler, surgery, init, class weights
        train = run.train_set
        self.train, self.val, self.model, self.train_set = run.train, run.val, run.model, train
        self.loss_fn: LossFn = run.loss_fn
        self.optimizer = build_optimizer(cfg["optimizer"], self.model.parameters())
        self.scheduler: Any = None  # built after any checkpoint load, see _prepare
        probes = cfg["probes"]
        # The epoch length fixes which steps are sampled, so a restored run samples the same;
        # it also places every report in training: step and planned_steps.
        self.steps_per_epoch = self.train.steps_per_epoch() or 0
        self.probe = Probe(self.model, self.optimizer, every_steps=probes["every_steps"],
                           max_overhead=probes.get("max_overhead", 0.01),
                           enabled=probes["enabled"], steps_per_epoch=self.steps_per_epoch or None)
        labels = train_labels(train, self.loss_fn.name)  # once: labels are fixed
        if self.probe.enabled:
            self.probe.set_labels(labels)
        self.chance = self._chance(labels)
        # Training passes go through the DDP wrapper; probes, evaluation and checkpoints keep the
        # plain module (autofix.harness.distributed).
        self.net = parallel.wrap(self.model) if parallel is not None else self.model
        self.guard: SpikeGuard | None = None  # made after a restore (autofix.harness.spikes)
        self.restored_guard: dict[str, Any] | None = None  # its state in a retried trial's checkpoint
        self.reporter: StepReporter | None = None  # reports between epochs (autofix.harness.stepreports)

    def _chance(self, labels: torch.Tensor | None) -> dict[str, float]:
        """The best constant predictor's scores (autofix.judge.verdict: nothing at chance is healthy).

        The label entropy is a bar only for an unweighted classification cross-entropy trained
        on the natural class shares: class weights change what the loss measures, and a
        balanced sampler teaches other shares than the validation set has."""
        name = self.loss_fn.name
        natural = self.cfg["loss"].get("class_weights") is None and self.cfg["data"].get("sampler") != "balanced"
        entropy = natural and (name in CLASS_ID_LOSSES or (
            name == "bce_with_logits" and output_width(self.model, self.train_set) == 1))
        true = val_targets(self.val, name)
        return chance_metrics(labels, true, entropy) if true is not None else {}

    def position(self, epoch: int) -> dict[str, float]:
        """Where a report stands in training: optimizer steps so far and planned in all."""
        if not self.steps_per_epoch:
            return {}
        return {STEP: float(epoch * self.steps_per_epoch),
                PLANNED: float(self.cfg["epochs"] * self.steps_per_epoch)}

    def lr(self) -> float:
        """Learning rate of param group 0 right now."""
        return float(self.optimizer.param_groups[0]["lr"])

    def initial_metrics(self) -> dict[str, Any]:
        """Epoch 0: losses of the untrained model and the gradients of one (probed) batch."""
        self.model.eval()
        losses, worst = [], None  # the first batch whose loss is not finite: what the probe traces
        first, spread, seen = None, 0.0, 0  # input_spread: constant inputs are a loading bug
        with torch.no_grad():
            for x, y in islice(self.train.epoch(0), _EPOCH0_TRAIN_BATCHES):
                losses.append(float(self.loss_fn(self.model(x), y)))
                worst = x if worst is None and not math.isfinite(losses[-1]) else worst
                first = x[:1] if first is None else first
                spread, seen = max(spread, _spread(x, first)), seen + len(x)
        self.model.train()
        x, y = next(iter(self.train.epoch(0)))
        self.optimizer.zero_grad(set_to_none=True)
        self.probe.before_step(x, force=True)  # detectors see the initial state too
        out = self.net(x)
        ok = self._backward(self.loss_fn(out, y))
        self.probe.after_backward()
        norm = float(grad_norm(self.model)) if ok else float("nan")
        self.probe.end_step()  # measured only: no step at epoch 0, so no update ratio
        self.optimizer.zero_grad(set_to_none=True)
        # Policies read it (``metrics.input_ndim``): image-only remedies need 4-D (N,C,H,W) input.
        metrics = {"train_loss": _mean(losses), "grad_norm": norm, "grad_norm_max": norm,
                   "input_ndim": float(x.dim())}
        if self.probe.enabled:
            metrics.update(self.probe.epoch_metrics())
            metrics.update(nonfinite_metrics(self.model, worst if worst is not None else x))
            metrics.update(initial_loss_metrics(metrics["train_loss"],
                                                num_classes(out, self.loss_fn.name)))
            if seen >= 2:
                metrics["input_spread"] = spread
        return metrics

    def _backward(self, loss: torch.Tensor) -> bool:
        # A non-finite loss is reported, not trained on: backpropagating it would turn every
        # weight into NaN and hide what the controller should see.
        finite = all_finite(loss) if self.parallel is not None else bool(torch.isfinite(loss))
        if not finite:  # under DDP decided by all ranks, so none waits on a skipped backward
            return False
        loss.backward()
        return True

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training set; grad norms are measured before clipping."""
        self.model.train()
        losses: list[float] = []
        norms: list[float] = []
        ndim = float("nan")
        base = (epoch - 1) * self.steps_per_epoch if self.steps_per_epoch else 0
        guard = self.guard  # read once: every call and lookup a step costs shows on small models
        judge_norms = guard is not None and guard.judges_norms  # else grad_spiked is None: not called
        reporter = self.reporter  # likewise: what its reports need, read once
        planned = self.cfg["epochs"] * self.steps_per_epoch if self.steps_per_epoch else None
        extra = guard.metrics if guard is not None else None
        for batch, (x, y) in enumerate(self.train.epoch(epoch)):
            ndim = float(x.dim())
            self.probe.before_step(x)  # a no-op except on sampled steps
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.net(x), y)
            losses.append(loss.item())
            judged = self._judged(losses[-1]) if guard is not None and self.parallel is not None else losses[-1]
            if guard is not None and guard.spiked(judged) is not None:
                self._skip()
                continue  # rewound to the last snapshot: this batch and those since are skipped
            if not self._backward(loss):
                continue
            self.probe.after_backward()  # before clipping: the raw gradients
            norm = grad_norm(self.model)
            norms.append(float(norm))
            if not torch.isfinite(norm):
                continue  # same reason as a non-finite loss: keep the weights readable
            if judge_norms and guard is not None and guard.grad_spiked(norms[-1]) is not None:
                self._skip()
                continue
            clip_gradients(self.model, self.cfg["grad_clip"], norm)
            self.optimizer.step()
            self.probe.after_step()
            if guard is not None:
                guard.stepped(judged, norms[-1], (x, y))
            if reporter is not None:  # under DDP with a guard: the mean loss over the ranks
                reporter.stepped(base + batch + 1, planned, judged, extra)
        return {
            "train_loss": _mean(losses),
            "grad_norm": _mean(norms),
            "grad_norm_max": max(norms) if norms else float("nan"),
            "input_ndim": ndim,
            **self.probe.epoch_metrics(),
            **(self.guard.metrics() if self.guard is not None else {}),
        }

    def _skip(self) -> None:
        """The spike guard rewound: this step's batch is skipped."""
        if self.probe.enabled:
            self.probe.end_step()  # close a sampled step: no hook may stay on for evaluation

    def _judged(self, loss: float) -> float:
        """The loss the spike guard judges: under DDP the mean over the ranks, so all agree."""
        return mean_across(loss, self.parallel.device) if self.parallel is not None else loss

    def reference_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """The loss of the model as it is on ``batch`` (the spike guard's "is it the batch or the
        weights?"), under DDP the mean over the ranks."""
        if self.probe.enabled:
            self.probe.end_step()  # a sampled step is over: this forward is no training step
        # the plain module: no DDP collective inside the forward
        return self._judged(reference_loss(self.model, self.loss_fn, batch))

    def evaluate(self) -> dict[str, Any]:
        """Loss, accuracy and macro F1 on the whole validation set (and probe class stats),
        with the chance scores they are judged against."""
        return {**evaluate(self.model, self.loss_fn, self.val, self.probe.enabled), **self.chance}

    def step_scheduler(self, val_loss: float) -> None:
        """Advance the scheduler once per training epoch (plateau watches val_loss)."""
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        else:
            self.scheduler.step()


def _emit(trainer: _Trainer, epoch: int, metrics: dict[str, Any], report: Report) -> None:
    metrics = {**metrics, **trainer.position(epoch)}
    every = trainer.cfg["checkpoint_every"]
    due = epoch >= 1 and bool(every) and epoch % every == 0  # every <= 0 or None: never
    due = due and (trainer.parallel is None or trainer.parallel.is_chief)  # rank 0's are reported
    directory = save_checkpoint(trainer, epoch) if due else None
    try:
        report({"epoch": epoch, **{k: float(v) for k, v in metrics.items()}}, directory)
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)  # the caller has copied it by now


def _pad(began_s: float, min_epoch_s: float | None) -> None:
    # Emulates slow real epochs (benchmarks): sleep the remainder, after the work is done.
    if min_epoch_s:
        time.sleep(max(0.0, min_epoch_s - (time.monotonic() - began_s)))


def attach_guard(trainer: _Trainer, in_trial: dict[str, Any] | None = None) -> SpikeGuard:
    """Give ``trainer`` its spike guard (its first snapshot is the model as it stands now)."""
    trainer.guard = SpikeGuard(trainer.cfg, trainer.model, trainer.optimizer, trainer.scheduler, in_trial)
    trainer.guard.reference = trainer.reference_loss
    if trainer.restored_guard is not None:  # a retry of this trial (prepare)
        trainer.guard.load_state_dict(trainer.restored_guard)
    return trainer.guard


def run_training(config: dict[str, Any], report: Report, restore_dir: str | None = None,
                 parallel: Parallel | None = None, in_trial: dict[str, Any] | None = None,
                 step_report: Callable[[dict[str, float]], None] | None = None) -> None:
    """Train the model ``config`` describes, calling ``report(metrics, ckpt_dir)`` every epoch.

    Reports epoch 0 (evaluation before any step) and then epochs 1..``config["epochs"]``; the
    metrics are ``epoch, train_loss, val_loss, val_accuracy, val_macro_f1, lr, grad_norm,
    grad_norm_max``, plain floats that may be NaN/inf (never raised on). ``lr`` is the rate used
    during the epoch. Unless ``config["probes"]["enabled"]`` is false, probe keys are added:
    :class:`autofix.probes.Probe`'s (``grad_norm/<layer>``, ``update_ratio_*`` from epoch 1,
    ``dead_frac_*``, ``saturated_frac_*``, ``input_*``, ``label_*``), the validation class
    statistics (``pred_*``, ``val_recall*``, ``val_balanced_accuracy``) and, at epoch 0 only,
    ``init_loss``/``chance_loss``. ``ckpt_dir`` is a temp directory holding ``state.pt`` on
    checkpoint epochs (deleted once ``report`` returns), else None.

    ``restore_dir`` resumes a crashed run exactly (model, optimizer, scheduler, RNG) from the
    epoch after the checkpoint. ``config["warm_start"]`` starts a patched run from a checkpoint:
    weights and, for the same optimizer class, its state, with the config's lr and kwargs; the
    scheduler state only when the scheduler spec is unchanged. Epoch numbers continue from the
    checkpoint, and ``epochs`` stays the number of the last epoch. A warm start whose config
    changes the model's structure (``model``, ``architecture``, ``init``) runs cold from epoch 0
    instead, with a warning on stderr (:mod:`autofix.harness.checkpoint`).

    The remediation knobs of :class:`autofix.spec.training.TrainingSpec` are applied when the run is
    built (:mod:`autofix.harness.assemble`): ``data.normalize/augment/sampler``,
    ``loss.class_weights``, ``architecture``, ``init`` and the warm-up schedulers.

    ``in_trial``: the run's in-trial policies (:func:`autofix.rules.intrial.in_trial_data`) the
    spike guard answers a loss spike by, when ``spike_guard.enabled``; None: the shipped ones.

    ``step_report`` receives the reports between epochs (``training.step_reports``;
    :mod:`autofix.harness.stepreports`); None sends none.

    ``parallel`` makes this process one rank of a data-parallel (DDP) run: its shard of the
    training data, the model wrapped by ``parallel.wrap``, checkpoints on rank 0 only
    (:mod:`autofix.harness.distributed`); every rank still calls ``report``.
    """
    cfg = normalize_config(config)
    torch.set_num_threads(1)  # several Ray trials share a small machine
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    trainer = _Trainer(cfg, parallel)
    start = prepare(trainer, restore_dir)
    if (cfg.get("spike_guard") or {}).get("enabled"):  # its first snapshot is the restored state
        attach_guard(trainer, in_trial)
    if step_report is not None and (cfg.get("step_reports") or {}).get("enabled", True):
        trainer.reporter = StepReporter(cfg.get("step_reports"), step_report)
    if start == 0:
        baseline = {**trainer.initial_metrics(), **trainer.evaluate(), "lr": trainer.lr()}
        _emit(trainer, 0, baseline, report)
        start = 1
    for epoch in range(start, cfg["epochs"] + 1):
        began_s = time.monotonic()
        lr = trainer.lr()
        metrics = {**trainer.train_epoch(epoch), **trainer.evaluate(), "lr": lr}
        trainer.step_scheduler(metrics["val_loss"])
        _pad(began_s, cfg.get("min_epoch_s"))
        _emit(trainer, epoch, metrics, report)
