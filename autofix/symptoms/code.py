"""Bugs in the training code, named: no relaunch can cure them, so the run stops and says what to check.

Each detector reads evidence only the code can leave (all **hard**, ``fixable = False``; the
shipped ``code.yaml`` answers each with ``stop_run``):

* ``missing_zero_grad``: the first backward after ``optimizer.step()`` accumulates into the
  gradient that step used (``Probe``'s loop check: ``stale_grad_steps``);
* ``loss_broadcast``: PyTorch warned that a loss broadcast its target to the input's shape
  (captured in a custom trainable's worker: ``loss_broadcast_warnings``);
* ``detached_loss``: ``optimizer.step()`` runs while no parameter has a gradient
  (``gradless_steps``), or ``backward()`` raised because the loss has no graph;
* ``nan_metric``: a judged metric is NaN while the loss of the same report is finite, after
  it was finite (or at the same epoch in two differently patched attempts): a reporting bug.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from pydantic import Field

from autofix.judge.history import History
from autofix.symptoms.base import HARD, Finding, FixedParams, Params, ProbeDetector

__all__ = ["DetachedLoss", "LossBroadcast", "MissingZeroGrad", "NanMetric"]


class _CodeBug(ProbeDetector):
    """A bug in the training code: reported with a checklist, never repaired (DeepDiagnosis,
    Wardat et al., ICSE 2022, reports training-code faults the same way)."""

    severity = HARD
    fixable = False

    def _counted(self, history: History, count: str, total: str) -> tuple[float, float] | None:
        """``(count, total)`` of the last report when ``count`` reaches ``min_steps`` and
        ``min_share`` of ``total`` (the two loop bugs counted per step share that shape)."""
        row = self.last_values(history, count, total)
        if row is None or not row[total] > 0:
            return None
        n, of, p = row[count], row[total], self.params
        return None if n < p.min_steps or n / of < p.min_share else (n, of)


class MissingZeroGrad(_CodeBug):
    """Gradients are never zeroed: each step adds the new gradient to the last step's.

    Fires when, of the epoch's first backwards after an ``optimizer.step()``
    (``stale_grad_checks``, counted by ``Probe(model, optimizer)``), at least ``min_steps`` and a
    ``min_share`` of them found ``.grad`` still holding the tensor that step used, untouched
    (``stale_grad_steps``). Gradient accumulation that steps and zeroes every k batches never
    counts: only the first backward after a step is checked.

    Defaults (our choice): ``min_share=0.5`` and ``min_steps=2``; a loop that zeroes its
    gradients scores exactly 0, one that never does scores 1. Reported, not repaired, as
    DeepDiagnosis reports training-code faults.
    """

    name = "missing_zero_grad"
    inputs = ("stale_grad_checks",)
    evidence_keys = ("share", "stale_grad_checks", "stale_grad_steps")
    summary = "optimizer.zero_grad() is missing: gradients accumulate across steps (a training-loop bug)."
    advice = """\
Every step adds its gradient to all earlier ones, so the effective step grows without bound and
no learning rate is right. Check that
(1) optimizer.zero_grad() (or model.zero_grad()) runs once per optimizer step: before
    loss.backward(), or right after optimizer.step();
(2) with gradient accumulation over k batches, zero_grad() follows every optimizer.step() (not
    every k-th step, not only at the start of the epoch);
(3) the optimizer you zero is the one that steps (two optimizers: zero both)."""

    class Params(FixedParams):
        min_share: float = Field(default=0.5, gt=0, le=1)
        min_steps: int = Field(default=2, ge=1)

    def check(self, history: History) -> Finding | None:
        counted = self._counted(history, "stale_grad_steps", "stale_grad_checks")
        if counted is None:
            return None
        stale, checks = counted
        return self.found(
            history, "stale_grad_steps",
            f"in {stale:g} of {checks:g} steps the first backward after optimizer.step() added to the gradient "
            "that step had used: zero_grad() is not called between steps",
            stale_grad_steps=stale, stale_grad_checks=checks, share=stale / checks,
        )


class LossBroadcast(_CodeBug):
    """A loss compared outputs and targets of different shapes, broadcasting one to the other.

    Fires on PyTorch's own warning ("Using a target size ... that is different to the input
    size ... will likely lead to incorrect results due to broadcasting"), which autofix captures
    in a custom trainable's worker and counts into the reports (``loss_broadcast_warnings``, with
    the element counts of the input and the target it last named). Never inferred from numbers;
    no threshold. Reported, not repaired, as DeepDiagnosis reports training-code faults.
    """

    name = "loss_broadcast"
    inputs = ("loss_broadcast_warnings",)
    evidence_keys = ("input_numel", "loss_broadcast_warnings", "target_numel")
    summary = "A loss broadcast its target to a different input shape (a training-loop bug)."
    advice = """\
