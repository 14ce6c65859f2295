"""The isolation ladder: cheap experiments that say which part of a failing run is broken.

When an attempt stays unhealthy and no symptom that names a cause explains it (only the generic
"it does not learn" findings: plateau, chance level, slow progress), or the same symptom survived
two remedies, the engine runs these *rungs* as short trials of the managed harness, in the order
of the ``isolate`` candidates of the policy that fired (``autofix/policies/isolation.yaml``), and
stops at the first conclusive one (the expert's "simplify incrementally", after Karpathy's
"A Recipe for Training Neural Networks", 2019: overfit one batch, input-independent baseline):

* ``overfit_batch``: the user's model, loss and optimizer on one fixed small batch. A loss that
  stalls far above what the batch allows means the training step is broken: *training_step*.
* ``simple_model``: scikit-learn baselines (a linear ridge classifier and 5-nearest neighbours) on
  the flattened inputs of a subsample. Clearly above chance while the user's model is not: *model*.
* ``shuffled_labels``: the user's model and the baselines on the real labels and on shuffled ones,
  at the same budget. No difference: the inputs carry no signal for these labels: *data*.

This module is pure (no torch, no ray): rung budgets, conclusions from a rung's reported numbers,
and the ladder's record for reports. The torch side is :mod:`autofix.harness.isolation`.

**Cost** is counted in *examples processed*: one example through one model's forward pass (with
its backward pass when trained), over every model a rung fits or scores (the user's model, the
ridge classifier's single pass, the nearest-neighbour fit and queries). One attempt costs its
planned optimizer steps x its batch size; the ladder gets :data:`LADDER_SHARE` of that, split
among the rungs by :data:`RUNG_SHARES`, and each rung stays inside its share by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DATA", "EVIDENCE", "LADDER_SHARE", "MODEL", "OPTIMIZER", "PARTS", "RUNGS", "RUNG_SHARES", "TRAINING_STEP",
           "RungResult",
           "attempt_examples", "conclude", "margin", "overfit_state", "refine", "rung_budget"]

TRAINING_STEP, MODEL, DATA = "training_step", "model", "data"
OPTIMIZER = "optimizer"  # the step works with a reference optimizer: its settings, for the usual policies
PARTS = (TRAINING_STEP, MODEL, DATA, OPTIMIZER)
RUNGS = ("overfit_batch", "simple_model", "shuffled_labels")
LADDER_SHARE = 0.1  # the bound: the whole ladder <= 10% of one attempt's examples
RUNG_SHARES = {"overfit_batch": 0.5, "simple_model": 0.1, "shuffled_labels": 0.4}  # of the ladder's
OVERFIT_BATCH = 8  # Karpathy overfits "a few examples" (2 to a batch); 8 keeps classes mixed
OVERFIT_MAX_STEPS = 300  # enough for Adam at 1e-3 on 8 examples; more only costs
REACHED = 0.9  # overfit: 90% of the way from the first loss to the batch's floor is "approached"
STALLED = 0.02  # overfit: the last quarter of the steps gained < 2% of that way: stuck
MIN_MARGIN = 0.05  # "clearly above chance": at least 5 points, and 3 binomial standard deviations
EVIDENCE = ("initial_loss", "final_loss", "floor", "steps", "batch", "tail_gain", "param_change", "examples",
            "linear_accuracy",
            "knn_accuracy", "chance", "fitted", "evaluated", "model_real_accuracy", "model_shuffled_accuracy",
            "baseline_real_accuracy", "baseline_shuffled_accuracy", "isolation_seconds")
"""The numbers a rung reports (:mod:`autofix.harness.isolation`); Tune's own keys are left out."""


def attempt_examples(planned_steps: float | None, batch_size: Any) -> float | None:
    """Examples one attempt processes: its planned optimizer steps x its batch size."""
    if not planned_steps or not isinstance(batch_size, (int, float)) or batch_size <= 0:
        return None
    return float(planned_steps) * float(batch_size)


