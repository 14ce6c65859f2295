"""``no_update``: the optimizer steps, yet no parameter changes (a measured, exact-zero update).

Read off the probe's update streams (``update_ratio_global``: ||dtheta|| / ||theta|| of one step,
exactly 0.0 when no parameter changed; ``update_expected`` and ``update_resolution``: the update a
step should make and float32's spacing at the weights). A bug in the training loop, reported
with a checklist, never repaired.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from autofix.judge.history import History
from autofix.symptoms.base import HARD, Finding, FixedParams, ProbeDetector

__all__ = ["UnchangedWeights"]


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