The loss compared every output with the wrong targets: (N, C) outputs against (N, 1) targets
are broadcast to (N, C), so each output is pulled towards every target at once and the loss
can fall while nothing is learned. Check that
(1) the target has the output's shape: one-hot targets (F.one_hot(y, C).float()) for an
    (N, C) regression loss, or a classification loss (cross_entropy) on class ids;
(2) a (N,) target is not compared with (N, 1) outputs (squeeze(1) the output, or unsqueeze(1)
    the target);
(3) the validation loss is computed the same way as the training loss."""

    class Params(FixedParams):
        pass

    def check(self, history: History) -> Finding | None:
        count = self.optional(history, "loss_broadcast_warnings")
        if count is None or not count >= 1:
            return None
        given = self.optional(history, "loss_broadcast_input_numel")
        target = self.optional(history, "loss_broadcast_target_numel")
        sizes = f" (an input of {given:g} values against a target of {target:g})" if given and target else ""
        return self.found(
            history, "loss_broadcast_warnings",
            f"PyTorch warned {count:g} time(s) that a loss broadcast its target to a different input size{sizes}",
            loss_broadcast_warnings=count, input_numel=given, target_numel=target,
        )


_NO_GRAPH = re.compile(r"does not require grad and does not have a grad_fn|"
                       r"element \d+ of tensors does not require grad")


class DetachedLoss(_CodeBug):
    """No gradient reaches the parameters: the loss has no graph back to them.

    Fires when ``optimizer.step()`` ran in at least ``min_steps`` steps and a ``min_share`` of
    the epoch's steps while none of the optimizer's parameters had a gradient (``gradless_steps``
    of ``optimizer_steps``, counted by ``Probe(model, optimizer)``), or (:meth:`from_error`)
    when the trial raised PyTorch's "element 0 of tensors does not require grad and does not
    have a grad_fn". Defaults (our choice): ``min_share=0.5``, ``min_steps=2``. DeepDiagnosis
    (Wardat et al., ICSE 2022) names the same fault ("unchanged weights" of a detached graph).
    """

    name = "detached_loss"
    inputs = ("optimizer_steps", "gradless_steps")
    evidence_keys = ("gradless_steps", "optimizer_steps", "raised")
    summary = "The loss is computed on detached outputs, or the parameters have no gradients (a training-loop bug)."
    advice = """\
backward() cannot reach the parameters, so optimizer.step() has nothing to apply. Check that
(1) the loss is computed from the model's output as returned: no .detach(), .item(), .data,
    .numpy() round-trip or torch.no_grad() between forward and loss (and no
    loss.requires_grad_() to silence the error: it hides this bug);
