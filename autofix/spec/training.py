"""The managed-training part of a spec: model, data, loss, optimizer, schedule, architecture.

Every knob a remediation action patches has a field here, so a patched config is validated
by the same schema as the user's (an action can never produce a config the harness rejects
silently). Defaults are neutral: a field left out changes nothing about the user's run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from autofix.spec.catalogue import OPTIMIZERS, ActivationName, InitScheme, LossExpects, OutputActivation, SchedulerName
from autofix.spec.refs import check_args, is_ref, resolve

__all__ = ["BUILTIN_DATASETS", "LOSSES", "TrainingSpec"]

# Kept here (not imported from the harness) so loading a spec does not import torch;
# tests/test_spec.py checks it equals autofix.harness.DATASETS.
BUILTIN_DATASETS = ("blobs", "circles", "classification", "digits", "fake")
# What each built-in loss takes from the model (autofix.harness.losses.EXPECTS; None: any
# numbers), kept here so loading a spec does not import torch; tests/test_spec.py compares them.
LOSSES: dict[str, LossExpects | None] = {"bce_with_logits": "logits", "categorical_crossentropy": "probabilities",
                                 "cross_entropy": "logits", "mse": None, "nll": "log_probs"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf/.nan are never meant in a spec


class FactorySpec(Strict):
    """A ``"module:callable"`` and the keyword arguments it is called with."""

    factory: str  # 'package.module:callable' returning the object
    args: dict[str, Any] = Field(default_factory=dict)  # keyword arguments, checked against its signature

    @field_validator("factory")
    @classmethod
    def _importable(cls, value: str) -> str:
        if value not in BUILTIN_DATASETS:
            resolve(value)
        return value

    @field_validator("args")
    @classmethod
    def _binds(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        factory = info.data.get("factory")
        if factory in BUILTIN_DATASETS:
            from autofix.harness import DATASETS  # imports torch: only for builtin data

            check_args(DATASETS[factory], value, fixed=("seed",))
        elif factory is not None:
            check_args(resolve(factory), value)
        return value


class DataSpec(FactorySpec):
    """A builtin dataset name or a ``"module:callable"`` returning ``(train, val)`` datasets."""

    factory: str = Field(description=f"one of {', '.join(BUILTIN_DATASETS)}, or 'module:callable'")
    val_fraction: float = Field(default=0.2, gt=0, lt=1)  # share held out for validation (built-in datasets)
    normalize: bool = False
    """Standardise inputs with the mean/std of the training data (per channel for images)."""
    sampler: Literal["uniform", "balanced"] = "uniform"
    """'balanced': a weighted sampler drawing every class equally often."""
    augment: AugmentSpec | None = None
    shuffle: bool = True
    """False: read the training set in its own order (a pre-shuffled stream, as language-model
    pre-training reads its corpus); a dataset with ``set_epoch(epoch)`` can give each epoch its own."""

    @field_validator("factory")
    @classmethod
    def _importable(cls, value: str) -> str:  # overrides FactorySpec's: builtin names first
        if value in BUILTIN_DATASETS:
            return value
        if not is_ref(value):
            raise ValueError(f"expected a builtin dataset ({', '.join(BUILTIN_DATASETS)}) or 'module:callable', "
                             f"got {value!r}")
        resolve(value)
        return value


class LossSpec(Strict):
    """A built-in loss by name, or a ``"module:callable"`` returning one (called with ``args``)."""

    name: str = Field(default="cross_entropy", description=f"one of {', '.join(LOSSES)}, or 'module:callable'")
    args: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the loss
    class_weights: Literal["balanced"] | list[float] | None = None
    """'balanced': scikit-learn ``compute_class_weight`` on the training labels, into the loss."""
    expects: LossExpects | None = None
    """What the loss takes from the model: a custom loss says it here, so autofix can check that
    the model's outputs fit (``output_loss_mismatch``); without it that check is skipped. A
    built-in loss's is known (cross_entropy, bce_with_logits: logits; nll: log_probs;
    categorical_crossentropy: probabilities); giving another one is an error."""

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in LOSSES:
            return value
        if not is_ref(value):
            raise ValueError(f"expected a built-in loss ({', '.join(LOSSES)}) or 'module:callable', got {value!r}")
        resolve(value)
        return value

    @field_validator("args")
    @classmethod
    def _binds(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if isinstance(name, str) and is_ref(name):
            check_args(resolve(name), value)
        return value

    @field_validator("expects")
    @classmethod
    def _agrees(cls, value: str | None, info: ValidationInfo) -> str | None:
        known = LOSSES.get(info.data.get("name") or "", "")
        if value is not None and known != "" and value != known:
            raise ValueError(f"loss {info.data['name']!r} takes {known or 'any numbers'}, not {value}: "
                             "leave 'expects' out for a built-in loss")
        return value


class OptimizerSpec(Strict):
    name: str = "adam"  # adagrad | adam | adamw | rmsprop | sgd (torch.optim)
    lr: float = Field(gt=0, allow_inf_nan=False)  # learning rate
    kwargs: dict[str, Any] = Field(default_factory=dict)  # other keyword arguments (momentum, weight_decay, ...)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {value!r}; available: {', '.join(OPTIMIZERS)}")
        return value.lower()


class SchedulerSpec(Strict):
    name: SchedulerName
    kwargs: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the torch scheduler


class AugmentSpec(Strict):
    """torchvision transforms applied to training image batches."""

    flip: bool = False  # random horizontal flips
    rotation: float = Field(default=0, ge=0, le=180)  # random rotation, in degrees
    crop_padding: int = Field(default=0, ge=0, le=64)  # random crops after this much padding


class InitSpec(Strict):
    """Re-initialise the weights of matching layers before training (outside the output head)."""

    scheme: InitScheme = "kaiming"  # torch.nn.init
    pattern: str | None = None
    """Regular expression on qualified module names (``net\\.0``); None = every matching type."""
    types: list[str] = Field(default_factory=lambda: ["Conv1d", "Conv2d", "Linear"])
    head: bool = False
    """Also re-initialise the output head (the last weight layer on the forward path)."""


class ArchitectureSpec(Strict):
    """Surgery on the built model, guided by its traced forward path (or factory args of the
    same names when accepted): hidden layers only, except ``output_activation``."""

    activation: ActivationName | None = None
    activation_scope: Literal["hidden", "nonfinite"] = "hidden"
    """'hidden': every hidden activation module; 'nonfinite': only those of the kind of the first
    hidden activation whose output is non-finite on the untrained model's first batch."""
    output_activation: OutputActivation | None = None
    """What follows the output layer: identity (logits), softmax, log_softmax or sigmoid."""
    batch_norm: bool = False  # BatchNorm after hidden weight layers
    dropout: float | None = Field(default=None, ge=0, lt=1)  # dropout before hidden Linear layers


