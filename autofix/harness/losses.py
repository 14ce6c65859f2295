"""Losses of the managed harness beyond torch's, and what each expects of the model's outputs.

* ``categorical_crossentropy``: Keras' ``categorical_crossentropy`` with ``from_logits=False``,
  the loss models ported from Keras are trained with: the outputs are taken as probabilities,
  divided by their sum over the classes, clipped to ``[epsilon, 1 - epsilon]`` (Keras'
  ``backend.epsilon()`` = 1e-7) and logged (Keras 2.x ``backend.categorical_crossentropy``). Three
  sigmoid outputs are renormalised and still train; an all-zero ReLU output row is 0/0 = NaN,
  as in Keras.

``EXPECTS`` says what each built-in loss takes: ``logits`` (any real numbers), ``probabilities``
(non-negative rows that sum to 1) or ``log_probs`` (rows whose exponentials sum to 1); ``mse``
takes any numbers (None: nothing to check). A custom loss (``"module:callable"``) declares it as
``loss.expects``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CLASS_ID_LOSSES", "EXPECTS", "KERAS_EPSILON", "CategoricalCrossentropy"]

KERAS_EPSILON = 1e-7  # Keras backend.epsilon(), the fuzz factor of its probability losses
EXPECTS: dict[str, str | None] = {
    "bce_with_logits": "logits",
    "categorical_crossentropy": "probabilities",
    "cross_entropy": "logits",
    "mse": None,
    "nll": "log_probs",
}
CLASS_ID_LOSSES = ("categorical_crossentropy", "cross_entropy", "nll")
"""Losses whose targets are class ids (one output column per class)."""


class CategoricalCrossentropy(nn.Module):
    """Keras' categorical cross-entropy on probability outputs (``from_logits=False``).

    ``out / out.sum(1)``, clipped to ``[epsilon, 1 - epsilon]``, then the negative log-likelihood
    of the target class (class ids) or of probability rows (float 2-D targets). ``weight`` (one
    per class) weights each sample by its class, normalised by the total weight like torch's
    ``NLLLoss`` (Keras' ``class_weight`` divides by the batch size instead).
    """

    def __init__(self, weight: torch.Tensor | None = None, epsilon: float = KERAS_EPSILON) -> None:
        super().__init__()
        self.register_buffer("weight", weight if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.epsilon = float(epsilon)

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch of probability rows ``out`` against ``target``."""
        probs = (out / out.sum(dim=1, keepdim=True)).clamp(self.epsilon, 1.0 - self.epsilon)
        log_probs = probs.log()
        if target.is_floating_point() and target.dim() > 1:
            return -(target * log_probs).sum(dim=1).mean()
        weight: Any = self.weight
        return F.nll_loss(log_probs, target.long(), weight=weight)
