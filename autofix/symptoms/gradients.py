"""Symptoms read off the gradient and update streams of the probe: vanishing, exploding, no update.

The managed harness reports, per epoch (epoch 0 = before any training step), ``grad_norm``,
``grad_norm_first`` / ``grad_norm_last`` (first / last layer), ``grad_ratio`` (first / last),
``grad_zero_frac`` and ``update_ratio_global`` (||dtheta|| / ||theta|| of one step, exactly 0.0
when no parameter changed). A custom trainable may report none of them: a detector whose inputs
are missing from the last report finds nothing and never raises.

This module also holds :class:`ProbeDetector` and :class:`FixedParams`, shared by the other probe
families (activations, data, generalization).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from autofix.judge.history import History
from autofix.symptoms.base import HARD, Detector, Finding, Params

__all__ = ["ExplodingGradients", "FixedParams", "ProbeDetector", "UnchangedWeights", "VanishingGradients"]


# -- shared by the probe detectors -----------------------------------------------------------

class FixedParams(Params):
    """Parameters of a detector that reads fixed probe streams: ``metric`` does not apply."""

    metric: None = None
    """Always None: this detector reads the probe's own streams, not the run's loss metric."""


class ProbeDetector(Detector):
    """A detector over the probe's named streams; judges the history's last report only."""

    @staticmethod
    def last_values(history: History, *names: str) -> dict[str, float] | None:
        """The last report's values of ``names`` (NaN/Inf included), or None if any is missing."""
        row = history.last_row()
        out: dict[str, float] = {}
        for name in names:
            value = row.get(name)
            if value is None:
                return None
            out[name] = value
        return out

    @classmethod
    def optional(cls, history: History, name: str) -> float | None:
        """The last report's value of ``name``, or None when that report lacks it."""
        return history.last(name)

    @staticmethod
    def row_epoch(row: dict[str, float], position: int) -> float:
        """A report's ``epoch`` (the managed harness reports it), else its position (0-based)."""
        epoch = row.get("epoch")
        return epoch if epoch is not None and math.isfinite(epoch) else float(position)

    @classmethod
    def epoch(cls, history: History) -> float:
        """The epoch of the last report (see :meth:`row_epoch`); -1 for an empty history."""
        iterations = history.iterations
        if not iterations:
            return -1.0
        epoch = cls.optional(history, "epoch")
        if epoch is not None and math.isfinite(epoch):
            return epoch
        return float(len(iterations) - 1)

    @classmethod
    def poor_accuracy(cls, history: History, max_accuracy: float | None) -> tuple[bool, float | None]:
        """AUTOTRAINER's gate: (whether accuracy is poor enough to report, the accuracy seen).

        The gate is open when it is disabled (None) or the last report has no finite
        ``val_accuracy`` (regression, custom trainables).
        """
        accuracy = cls.optional(history, "val_accuracy")
        if accuracy is None or not math.isfinite(accuracy):
            return True, None
        return max_accuracy is None or accuracy < max_accuracy, accuracy

    @staticmethod
    def worst(history: History, prefix: str) -> str | None:
        """The suffix of the ``prefix``-named stream with the largest value in the last report."""
        row = history.last_row()
        named = [(v, k[len(prefix):]) for k, v in row.items() if k.startswith(prefix) and math.isfinite(v)]
        return max(named)[1] if named else None

    def found(self, history: History, metric: str, reason: str, **evidence: float | None) -> Finding:
        """A finding on the stream ``metric``; evidence given as None is left out."""
        return Finding(
            symptom=self.name,
            iteration=history.last_iteration or 0,
            metric=metric,
            reason=reason,
            evidence={k: float(v) for k, v in evidence.items() if v is not None},
        )


def _ratio(history: History) -> float | None:
    """``grad_ratio`` as reported, else ``grad_norm_first / grad_norm_last`` when both are."""
    ratio = ProbeDetector.optional(history, "grad_ratio")
    if ratio is not None:
        return ratio
    norms = ProbeDetector.last_values(history, "grad_norm_first", "grad_norm_last")
    if norms is None or not norms["grad_norm_last"]:
        return None
    return norms["grad_norm_first"] / norms["grad_norm_last"]


def _accuracy_text(accuracy: float | None) -> str:
    return "" if accuracy is None else f", val_accuracy {accuracy:.3g}"


# -- detectors -------------------------------------------------------------------------------

