"""Losses of the managed harness: Keras' categorical cross-entropy on probabilities, custom loss
factories and what each loss expects of the outputs (``loss.expects``)."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import torch

from autofix.harness.builders import LOSSES, LossFn
from autofix.harness.losses import EXPECTS
from autofix.spec.training import LOSSES as SPEC_LOSSES, TrainingSpec


def keras_cce(out: np.ndarray, y: np.ndarray, eps: float = 1e-7) -> float:
    """Keras 2.x backend.categorical_crossentropy(from_logits=False), written out in numpy."""
    p = out / out.sum(axis=1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-np.log(p[np.arange(len(y)), y])))


@pytest.mark.parametrize("out", [
    [[0.2, 0.5, 0.9], [0.99, 0.01, 0.3]],          # three sigmoids: renormalised
    [[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]],            # softmax rows
    [[1e-12, 1.0, 0.0], [2.0, 0.0, 3.0]],          # clipped at 1e-7 and 1 - 1e-7
])
def test_categorical_crossentropy_is_keras_on_probabilities(out):
    y = np.array([1, 0])
    loss = LossFn("categorical_crossentropy", {})(torch.tensor(out, dtype=torch.float32), torch.tensor(y))
    assert float(loss) == pytest.approx(keras_cce(np.array(out, dtype=np.float64), y), rel=1e-5)


def test_an_all_zero_relu_row_is_nan_as_in_keras():
    loss = LossFn("categorical_crossentropy", {})(torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.3, 0.5]]),
                                                  torch.tensor([0, 1]))
    assert math.isnan(float(loss))


def test_class_weights_weigh_each_sample_by_its_class():
    out, y = torch.tensor([[0.5, 0.5], [0.9, 0.1]]), torch.tensor([0, 1])
    plain = LossFn("categorical_crossentropy", {})(out, y)
    weighted = LossFn("categorical_crossentropy", {"weight": [1.0, 3.0]})(out, y)
    expected = (1 * -math.log(0.5) + 3 * -math.log(0.1)) / 4
    assert float(weighted) == pytest.approx(expected, rel=1e-5) and float(weighted) != pytest.approx(float(plain))


def test_the_spec_knows_what_every_builtin_loss_expects():
    assert SPEC_LOSSES == EXPECTS and set(LOSSES) == set(EXPECTS)


def focal(gamma: float = 2.0) -> torch.nn.Module:  # a user's loss factory (on logits)
    class Focal(torch.nn.Module):
        def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logp = torch.log_softmax(out, dim=1).gather(1, y[:, None]).squeeze(1)
            return (-(1 - logp.exp()) ** gamma * logp).mean()
    return Focal()


def spec(loss: dict) -> dict:
    return {"model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3}},
            "data": {"factory": "blobs"}, "optimizer": {"name": "adam", "lr": 1e-3}, "loss": loss}


@pytest.mark.parametrize("loss, expects", [
    ({"name": "test_losses:focal", "args": {"gamma": 1.0}, "expects": "logits"}, "logits"),
    ({"name": "test_losses:focal"}, None),
    ({"name": "nll"}, "log_probs"),
    ({"name": "nll", "expects": "log_probs"}, "log_probs"),
])
def test_a_custom_loss_is_a_factory_and_declares_what_it_expects(loss, expects):
    cfg = TrainingSpec.model_validate(spec(loss)).model_dump(mode="json")
    fn = LossFn(cfg["loss"]["name"], cfg["loss"]["args"], cfg["loss"]["expects"])
    assert fn.expects == expects
    assert torch.isfinite(fn(torch.randn(4, 3), torch.tensor([0, 1, 2, 0])))


@pytest.mark.parametrize("loss, message", [
    ({"name": "nll", "expects": "logits"}, "takes log_probs, not logits"),
    ({"name": "mse", "expects": "probabilities"}, "takes any numbers, not probabilities"),
    ({"name": "hinge"}, "expected a built-in loss"),
    ({"name": "test_losses:focal", "args": {"alpha": 1}}, "unexpected keyword argument 'alpha'"),
    ({"name": "test_losses:focal", "expects": "scores"}, "Input should be"),
])
def test_bad_loss_specs_are_refused_at_the_boundary(loss, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        TrainingSpec.model_validate(spec(loss))


@pytest.mark.parametrize("loss, noticed", [
    ({"name": "test_losses:focal"}, True),
    ({"name": "test_losses:focal", "expects": "logits"}, False),
    ({"name": "cross_entropy"}, False),
])
def test_a_custom_loss_without_expects_is_noticed_at_the_start(loss, noticed):
    from autofix.reports.progress import event_line
    from autofix.spec.schema import load_spec
    from autofix.tune.runner import notices

    said = notices(load_spec({"training": spec(loss)}))
    assert bool(said) is noticed
    if noticed:
        assert "output_loss_mismatch) is skipped" in said[0]
        assert event_line({"event": "notice", "text": said[0]}) == f"notice: {said[0]}"