class GradClipSpec(Strict):
    kind: Literal["norm", "value"] = "norm"  # clip_grad_norm_ or clip_grad_value_
    max: float = Field(gt=0, allow_inf_nan=False)  # the norm or value bound


class ProbeSpec(Strict):
    """Instrumentation of the managed harness (``autofix.probes``), sampled every N steps."""

    enabled: bool = True  # gradient, update, activation and input probes
    every_steps: int = Field(default=20, ge=1, le=1_000_000)  # sample one optimizer step in N
    max_overhead: float | None = Field(default=0.01, gt=0, le=1)
    """Share of training time the probes may take; they sample less (down to one epoch in 5,
    carrying the last sample forward with ``probe_age``) to stay under it. None: no budget."""


# Keys of training.spike_guard that moved (to the loss_spike symptom's parameters and to the
# rewind policy) when the guard became policy-driven: named in the message, not "extra inputs".
_GUARD_MOVED = {
    **{k: f"symptoms: {{loss_spike: {{{k}: ...}}}}" for k in ("window_steps", "warmup_steps", "z", "min_ratio",
                                                              "min_rise")},
    "max_rewinds": "the 'times' of the rewind candidates of a policy answering loss_spike",
    "lr_factor": "the rewind action's lr_factor in a policy answering loss_spike",
}