def rung_budget(rung: str, examples: float, batch_size: int) -> dict[str, int]:
    """The sizes a rung may use to stay inside its share of ``examples`` (one attempt's)."""
    share = int(LADDER_SHARE * RUNG_SHARES[rung] * examples)
    if rung == "overfit_batch":  # up to three fits: the user's, the reference optimizer, a tiny MLP
        batch = max(1, min(int(batch_size), OVERFIT_BATCH))
        steps = (share - batch) // (3 * batch) - 1  # each fit: its steps and a final loss; one width probe
        return {"budget": share, "batch": batch, "steps": max(1, min(OVERFIT_MAX_STEPS, steps))}
    if rung == "simple_model":  # two learners, each fitting `fit` and scoring `evaluate` examples
        evaluate = max(1, share // 8)
        return {"budget": share, "fit": max(2, share // 2 - evaluate), "evaluate": evaluate}
    # shuffled_labels: the user's model twice (real, shuffled labels) for `steps` of `batch`, each
    # scored on `evaluate` held-out examples (60% of the share), and the two baselines twice on
    # `fit` + `evaluate` each (40%).
    batch = max(1, min(int(batch_size), 32))
    evaluate = max(1, share // 20)
    fit = max(2, share // 20)
    steps = max(1, (share * 3 // 10 - evaluate) // batch)
    return {"budget": share, "batch": batch, "steps": steps, "evaluate": evaluate, "fit": fit}


def margin(chance: float, evaluated: float) -> float:
    """How far above ``chance`` a held-out accuracy on ``evaluated`` examples must be to count as
    learnt: 3 binomial standard deviations of a chance-level scorer, at least :data:`MIN_MARGIN`."""
    p = min(max(chance, 0.0), 1.0)
    return max(MIN_MARGIN, 3.0 * math.sqrt(p * (1.0 - p) / max(evaluated, 1.0)))


@dataclass(frozen=True)
class RungResult:
    """One rung's verdict: conclusive or not, the part it names, a one-line conclusion, numbers."""

    rung: str
    conclusive: bool
    part: str | None
    conclusion: str
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "conclusive": self.conclusive, "part": self.part,
                "conclusion": self.conclusion, "evidence": dict(self.evidence)}


def _num(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def conclude(rung: str, row: dict[str, Any], user: dict[str, Any] | None = None) -> RungResult:
    """The verdict of ``rung`` from its reported ``row``; ``user``: the failing attempt's last
    report (its ``val_accuracy``), which the simple model is compared with."""
    evidence = {k: float(row[k]) for k in row
                if (k in EVIDENCE or k.startswith(("reference_", "mlp_"))) and _num(row, k) is not None}
    if row.get("error"):
        return RungResult(rung, False, None, f"the rung could not run: {row['error']}", evidence)
    judge = {"overfit_batch": _overfit, "simple_model": _simple, "shuffled_labels": _shuffled}[rung]
    conclusive, part, text = judge(row, user or {})
    return RungResult(rung, conclusive, part, text, evidence)


def overfit_state(row: dict[str, Any], prefix: str = "") -> str:
    """Where one overfit of a batch ended: ``reached`` (:data:`REACHED` of the way to the batch's
    floor), ``stalled`` (short of it and the last quarter gained < :data:`STALLED`), ``falling``
    (still improving when its steps ran out) or ``nonfinite``."""
    first, last = _num(row, prefix + "initial_loss"), _num(row, prefix + "final_loss")
    if first is None or last is None:
        return "nonfinite"
    way = first - (_num(row, "floor") or 0.0)
    if (first - last) / way >= REACHED if way > 1e-6 else True:
        return "reached"
    return "stalled" if (_num(row, prefix + "tail_gain") or 0.0) < STALLED else "falling"


def _overfit(row: dict[str, Any], user: dict[str, Any]) -> tuple[bool, str | None, str]:
    state, batch = overfit_state(row), row.get("batch", 0)
    first, last, floor = _num(row, "initial_loss"), _num(row, "final_loss"), _num(row, "floor") or 0.0
    if state == "nonfinite":
        return True, TRAINING_STEP, (f"training step broken: the loss on one fixed batch of {batch:g} is not finite "
                                     f"after {row.get('steps', 0):g} steps")
    said = (f"one fixed batch of {batch:g}: loss {first:.4g} -> {last:.4g} in {row.get('steps', 0):g} steps "
            f"(the batch allows {floor:.4g})")
    said += f"; {row['note']}" if row.get("note") else ""
    if state == "reached":
        return False, None, f"training step works: {said}"
    if state == "falling":
        return False, None, f"inconclusive: {said}, still falling when its budget ran out"
    if not _num(row, "param_change"):
        return True, TRAINING_STEP, (f"training step broken: {said}, and no parameter changed (frozen or detached "
                                     "parameters, a loss on outputs without a graph, a missing optimizer step)")
    if overfit_state(row, "reference_") in ("reached", "falling"):
        return True, OPTIMIZER, (f"the optimizer's settings: {said}, but Adam at 1e-3 moves it to "
                                 f"{_num(row, 'reference_final_loss'):.4g}: the step works, the usual policies answer")
    mlp = overfit_state(row, "mlp_") if "mlp_final_loss" in row else "stalled"
    if mlp in ("reached", "falling"):
        return True, MODEL, (f"the model is the problem: {said}, with Adam at 1e-3 too, while a 64-unit MLP with "
                             f"your loss fits it ({_num(row, 'mlp_final_loss'):.4g})")
    return True, TRAINING_STEP, (f"training step broken: {said}; a 64-unit MLP with your loss stalls too "
                                 f"({_num(row, 'mlp_final_loss') or float('nan'):.4g}): the loss or its targets "
                                 "(a loss on the wrong outputs, an output/loss mismatch)")


def _simple(row: dict[str, Any], user: dict[str, Any]) -> tuple[bool, str | None, str]:
    chance, evaluated = _num(row, "chance"), _num(row, "evaluated") or 0.0
    scores = {k: _num(row, k) for k in ("linear_accuracy", "knn_accuracy")}
    best_name, best = max(((k, v) for k, v in scores.items() if v is not None), key=lambda kv: kv[1],
                          default=(None, None))
    if chance is None or best is None or best_name is None:
        return False, None, "inconclusive: the baselines reported no held-out accuracy"
    need = margin(chance, evaluated)
    mine = _num(user, "val_accuracy")
    said = (f"{best_name.split('_')[0]} baseline held-out accuracy {best:.3f} vs chance {chance:.3f} "
            f"(+{need:.3f} needed)")
    if best < chance + need:
        return False, None, f"inconclusive: the simple models do not learn either ({said})"
    if mine is not None and mine >= best - need:
        return False, None, f"inconclusive: the simple models learn ({said}) and so does yours ({mine:.3f})"
    yours = f"yours {mine:.3f}" if mine is not None else "yours reports no accuracy"
    return True, MODEL, f"the model is the problem: a simple model learns this data ({said}); {yours}"


def _shuffled(row: dict[str, Any], user: dict[str, Any]) -> tuple[bool, str | None, str]:
    chance, evaluated = _num(row, "chance"), _num(row, "evaluated") or 0.0
    if chance is None:
        return False, None, "inconclusive: no held-out accuracy was reported"
    need = margin(chance, evaluated)
    gaps = {}
    for who in ("model", "baseline"):
        real, shuffled = _num(row, f"{who}_real_accuracy"), _num(row, f"{who}_shuffled_accuracy")
        if real is not None and shuffled is not None:
            gaps[who] = real - shuffled
    if not gaps:
        return False, None, "inconclusive: no real/shuffled accuracy was reported"
    said = ", ".join(f"{who} real - shuffled labels {gap:+.3f}" for who, gap in gaps.items())
    if max(gaps.values()) >= need:
        return False, None, f"inconclusive: the real labels are learnt better than shuffled ones ({said})"
    return True, DATA, (f"data bug: the inputs carry no usable signal for these labels ({said}; {need:.3f} "
                        "needed): labels misaligned with inputs, constant inputs or a wrong label column; no "
                        "relaunch can fix data")


def refine(result: RungResult, symptoms: list[str]) -> RungResult:
    """A rung's verdict in the light of the examined attempt's findings (``symptoms``): a model that
    cannot fit one batch that a small MLP fits *with the same loss*, whose outputs were found not to
    be what the loss takes (``output_loss_mismatch``, left unanswered: no remedy could change the
    head), is fed to the wrong loss: the training step (the output/loss pair), not the model."""
    if result.part != MODEL or "output_loss_mismatch" not in symptoms:
        return result
    return RungResult(result.rung, True, TRAINING_STEP,
                      f"training step broken: {result.conclusion.split(': ', 1)[-1]}; and its outputs are not what "
                      "the loss takes (output_loss_mismatch), which no remedy could change: fix the output or the loss",
                      result.evidence)