class VanishingGradients(ProbeDetector):
    """The first layer's gradient is vanishingly small next to the last layer's.

    Fires when ``grad_ratio`` (first / last layer gradient norm) < ``max_ratio`` and
    ``grad_norm_first`` < ``max_first_norm`` while the last ``val_accuracy`` is below
    ``max_accuracy`` (ignored when the run reports no accuracy; None disables the gate).

    Defaults and sources: ``max_ratio=1e-3`` and ``max_first_norm=1e-4`` are AUTOTRAINER's
    vanishing-gradient rule (Zhang et al., ICSE 2021); ``max_accuracy=0.6`` is AUTOTRAINER's
    "gradient problems are reported only when accuracy is poor", with its not-converging bar of
    0.6. DeepDiagnosis (Wardat et al., ICSE 2022) uses an absolute 1e-7 instead.

    Epoch 0 (before any step) is judged too: the gradient at initialization is informative, and
    a deep sigmoid net whose first layer gets nothing at init is the textbook case. Both
    conditions are required, so a small net with a small loss gradient is not flagged.

    Zero gradients behind dead ReLU units (``dead_frac_max`` or ``grad_zero_frac`` >=
    ``unless_dead_frac``, 0.7 as in ``dying_relu``) are that symptom's finding, not this one:
    the cure differs.

    **Soft**: deep tanh/sigmoid nets start with tiny first-layer gradients and often learn
    anyway, late (the slow learners of the zoo's healthy controls).
    """

    name = "vanishing_gradients"
    inputs = ("grad_ratio", "grad_norm_first", "grad_norm_last")
    evidence_keys = ("grad_norm_first", "grad_ratio", "val_accuracy")
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "The gradient vanishes before it reaches the first layers."

    class Params(FixedParams):
        max_ratio: float = Field(default=1e-3, gt=0)
        max_first_norm: float = Field(default=1e-4, gt=0)
        max_accuracy: float | None = Field(default=0.6, gt=0, le=1)
        unless_dead_frac: float | None = Field(default=0.7, gt=0, le=1)

    def check(self, history: History) -> Finding | None:
        first = self.optional(history, "grad_norm_first")
        ratio = _ratio(history)
        if first is None or ratio is None or not (math.isfinite(first) and math.isfinite(ratio)):
            return None
        p = self.params
        if not (ratio < p.max_ratio and first < p.max_first_norm):
            return None
        dead = [v for k in ("dead_frac_max", "grad_zero_frac")
                if (v := self.optional(history, k)) is not None and math.isfinite(v)]
        if p.unless_dead_frac is not None and dead and max(dead) >= p.unless_dead_frac:
            return None
        poor, accuracy = self.poor_accuracy(history, p.max_accuracy)
        if not poor:
            return None
        return self.found(
            history, "grad_ratio",
            f"first-layer gradient norm {first:.3g} is {ratio:.3g}x the last layer's "
            f"(< {p.max_ratio:g}){_accuracy_text(accuracy)}",
            grad_ratio=ratio, grad_norm_first=first, val_accuracy=accuracy,
        )