(2) the parameters have requires_grad=True (not frozen by a loop over model.parameters());
(3) the optimizer holds the parameters of the model you train (built after .to(device), not
    from a copy or an earlier model)."""

    class Params(FixedParams):
        min_share: float = Field(default=0.5, gt=0, le=1)
        min_steps: int = Field(default=2, ge=1)

    def check(self, history: History) -> Finding | None:
        counted = self._counted(history, "gradless_steps", "optimizer_steps")
        if counted is None:
            return None
        none, steps = counted
        return self.found(
            history, "gradless_steps",
            f"optimizer.step() ran {none:g} of {steps:g} times while no parameter had a gradient: "
            "the loss does not reach the parameters",
            gradless_steps=none, optimizer_steps=steps,
        )

    def from_error(self, history: History, error: str) -> Finding | None:
        """The finding for a trial that raised because its loss has no graph, else None."""
        match = _NO_GRAPH.search(error or "")
        if match is None:
            return None
        return self.found(history, "error", f"loss.backward() raised: {match.group(0)}", raised=1.0)


class NanMetric(_CodeBug):
    """A judged metric is NaN while the loss of the same report is finite: a reporting bug.

    Fires after the untrained report when one of ``metrics`` (accuracy, macro-F1, balanced
    accuracy, under autofix's names: ``judge.metrics`` maps yours) is NaN or infinite while the
    run's loss metric in the same report is finite, and the same metric was finite at an earlier
    report (a metric that never was is not computed for this task, e.g. accuracy on regression).
    :meth:`across` adds the rule for a metric that was never finite in the attempt: NaN with a
    finite loss at the same epoch of two attempts with different configs. The managed harness
    reports NaN scores for non-finite outputs with ``val_nonfinite_outputs``: never this bug.
    No threshold; reported, not repaired, as DeepDiagnosis reports training-code faults.
    """

    name = "nan_metric"
    inputs = ("val_accuracy", "val_macro_f1", "val_balanced_accuracy")
    evidence_keys = ("epoch", "last_finite", "loss")
    summary = "A metric is NaN while the loss is finite: the metric's code is broken (a reporting bug)."
    advice = """\
The model's outputs are finite (the loss computed from them is), so the NaN comes from the code
that computes the metric. Check
(1) divisions by a count or a sum that can be 0 (an empty class, no positive predictions:
    precision/recall/F1 are 0 there, e.g. scikit-learn's zero_division=0);
(2) means over an empty tensor or list (an epoch, batch or class with no samples);
(3) metrics computed on the wrong slice or before the first batch (an uninitialised
    accumulator, a float('nan') placeholder reported as a value)."""

    class Params(Params):
        metrics: tuple[str, ...] = ("val_accuracy", "val_macro_f1", "val_balanced_accuracy")

    def check(self, history: History) -> Finding | None:
        iterations = history.iterations
        if len(iterations) < 2 or history.position(iterations[-1]) <= 0:
            return None
        row = history.last_row()
        for name in _nan_metrics(row, self.metric, self.params.metrics):
            earlier = [v for _, v in history.series(name)[:-1] if math.isfinite(v)]
            if earlier:
                loss = row[self.metric]
                return self.found(
                    history, name, f"{name} is {row[name]} while {self.metric} is {loss:.4g} in the same report, "
                    f"and {name} was finite before ({earlier[-1]:.4g})", loss=loss, last_finite=earlier[-1])
        return None

    def across(self, history: History, others: Iterable[History]) -> Finding | None:
        """NaN with a finite loss at the last report's epoch here and at the same epoch of another
        attempt (``others``: attempts whose config differs): the metric's code, not the config."""
        iterations = history.iterations
        if not iterations or history.position(iterations[-1]) <= 0:
            return None
        row = history.last_row()
        nan = _nan_metrics(row, self.metric, self.params.metrics)
        if not nan:
            return None
        at = _epoch(row, history.position(iterations[-1]))
        for other in others:
            for iteration in other.iterations:
                seen = other.rows_view(iteration)
                if _epoch(seen, other.position(iteration)) != at:
                    continue
                both = [name for name in nan if name in _nan_metrics(seen, self.metric, self.params.metrics)]
                if both:
                    return self.found(
                        history, both[0], f"{both[0]} is NaN while {self.metric} is finite at epoch {at:g}, "
                        "here and in an attempt with another config: the metric's code, not the config",
                        loss=row[self.metric], epoch=at)
        return None


def _epoch(row: dict, position: float) -> float:
    epoch = row.get("epoch")
    return epoch if epoch is not None and math.isfinite(epoch) else position


def _nan_metrics(row: dict, loss_metric: str, names: tuple[str, ...]) -> list[str]:
    """``names`` that are non-finite in ``row`` while its loss is finite (and its outputs were)."""
    loss = row.get(loss_metric)
    if loss is None or not math.isfinite(loss) or row.get("val_nonfinite_outputs"):
        return []
    return [n for n in names if n in row and not math.isfinite(row[n])]
