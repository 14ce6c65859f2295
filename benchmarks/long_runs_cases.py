"""Block "long runs" (issue 17): the cases, and the stream that injects their spikes.

A case is a small managed-harness config trained for a fixed number of optimizer steps on the
kept trajectory (``steps``), plus what goes wrong in it (an :class:`Injection`). Every case's
clean twin is the same config with no injection: the run each method is judged against.

How a spike is injected whatever the harness's shuffling does: :class:`Stream` stands in for the
trainer's batch loader. It chains the loader's own seeded epochs into one stream of batches and
counts the batches it hands out (its ``position``); the injection is declared in that count.
Before any rewind the count is the optimizer step (one batch, one step), so the declared onset
is the step of the onset in the run left alone. After a rewind the stream still moves forward:
a corrupted shard stays where it is in the data (the guard skips it, it is not replayed), and an
LR burst is a schedule stepped once per batch drawn (a scheduler does not rewind either).

A relaunch warm from a checkpoint (``long_runs_warm``) starts its stream at the checkpoint's
batch position (``start``): the harness seeds each epoch's order, so a relaunched trial meets
the same batches again. The batches before ``start`` are drawn and discarded, a corrupted shard
past it is met again, and an LR burst whose window covers ``start`` is put on the new optimizer
(its rate is the config's, patched or not, times the burst's factor).

- ``corrupt``: batches ``onset .. onset+length-1`` have their inputs multiplied by
  ``input_scale`` and every label moved to the next class (a shard decoded without its
  normalisation and with shifted labels).
- ``lr``: from batch ``onset`` the learning rate is multiplied by ``lr_factor``, and divided by
  it again at ``onset+length`` (``length`` None: never, a schedule that stays too high). The
  change is multiplicative, so a cut made by the guard on a rewind is kept.

Every case decays its rate as the long runs this block stands for do: a cosine over the run
(Loshchilov & Hutter 2017; GPT-3, Chinchilla and LLaMA trained with cosine decay), the
harness's ``cosine`` scheduler stepped once per tenth of the run, down to 2.4% of the rate in the
last tenth. Why: at a constant rate the final val_loss sits anywhere in SGD's noise, and the
judge (within 2% of the clean twin) could not tell a heal from luck: the ideal skip, the clean
run that merely never trains on the window's 20 batches, ended 0.888x-1.039x its twin on 4
seeds (6 of the 8 runs of the two windowed cases outside 2%); with the decay, 0.984x-1.014x
(benchmarks/results/long_runs_noise_floor.md). Its floor is 0 (``eta_min``, torch's default),
not GPT-3's and LLaMA's 10% of the peak: the harness's floor is an absolute rate, which would go
stale under every method that changes the rate (the restart at 0.1x, the engine's LR patches,
the guard's cuts), while the cosine with no floor scales whatever rate it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["CASES", "Case", "Injection", "Stream"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Injection:
    """What goes wrong, declared in batches drawn (= optimizer steps before any rewind)."""

    kind: str  # "corrupt", "lr", or "drop" (the window's batches are drawn and never trained on)
    onset: int
    length: int | None  # None: to the end of the run
    input_scale: float = 16.0  # corrupt: digits' raw 0..16 pixels instead of [0, 1]
    lr_factor: float = 1.0  # lr: the rate is multiplied by this in the window

    def covers(self, position: int) -> bool:
        """Whether batch ``position`` is inside the injected window."""
        return position >= self.onset and (self.length is None or position < self.onset + self.length)


@dataclass(frozen=True)
class Case:
    """One long run: a harness config, its length in trajectory steps, and its injection."""

    name: str
    config: dict[str, Any]
    steps: int
    injection: Injection | None = None  # None: a clean control
    note: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def control(self) -> bool:
        return self.injection is None


class Stream:
    """The trainer's loader for a whole long run (see the module): ``epoch()`` yields batches
    until ``trajectory()`` reaches ``target`` (the harness's ``train_epoch`` is called once per
    evaluation chunk), ``stop()`` or ``max_batches`` ends it."""

    def __init__(self, batches: Any, injection: Injection | None, optimizer: torch.optim.Optimizer,
                 trajectory: Callable[[], int], max_batches: int, num_classes: int, start: int = 0) -> None:
        self.batches, self.injection, self.optimizer = batches, injection, optimizer
        self.trajectory, self.max_batches, self.num_classes = trajectory, max_batches, num_classes
        self.position = start  # batches handed out (a warm relaunch: from its checkpoint's position)
        self.target = 0
        self.stopped = False
        self.corrupted: list[int] = []  # positions handed out corrupted (what the tests check)
        self.onset_step: int | None = None  # trajectory() when the injection's first batch went out
        self._source = self._chain()
        for _ in range(start):  # replayed from the start of the data: the same order as the first run's
            next(self._source)
        self._burst_on = False  # the LR burst multiplies this optimizer's rate now
        if injection is not None and injection.kind == "lr" and start > injection.onset and injection.covers(start):
            self._scale_rates(injection.lr_factor)  # the burst is in force where the relaunch begins
            self._burst_on = True

    def steps_per_epoch(self) -> int | None:
        return self.batches.steps_per_epoch()  # the loader's, for the harness's bookkeeping

    def stop(self) -> None:
        self.stopped = True

    @property
    def exhausted(self) -> bool:
        return self.stopped or self.position >= self.max_batches

    def epoch(self, _epoch: int) -> Iterator[Batch]:
        while self.trajectory() < self.target and not self.exhausted:
            x, y = next(self._source)
            if self.injection is not None and self.injection.kind == "drop" and self.injection.covers(self.position):
                self.position += 1  # the ideal skip: as if a guard had caught each of them, with no rewind
                continue
            yield self._inject(x, y)

    def _chain(self) -> Iterator[Batch]:
        epoch = 1
        while True:  # the loader's epochs one after another, each in its own seeded order
            yield from self.batches.epoch(epoch)
            epoch += 1

    def _scale_rates(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    def _inject(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        inj, position = self.injection, self.position
        self.position += 1
        if inj is None:
            return x, y
        if position == inj.onset:
            self.onset_step = self.trajectory()
        if inj.kind == "lr" and position == inj.onset:
            self._scale_rates(inj.lr_factor)
            self._burst_on = True
        elif inj.kind == "lr" and self._burst_on and inj.length is not None and position == inj.onset + inj.length:
            self._scale_rates(1.0 / inj.lr_factor)  # (a relaunch that began past the window never had it)
            self._burst_on = False
        if inj.kind == "corrupt" and inj.covers(position):
            self.corrupted.append(position)
            return x * inj.input_scale, (y + 1) % self.num_classes
        return x, y


_COSINE = {"name": "cosine"}  # T_max: the run's ten evaluation chunks (the harness's epochs); see the module


def _mlp_digits(hidden: list[int], optimizer: dict[str, Any], batch_size: int) -> dict[str, Any]:
    return {"scheduler": _COSINE, "model": {"factory": "autofix.harness.models:mlp",
                      "args": {"in_features": 64, "num_classes": 10, "hidden": hidden}},
            "data": {"factory": "digits", "args": {"flatten": True}}, "optimizer": optimizer,
            "batch_size": batch_size}


def _cnn_digits(optimizer: dict[str, Any], batch_size: int) -> dict[str, Any]:
    return {"scheduler": _COSINE, "model": {"factory": "autofix.harness.models:small_cnn", "args": {"num_classes": 10}},
            "data": {"factory": "digits", "args": {}}, "optimizer": optimizer, "batch_size": batch_size}


def _mlp_classification(optimizer: dict[str, Any], batch_size: int, flip_y: float = 0.0) -> dict[str, Any]:
    return {"scheduler": _COSINE, "model": {"factory": "autofix.harness.models:mlp",
                      "args": {"in_features": 20, "num_classes": 4, "hidden": [64, 64]}},
            "data": {"factory": "classification",
                     "args": {"n_samples": 2000, "n_features": 20, "n_informative": 8, "n_classes": 4,
                              "flip_y": flip_y}},
            "optimizer": optimizer, "batch_size": batch_size}


_SGD = {"name": "sgd", "lr": 0.05, "kwargs": {"momentum": 0.9}}
_ADAM = {"name": "adam", "lr": 1e-3}

CASES: tuple[Case, ...] = (
    Case("corrupt_burst_digits_mlp", _mlp_digits([128, 128], _SGD, 32), 1500,
         Injection("corrupt", onset=600, length=20),
         "20 corrupted batches (pixels x16, labels shifted) from step 600 of 1500"),
    Case("lr_burst_digits_cnn", _cnn_digits(_ADAM, 32), 1500,
         Injection("lr", onset=700, length=20, lr_factor=30.0),
         "Adam's rate x30 for 20 steps from step 700 of 1500"),
    Case("late_lr_rise_digits_mlp", _mlp_digits([128, 128], _SGD, 32), 1600,
         Injection("lr", onset=1000, length=None, lr_factor=20.0),
         "the rate x20 from step 1000 of 1600 to the end: skipping alone cannot heal it", ("needs_lr_cut",)),
    # The same burst under DDP: two gloo ranks (Ray Train workers: long_runs_ddp), each drawing half of every
    # batch; the guard judges the mean loss over the ranks (autofix.harness.distributed).
    Case("corrupt_burst_digits_mlp_ddp", _mlp_digits([128, 128], _SGD, 32), 1500,
         Injection("corrupt", onset=600, length=20),
         "the corrupted burst under DDP: 2 gloo ranks, each half of every batch", ("ddp",)),
    Case("clean_digits_cnn", _cnn_digits(_ADAM, 32), 1500, None, "control: no spike"),
    # This one was case (c)'s first model; its clean twin's own batch losses spike (3.4x the window's
    # median at step 296), so it measures false alarms instead.
    Case("clean_classification_mlp", _mlp_classification(_SGD, 32), 1600, None,
         "control: SGD with momentum on make_classification, heavy-tailed batch losses, no injection"),
    Case("clean_noisy_classification_mlp", _mlp_classification(_SGD, 16, flip_y=0.1), 1600, None,
         "control: batches of 16 with 10% flipped labels (noisy step losses), no spike"),
)