class ExplodingGradients(ProbeDetector):
    """The gradient is huge: non-finite, far above its first value, or piling up in the first layers.

    Fires on the first of:

    * ``grad_norm`` is NaN/Inf (``nonfinite``), unless the same report's ``train_loss`` is
      non-finite too: the harness skips the backward pass of a non-finite loss, so its grad norm
      is then a gap, not a measurement, and ``nonfinite_loss`` owns the finding;
    * ``grad_ratio`` (first / last layer) > ``min_ratio``;
    * ``grad_norm`` > ``min_growth`` x the first report's finite ``grad_norm`` (epoch 0 with the
      managed harness);
    * at initialization, ``init_loss`` > ``max_init_loss_ratio`` x ``chance_loss`` (ln of the
      number of classes): logits that large mean activations, and with them gradients, blow up
      through the layers of a badly scaled initialisation (large-std weights).

    The last three only count while ``val_accuracy`` is below ``max_accuracy`` (ignored when there
    is no accuracy; None disables the gate); a non-finite gradient always counts.

    Defaults and sources: ``min_ratio=70`` and ``max_accuracy=0.6`` are AUTOTRAINER's
    exploding-gradient rule and accuracy gate (Zhang et al., ICSE 2021). ``min_growth=100`` is
    our choice, measured: the healthy digits run (small CNN, Adam 1e-3) grows its grad norm 8.6x
    from epoch 0 (0.262 -> 2.25) while learning, so 100x leaves an order of magnitude of margin.
    OLMo-core's 6-sigma rolling test needs far more reports than one per epoch.
    ``max_init_loss_ratio=10`` follows the "verify the loss at init" check (Karpathy, "A Recipe
    for Training Neural Networks", 2019: a softmax classifier should start at ln K); measured
    here, healthy digits runs start at 1.00x ln 10 and a std-0.6 init at 1,300x.

    **Hard**: gradients this large wreck the weights within a few steps.
    """

    name = "exploding_gradients"
    inputs = ("grad_norm", "init_loss")
    evidence_keys = ("chance_loss", "first", "grad_norm", "grad_ratio", "growth", "init_loss", "ratio", "val_accuracy")
    severity = HARD
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "The gradient norm explodes."

    class Params(FixedParams):
        min_ratio: float = Field(default=70.0, gt=0)
        min_growth: float | None = Field(default=100.0, gt=1)
        nonfinite: bool = True
        max_accuracy: float | None = Field(default=0.6, gt=0, le=1)
        max_init_loss_ratio: float | None = Field(default=10.0, gt=1)

    def check(self, history: History) -> Finding | None:
        init = self._at_init(history)
        if init is not None:
            return init
        norm = self.optional(history, "grad_norm")
        ratio = _ratio(history)
        if norm is None and ratio is None:
            return None
        p = self.params
        if norm is not None and not math.isfinite(norm):
            loss = self.optional(history, "train_loss")
            if p.nonfinite and (loss is None or math.isfinite(loss)):
                return self.found(history, "grad_norm", f"grad_norm is {norm}", grad_norm=norm)
            return None
        poor, accuracy = self.poor_accuracy(history, p.max_accuracy)
        if not poor:
            return None
        if ratio is not None and math.isfinite(ratio) and ratio > p.min_ratio:
            return self.found(
                history, "grad_ratio",
                f"first-layer gradient norm is {ratio:.3g}x the last layer's (> {p.min_ratio:g})"
                f"{_accuracy_text(accuracy)}",
                grad_ratio=ratio, grad_norm=norm, val_accuracy=accuracy,
            )
        if norm is None or p.min_growth is None:
            return None
        series = [(i, v) for i, v in history.series("grad_norm") if math.isfinite(v)]
        if len(series) < 2 or series[0][1] <= 0:
            return None
        baseline = series[0][1]
        growth = norm / baseline
        if growth <= p.min_growth:
            return None
        return self.found(
            history, "grad_norm",
            f"grad_norm {norm:.4g} is {growth:.3g}x its first value {baseline:.4g} (> {p.min_growth:g}x)"
            f"{_accuracy_text(accuracy)}",
            grad_norm=norm, first=baseline, growth=growth, val_accuracy=accuracy,
        )


    def _at_init(self, history: History) -> Finding | None:
        init, chance = self.optional(history, "init_loss"), self.optional(history, "chance_loss")
        limit = self.params.max_init_loss_ratio
        if limit is None or init is None or chance is None or not chance > 0 or not math.isfinite(init):
            return None
        if init <= limit * chance:
            return None
        norm = self.optional(history, "grad_norm")
        return self.found(
            history, "init_loss",
            f"the loss at initialization is {init:.4g}, {init / chance:.3g}x chance level ln(classes) = "
            f"{chance:.3g} (> {limit:g}x): the initial weights blow activations and gradients up"
            + (f" (grad_norm {norm:.4g})" if norm is not None else ""),
            init_loss=init, chance_loss=chance, ratio=init / chance, grad_norm=norm,
        )


_NO_UPDATE_ADVICE = """\
The parameters are not changing, which no hyperparameter change can fix: look for a bug in the
training code. Check that
(1) optimizer.step() is called after loss.backward() on every batch;
(2) optimizer.zero_grad() runs before loss.backward(), not between backward() and step() (that
    wipes the gradients before the step; forgetting it altogether instead accumulates them);
(3) backward() runs on the loss the model produced, and the graph reaches the parameters: no
    .item(), .detach(), .data, numpy round-trip or torch.no_grad() on the way;
(4) the optimizer holds the parameters of the model being trained (built after .to(device), not
    from a copy or an earlier model) and they have requires_grad=True (not all frozen);
(5) an AMP GradScaler is not skipping every step as inf/NaN (this fires only where lr x the
    optimizer's step is above float32's resolution of the weights, so a decayed or zero
    learning rate is not the cause);
(6) the reported loss is recomputed from the current model, not a cached value.
If dying_relu fires at the same time, every unit may be dead (all gradients exactly zero):
treat that first."""


