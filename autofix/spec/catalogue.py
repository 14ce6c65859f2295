"""One catalogue of the names that cross layers: metrics, and the option lists of the knobs.

A metric is written by a producer (the managed harness, the probes, :func:`autofix.judge_inputs`)
and read by detectors, policies (``where: {metrics.NAME: ...}``) and the spec (``metric``); an
option list (optimizers, schedulers, activations, initialisations, output activations) is taken
by the spec's fields, the actions that set them and the harness that builds them. Each is
declared here once: the spec models and the actions use the ``Literal`` types, detectors declare
their inputs against :data:`METRICS`, ``autofix policies check`` validates ``where`` paths with
:func:`is_metric`, and the tests check the harness's registries and reports against it.

Pure Python: no torch, no ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "ACTIVATIONS", "FAULT_FAMILIES", "FAULT_METRICS", "HARNESS_METRICS", "INIT_SCHEMES", "LOSS_EXPECTS", "METRICS",
    "OPTIMIZERS", "OUTPUT_ACTIVATIONS", "PROBE_FAMILIES", "PROBE_METRICS", "SCHEDULERS",
    "ActivationName", "InitScheme", "LossExpects", "Metric", "OptimizerName", "OutputActivation", "SchedulerName",
    "Source",
    "harness_metric_names", "harness_reports", "is_metric", "metric_entry",
]

# -- option lists: a Literal type for the pydantic fields (and mypy), its values for messages --
OptimizerName = Literal["adagrad", "adam", "adamw", "rmsprop", "sgd"]
SchedulerName = Literal["cosine", "exponential", "linear_warmup", "reduce_on_plateau", "step", "warmup_cosine"]
ActivationName = Literal["elu", "leaky_relu", "relu", "selu", "sigmoid", "tanh"]
InitScheme = Literal["default", "kaiming", "lecun_normal", "orthogonal", "xavier"]  # torch.nn.init
OutputActivation = Literal["identity", "log_softmax", "sigmoid", "softmax"]
LossExpects = Literal["logits", "log_probs", "probabilities"]  # what a loss takes from the model
Source = Literal["harness", "probes", "fault", "event", "step", "between"]  # who writes a metric (Metric.source)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)
OUTPUT_ACTIVATIONS: tuple[str, ...] = get_args(OutputActivation)
LOSS_EXPECTS: tuple[str, ...] = get_args(LossExpects)


@dataclass(frozen=True)
class Metric:
    """A reported metric: ``name`` (a family ends in ``/`` and is followed by a layer, class or
    kind), who writes it, and what it means."""

    name: str
    # harness: the managed loop, every report; probes: with training.probes.enabled (the default);
    # fault: with probes, only when the untrained model's output is not finite; event: only when
    # it happens or applies (a PyTorch warning, a non-finite output, a loss that names its domain);
    # step: judged inside the trial at every optimizer step (training.spike_guard), never reported;
    # between: in the reports made between epochs (training.step_reports), kept out of the history
    source: Source
    meaning: str
    only: str = ""  # probes that report only for some models: which (a model without them is no gap)

    @property
    def family(self) -> bool:
        return self.name.endswith("/")


def _m(source: Source, *entries: tuple[str, ...]) -> list[Metric]:
    return [Metric(entry[0], source, entry[1], entry[2] if len(entry) > 2 else "") for entry in entries]


_NUMERIC_INPUTS = "models whose inputs are numbers, not integer ids (a language model's tokens)"
METRICS: dict[str, Metric] = {m.name: m for m in [
    *_m("harness",
        ("epoch", "epochs trained; 0 is the report of the untrained model"),
        ("step", "optimizer steps taken (lineage-wide: a warm restart counts its parent's)"),
        ("planned_steps", "optimizer steps the attempt plans (epochs x steps per epoch)"),
        ("train_loss", "mean training loss of the epoch (epoch 0: of the untrained model)"),
        ("val_loss", "validation loss"),
        ("val_accuracy", "validation accuracy (classification)"),
        ("val_macro_f1", "validation macro-F1 (scikit-learn's f1_score, average='macro')"),
        ("val_balanced_accuracy", "validation balanced accuracy (mean per-class recall)"),
        ("chance_accuracy", "accuracy of the best constant predictor on the validation labels"),
        ("chance_macro_f1", "macro-F1 of the best constant predictor"),
        ("chance_balanced_accuracy", "balanced accuracy of a constant predictor: 1/K"),
        ("label_entropy", "entropy of the training labels: a cross-entropy's value when nothing is learned"),
        ("lr", "learning rate of the first parameter group at the end of the epoch"),
        ("grad_norm", "global gradient norm before clipping, mean over the epoch's steps"),
        ("grad_norm_max", "largest global gradient norm of the epoch"),
        ("input_ndim", "dimensions of an input batch (4: images, N x C x H x W)")),
    *_m("probes",
        ("init_loss", "loss of the untrained model"),
        ("chance_loss", "loss of a uniform predictor: ln(classes) for a cross-entropy"),
        ("grad_norm_first", "gradient norm of the first parameterised layer"),
        ("grad_norm_last", "gradient norm of the last parameterised layer"),
        ("grad_ratio", "grad_norm_first / grad_norm_last"),
        ("grad_zero_frac", "share of gradient entries exactly zero"),
        ("gradless_steps", "sampled steps where no parameter had a gradient"),
        ("dead_frac_max", "largest share of dead units (never positive on the batch) over ReLU-like layers",
         "models with ReLU-like layers"),
        ("saturated_frac_max", "largest share of saturated units over sigmoid/tanh layers",
         "models with sigmoid or tanh layers"),
        ("update_ratio_global", "||update|| / ||weights|| over all parameters, per optimizer step"),
        ("update_ratio_max", "largest per-layer update ratio"),
        ("update_ratio_median", "median per-layer update ratio"),
        ("update_expected", "learning rate x the optimizer's step scale: the update a step should make"),
        ("update_resolution", "float32 spacing at the median |weight|: smaller updates are lost"),
        ("optimizer_steps", "optimizer.step() calls seen by the probe"),
        ("stale_grad_checks", "first backwards after a step that were checked for zeroed gradients"),
        ("stale_grad_steps", "of those, how many found the previous step's gradient still there"),
        ("input_mean", "mean of a sampled training batch", _NUMERIC_INPUTS),
        ("input_std", "standard deviation of a sampled training batch", _NUMERIC_INPUTS),
        ("input_abs_max", "largest |x| of a sampled training batch", _NUMERIC_INPUTS),
        ("input_spread", "epoch 0: largest |x_i - x_0| over the first training batches (0: one input)"),
        ("label_frac_max", "largest class share of the training labels"),
        ("label_classes", "classes in the training labels"),
        ("pred_frac_max", "largest class share of the validation predictions"),
        ("pred_classes", "classes predicted on the validation set"),
        ("val_recall_min", "smallest per-class validation recall"),
        ("output_classes", "width of the model's output"),
        ("output_min", "smallest output value of the untrained model"),
        ("output_max", "largest output value of the untrained model"),
        ("output_sum_dev", "largest |row sum - 1| of the outputs (probabilities sum to 1)"),
        ("output_lse_dev", "largest |logsumexp(row)| of the outputs (log-probabilities give 0)"),
        ("output_zero_rows", "share of output rows that are all zero"),
        ("probe_age", "epochs since the probe statistics were sampled (0: fresh; >0: carried)"),
        ("dead_frac/", "share of dead units, per layer", "models with ReLU-like layers"),
        ("saturated_frac/", "share of saturated units, per layer", "models with sigmoid or tanh layers"),
        ("grad_norm/", "gradient norm, per layer"),
        ("update_ratio/", "||update|| / ||weights||, per layer"),
        ("val_recall/", "validation recall, per class")),
    *_m("fault",
        ("nonfinite_output_index", "place on the forward path of the first module whose output is not finite"),
        ("nonfinite_output_activation", "1 when that module is an activation"),
        ("nonfinite_output/", "share of non-finite outputs of that module, by name"),
        ("nonfinite_module/", "1 for that module's class")),
    *_m("event",
        ("val_nonfinite_outputs", "1 when a validation output was NaN/Inf (the scores are then NaN)"),
        ("loss_broadcast_warnings", "PyTorch's loss-broadcast warnings ('Using a target size ...') so far"),
        ("loss_broadcast_target_numel", "elements of the target that warning named"),
        ("loss_broadcast_input_numel", "elements of the input that warning named"),
        ("loss_expects/", "1 for what the loss takes (logits, probabilities, log_probs); with probes, for a "
                          "loss that says (not mse, nor a custom loss without loss.expects)"),
        ("rewinds", "loss spikes rewound in place so far (training.spike_guard)"),
        ("skipped_batches", "batches not trained on by the spike guard: the spikes, and the batches "
                            "consumed between a rewind's snapshot and its spike"),
        ("last_rewind_policy", "which in-trial policy made the latest rewind (its place among them, 0 first)"),
        ("last_rewind_candidate", "which of that policy's candidates (its place in 'then', 0 first)"),
        ("last_rewind_restored", "1 when the latest rewind restored a snapshot; 0 when the weights were fine on "
                                 "the last good batch and the spiking batch was only skipped"),
        ("last_rewind_lr", "the learning rate after the latest rewind (of the first parameter group)"),
        ("last_rewind_clip", "the gradient-clipping bound after the latest rewind (when the run clips)"),
        ("rewound_steps", "optimizer steps given back by those rewinds"),
        ("last_rewind_from", "the step of the latest spike"),
        ("last_rewind_to", "the step of the snapshot it went back to")),
    *_m("step",
        ("step_loss", "the training loss of one optimizer step, judged in the trial before the step "
                      "(loss_spike); never reported to the driver"),
        ("step_grad_norm", "the gradient norm (before clipping) of one optimizer step, judged in the trial "
                           "after its loss, before the step (loss_spike); never reported to the driver")),
    *_m("between",
        ("step_report", "1 on a report made between epochs (training.step_reports): never judged"),
        ("step_loss_mean", "mean training loss of the steps the report covers (finite ones)"),
        ("step_loss_max", "the largest of those losses"),
        ("step_nonfinite", "how many of them were NaN/Inf"),
        ("steps_in_report", "optimizer steps the report covers")),
]}

HARNESS_METRICS = tuple(sorted(n for n, m in METRICS.items() if m.source == "harness"))
PROBE_METRICS = tuple(sorted(n for n, m in METRICS.items() if m.source == "probes" and not m.family))
PROBE_FAMILIES = tuple(sorted(n for n, m in METRICS.items() if m.source == "probes" and m.family))
FAULT_METRICS = tuple(sorted(n for n, m in METRICS.items() if m.source == "fault" and not m.family))
FAULT_FAMILIES = tuple(sorted(n for n, m in METRICS.items() if m.source == "fault" and m.family))
_EXTRA = ("train_workers",)  # with ray.distributed: the workers that trained the epoch


def metric_entry(name: str) -> Metric | None:
    """The catalogue's entry for ``name``: itself, or the family it belongs to."""
    if name.endswith("/"):  # a family's own name is no metric
        return None
    if name in METRICS:
        return METRICS[name]
    family = name.split("/", 1)[0] + "/" if "/" in name else None
    return METRICS.get(family) if family else None


def is_metric(name: str) -> bool:
    """Whether autofix itself can report ``name`` (a family member counts: ``dead_frac/conv1``)."""
    return name in _EXTRA or metric_entry(name) is not None


def harness_reports(name: str, probes: bool = True) -> bool:
    """Whether the managed harness can report a metric called ``name`` (``train_workers``: with
    ``ray.distributed``, which is validated after the metric, so accepted either way)."""
    entry = metric_entry(name)
    if name in _EXTRA or (entry is not None and entry.source in ("harness", "event")):
        return True
    return probes and entry is not None


def harness_metric_names(probes: bool = True) -> str:
    """The metrics the harness reports, for an error message."""
    names = list(HARNESS_METRICS)
    if probes:
        names += [*PROBE_METRICS, *FAULT_METRICS, *(f"{f}<name>" for f in PROBE_FAMILIES + FAULT_FAMILIES)]
    return ", ".join(names)
