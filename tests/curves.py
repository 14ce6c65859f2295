"""Loss curves shared by the symptom and engine tests (one copy, so a table cannot drift).

The four digits curves are the measured ``val_loss`` of a small CNN on scikit-learn's digits,
epoch 0 (before any training step) first, 23 optimizer steps per epoch, 15 epochs planned.
"""

from __future__ import annotations

__all__ = ["ADAM_TINY", "DIGITS_STEPS", "HEALTHY", "SGD_SLOW", "STUCK", "curve"]


def curve(text: str) -> list[float]:
    """Space-separated numbers, as measured curves are written in these tables."""
    return [float(x) for x in text.split()]


DIGITS_STEPS = 23  # optimizer steps per epoch of the measured digits runs

HEALTHY = curve("2.305 2.096 1.297 .568 .388 .295 .248 .242 .186 .207 .167 .191 .144 .131 .135 .173")  # Adam 1e-3
STUCK = curve("2.305 2.541 2.366 2.336 2.367 2.385 2.359 2.381 "
              "2.369 2.384 2.421 2.384 2.332 2.329 2.363 2.442")  # Adam 1.0
SGD_SLOW = curve("2.305 2.304 2.302 2.301 2.299 2.298 2.296 2.295 2.293 2.292 2.290 2.289 2.287 2.285 2.283 2.280")
ADAM_TINY = curve("2.305 2.304 2.303 2.302 2.301 2.300 2.299 2.298 2.296 2.295 2.294 2.293 2.292 2.290 2.289 2.287")