class UnchangedWeights(ProbeDetector):
    """The parameters do not change: a bug in the training loop, not a bad hyperparameter.

    Fires once training has started (step > 0), on either arm, only on reports where a step
    should show: ``update_expected`` (lr x the optimizer's step scale) above ``update_resolution``
    (float32's relative spacing x the median |weight|). An update below that rounds away to an
    exact zero, which is no bug: a converged run whose ReduceLROnPlateau decayed the learning
    rate to ~5e-9 does it. Without those two streams (a custom trainable without ``Probe``)
    nothing fires, and identical losses alone never fire it: a converged loss can repeat.

    * **zero updates**: ``update_ratio_global`` is exactly 0.0 on each of the last
      ``for_reports`` measured reports, each with a finite ``train_loss`` and ``grad_norm``
      where reported (the harness skips the step of a non-finite loss or gradient, which
      ``nonfinite_loss`` and ``exploding_gradients`` own) and not every gradient entry exactly 0
      (``grad_zero_frac`` 1: dead units or a flat loss, the model's) - a missing ``optimizer.step()``;
    * **zero effective updates**: one of ``loss_metrics`` is bit-for-bit the same, and not 0, on
      each of the last ``window`` reports while steps that should show were taken (None
      disables this arm). The validation loss is computed on a fixed set in eval mode: it
      repeats exactly only when the function the model computes did not change, i.e. the
      updates never reached it (weights reloaded in ``forward``, an optimizer holding other
      tensors, a loss on a detached copy).

    **Hard**: an exact zero update at a learning rate that should move the weights is a bug now.

    Defaults and sources: DeepDiagnosis (Wardat et al., ICSE 2022) flags "unchanged weights"
    without a threshold; exact zero is the probe's own definition of "no parameter changed".
    ``for_reports=2`` is our choice: one sampled step with a zero learning rate (a warm-up from
    0) gives one legitimate zero. ``window=3`` is our choice: three bit-identical validation
    losses in a row do not occur on any measured curve whose steps are above float32's
    resolution.
    """

    name = "no_update"
    inputs = ("update_ratio_global",)
    evidence_keys = ("reports", "update_expected", "update_ratio_global", "update_resolution", "value")
    severity = HARD
    sampled = True  # reads probe samples (see Detector.sampled)
    summary = "The parameters are not being updated (a training-loop bug)."
    fixable = False
    advice = _NO_UPDATE_ADVICE

    class Params(FixedParams):
        for_reports: int = Field(default=2, ge=1)
        window: int | None = Field(default=3, ge=2)
        loss_metrics: tuple[str, ...] = ("val_loss",)

    def check(self, history: History) -> Finding | None:
        iterations = history.iterations
        if not iterations or history.position(iterations[-1]) <= 0:
            return None
        p = self.params
        depth = max(p.for_reports, p.window or 0)
        recent = [(history.position(i), history.rows_view(i)) for i in reversed(iterations[-depth:])]
        updates = recent[: p.for_reports]
        if len(updates) == p.for_reports and all(_no_step(step, row) for step, row in updates):
            row = updates[0][1]
            return self.found(
                history, "update_ratio_global",
                f"no parameter changed: update_ratio_global is 0 on the last {p.for_reports} report(s), while a "
                f"step of lr x scale {row['update_expected']:.3g} is above the float32 resolution "
                f"{row['update_resolution']:.3g} of the median weight",
                update_ratio_global=0.0, reports=p.for_reports, update_expected=row["update_expected"],
                update_resolution=row["update_resolution"],
            )
        return self._repeated_loss(history, recent)

    def _repeated_loss(self, history: History, recent: list[tuple[float, dict]]) -> Finding | None:
        p = self.params
        if p.window is None or len(recent) < p.window:
            return None
        window = recent[: p.window]
        if not all(step > 0 and _visible(row) and _step_taken(row) for step, row in window):
            return None
        for metric in p.loss_metrics:
            values = [row.get(metric) for _, row in window]
            if values[0] is None or not math.isfinite(values[0]) or values[0] == 0:
                continue
            if all(v == values[0] for v in values):
                row = window[0][1]
                return self.found(
                    history, metric,
                    f"{metric} is exactly {values[0]!r} on the last {p.window} reports while steps of lr x scale "
                    f"{row['update_expected']:.3g} (above float32's {row['update_resolution']:.3g}) were "
                    "taken: the updates never reach the model",
                    value=values[0], reports=p.window, update_expected=row["update_expected"],
                    update_resolution=row["update_resolution"],
                )
        return None


def _visible(row: dict[str, Any]) -> bool:
    """The report's measured step is above float32's resolution of the weights."""
    expected, resolution = row.get("update_expected"), row.get("update_resolution")
    return expected is not None and resolution is not None and expected > resolution


def _step_taken(row: dict[str, Any]) -> bool:
    """The harness took its steps: it skips those of a non-finite loss or gradient (their symptoms'),
    and a gradient reached the parameters. Every gradient entry exactly zero (``grad_zero_frac``
    1) makes a zero update the model's, not the loop's: a network dead at He init or a loss
    flat on its outputs (the ported-models zoo's ReLU-output and linear-output cases, seed 1,
    were stopped as loop bugs), which ``dying_relu`` and ``output_loss_mismatch`` answer."""
    finite = all(math.isfinite(row[k]) for k in ("train_loss", "grad_norm") if k in row)
    return finite and row.get("grad_zero_frac") != 1.0


def _no_step(step: float, row: dict[str, Any]) -> bool:
    """A measured, exact-zero update where the step should have shown."""
    return step > 0 and row.get("update_ratio_global") == 0.0 and _visible(row) and _step_taken(row)