class SpikeGuardSpec(Strict):
    """Watch every optimizer step's loss inside the trial and answer a spike in place
    (``autofix.harness.spikes``): snapshots in memory, rewind, skip the batches.

    Off by default. What is a spike is the ``loss_spike`` symptom's (spec ``symptoms:``); what is
    done about it, the run's policies answering ``loss_spike`` with ``rewind`` (the shipped
    ``loss-spike-rewind``, autofix/policies/spikes.yaml)."""

    enabled: bool = False  # judge every step's loss before the optimizer steps
    snapshot_every_steps: int = Field(default=10, ge=1, le=1_000_000)
    """Optimizer steps between snapshots; none is taken within this many steps of a rewind's
    target, so the ring keeps weights from before a spike episode. A rewind that restores gives
    back the steps since its snapshot: measured on the long-runs spike cases, 8 seeds
    (benchmarks/long_runs_snapshot_interval.py), every 50 steps cost the lasting rate rise
    1.06-1.10x the clean run's compute and left 2 of its 8 runs more than 2% off the clean run's
    val_loss; every 10, 1.02-1.03x and all 24 spike runs healed (5, 20 and 25 each missed 3 of
    24). A snapshot copies model and optimizer state to the CPU: raise it where that copy is slow
    against ten steps."""
    ring: int = Field(default=2, ge=1, le=16)  # snapshots kept in memory (each: model + optimizer state)
    max_skip_batches: int = Field(default=200, ge=1, le=1_000_000)
    """Batches skipped in a row, right after a rewind, while the loss stays spiked; past it the
    new level is trained on and judged afresh (PaLM skipped about 200-500 batches around a spike)."""

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, where in _GUARD_MOVED.items():
                if key in data:
                    raise ValueError(f"'{key}' moved out of training.spike_guard: set it as {where}")
        return data


class StepReportSpec(Strict):
    """Reports to the driver between epochs (``autofix.harness.stepreports``): the training loss
    of the steps since the last one, for the live view and the report's chart in steps.

    A report costs the trial one ``ray.tune.report`` (1.9-2.3 ms measured on this project's 2-core
    machine, ``benchmarks/step_report_cost.py``): at most one every ``min_interval_s`` keeps it under 0.12%
    of training time, 8x under the 1% budget, whatever the step time."""

    enabled: bool = True  # report between epochs
    every_steps: int = Field(default=50, ge=1, le=10_000_000)  # optimizer steps a report covers, at least
    min_interval_s: float = Field(default=2.0, ge=0, le=86_400)  # and seconds since the previous one, at least


class TrainingSpec(Strict):
    """Managed training: autofix owns the loop (see ``autofix.harness``)."""

    model: FactorySpec  # the model factory
    data: DataSpec  # the dataset
    loss: LossSpec = Field(default_factory=LossSpec)  # the loss function
    optimizer: OptimizerSpec  # the optimizer and its learning rate
    scheduler: SchedulerSpec | None = None  # a torch LR scheduler, or none
    batch_size: int = Field(default=64, ge=1, le=1_000_000)  # training batch size
    epochs: int = Field(default=15, ge=1, le=100_000)  # planned epochs (epoch 0, before any step, is extra)
    seed: int = Field(default=0, ge=0, lt=2**32)  # seeds torch, the split and the data order
    grad_clip: GradClipSpec | None = None  # gradient clipping, or none
    init: InitSpec | None = None  # re-initialise weights before training, or none
    architecture: ArchitectureSpec = Field(default_factory=ArchitectureSpec)  # surgery on the built model
    checkpoint_every: int = Field(default=1, ge=1)  # epochs between checkpoints (saved through Tune)
    probes: ProbeSpec = Field(default_factory=ProbeSpec)  # instrumentation
    spike_guard: SpikeGuardSpec = Field(default_factory=SpikeGuardSpec)  # rewind loss spikes in place
    step_reports: StepReportSpec = Field(default_factory=StepReportSpec)  # reports between epochs
    min_epoch_s: float | None = Field(default=None, ge=0, le=3600)
    """Pad every epoch to at least this many seconds: benchmarks and demos that emulate slow epochs."""




DataSpec.model_rebuild()
TrainingSpec.model_rebuild()
