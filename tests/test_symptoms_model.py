"""Symptoms of the model as built: non-finite before any step, and outputs the loss cannot read
(pure Python: reports in, findings out)."""

from __future__ import annotations

import math

import pytest

from autofix.judge.history import History
from autofix.symptoms import NonFiniteAtInit, NonFiniteLoss, OutputLossMismatch

NAN, INF = math.nan, math.inf
LAYER = {"nonfinite_output_index": 5.0, "nonfinite_output/5": 0.02, "nonfinite_module/Exponential": 1.0,
         "nonfinite_output_activation": 1.0}


def history(*rows: dict[str, float]) -> History:
    return History({i: {"epoch": float(i), "step": 3.0 * i, "planned_steps": 900.0, **r} for i, r in enumerate(rows)})


@pytest.mark.parametrize("rows, fires, where", [
    pytest.param([{"val_loss": NAN, "train_loss": NAN, **LAYER}], True, "'5' (Exponential, an activation",
                 id="nan-exp"),
    pytest.param([{"val_loss": 1.1, "train_loss": 1.1, **LAYER}], True, "the loss is finite", id="act-only"),
    pytest.param([{"val_loss": INF, "train_loss": 1.1}], True, "val_loss is inf", id="loss-only"),
    pytest.param([{"val_loss": 1.1, "train_loss": 1.1}], False, "", id="finite"),
    pytest.param([{"val_loss": NAN, **LAYER}, {"val_loss": NAN}, {"val_loss": NAN}], True, "since", id="stays-nan"),
    pytest.param([{"val_loss": NAN, **LAYER}, {"val_loss": 1.0}, {"val_loss": NAN}], False, "", id="was-finite"),
    pytest.param([{"val_loss": 1.1}, {"val_loss": NAN}], False, "", id="nan-after-a-step"),
])
def test_nonfinite_at_init_owns_the_untrained_models_nan(rows, fires, where):
    h = history(*rows)
    found = NonFiniteAtInit("val_loss").check(h)
    assert (found is not None) is fires
    if fires:
        assert where in found.reason
    # the loss detector answers exactly the other non-finite reports (a learning rate can cause those)
    loss = NonFiniteLoss("val_loss").check(h)
    assert (loss is not None) == (not fires and not math.isfinite(rows[-1]["val_loss"]))


def test_a_custom_trainable_without_step_or_epoch_is_never_at_init():
    h = History({1: {"loss": NAN}})
    assert NonFiniteAtInit("loss").check(h) is None
    assert NonFiniteLoss("loss").check(h) is not None


def outputs(expects: str, lo: float, hi: float, sum_dev: float, zero_rows: float = 0.0, lse_dev: float = 1.0,
            classes: float = 3.0) -> dict[str, float]:
    return {f"loss_expects/{expects}": 1.0, "output_min": lo, "output_max": hi, "output_sum_dev": sum_dev,
            "output_zero_rows": zero_rows, "output_lse_dev": lse_dev, "output_classes": classes}


@pytest.mark.parametrize("row, broken, reason", [
    # probabilities (Keras' categorical cross-entropy)
    (outputs("probabilities", 0.0, 1.0, 1e-7), None, None),                       # softmax: fits
    (outputs("probabilities", 0.0, 3.2, 2.5, zero_rows=0.4), 1.0, "sum to 0"),    # ReLU output: 0/0
    (outputs("probabilities", -2.0, 3.0, 4.0), 1.0, "negative"),                   # linear output
    (outputs("probabilities", 0.1, 0.9, 0.6), 0.0, "renormalised"),                # 3 sigmoids
    (outputs("probabilities", 0.1, 0.9, 0.6, classes=2.0), None, None),           # 2 sigmoids: left alone
    # log-probabilities (nll)
    (outputs("log_probs", -4.0, -0.01, 0.5, lse_dev=1e-6), None, None),            # log_softmax: fits
    (outputs("log_probs", 0.0, 2.5, 3.0, lse_dev=2.0), 1.0, "not log-probabilities"),  # ReLU output
    (outputs("log_probs", -3.0, -0.5, 0.5, lse_dev=0.2), 0.0, "not log-probabilities"),  # negative, unnormalised
    # logits (cross_entropy, bce_with_logits)
    (outputs("logits", -3.0, 4.0, 2.0), None, None),                               # logits: fit
    (outputs("logits", 0.01, 0.97, 2e-7), 0.0, "every row sums to 1"),             # softmax into a logits loss
    (outputs("logits", 0.2, 0.8, 0.5, classes=1.0), 0.0, "in [0, 1]"),             # sigmoid into BCE-with-logits
    ({"output_min": -1.0, "output_max": 1.0}, None, None),                         # no loss_expects: not checked
    ({**outputs("probabilities", 0.0, 3.2, 2.5, zero_rows=0.4), "output_min": NAN}, None, None),  # NaN outputs
])
def test_output_loss_mismatch_reads_the_outputs_against_the_loss(row, broken, reason):
    found = OutputLossMismatch("val_loss").check(history(row))
    assert (found is None) == (broken is None)
    if found is not None:
        assert found.evidence["broken_loss"] == broken and reason in found.reason
