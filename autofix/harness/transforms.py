"""Input transforms of the managed harness: ``data.normalize`` and ``data.augment``.

Both are batch transforms ``transform(x, key)`` run by :class:`autofix.harness.data.Batches`
(``key`` is a seed derived from ``(seed, epoch, batch index)``), so the datasets themselves are
never copied or modified and a restored run sees exactly the same inputs.

* normalize: standardise with the mean/std of the *training* data only (per channel for
  ``(N, C, ...)`` inputs, per feature for ``(N, F)`` tables), applied to train and val, as
  scikit-learn's ``StandardScaler`` fitted on the training split would.
* augment: torchvision transforms v2 (``RandomHorizontalFlip``, ``RandomRotation``,
  ``RandomCrop(size, padding)``, https://pytorch.org/vision/stable/transforms.html) on training
  image batches only; validation inputs are never augmented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["STD_FLOOR", "Augment", "Chain", "Standardize", "fit_standardizer", "input_shape", "input_transforms"]

STD_FLOOR = 1e-8
"""A std below this marks a constant feature: it gets scale 1, like scikit-learn's
``StandardScaler`` (``_handle_zeros_in_scale``). Dividing by the floor instead would blow up any
validation value that differs from the constant (digits has such pixels) by 1e8."""

Transform = Callable[[torch.Tensor, int], torch.Tensor]


class Standardize:
    """``(x - mean) / std`` with statistics shaped to broadcast over a batch."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean, std

    def __call__(self, x: torch.Tensor, key: int = 0) -> torch.Tensor:
        return (x - self.mean) / self.std


def input_shape(dataset: Dataset) -> tuple[int, ...]:
    """Shape of the dataset's inputs as a batch ``(N, ...)`` (N = dataset length)."""
    if isinstance(dataset, TensorDataset):
        return tuple(dataset.tensors[0].shape)
    first = torch.as_tensor(dataset[0][0])
    return (len(dataset), *first.shape)  # type: ignore[arg-type]  # Dataset declares no __len__; a map-style one has it


def _moments(dataset: Dataset, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel sum, sum of squares (float64) and count over the whole training set."""
    if isinstance(dataset, TensorDataset):
        batches: Any = [dataset.tensors[0]]
    else:  # one streamed pass for user datasets
        batches = (batch[0] for batch in DataLoader(dataset, batch_size=1024, shuffle=False))
    total: torch.Tensor | None = None
    square = torch.zeros(())
    count = 0
    for x in batches:
        x = torch.as_tensor(x, dtype=torch.float64)
        s, q = x.sum(dim=dims), (x * x).sum(dim=dims)
        total, square = (s, q) if total is None else (total + s, square + q)
        count += x.numel() // max(1, s.numel())
    if total is None or count == 0:  # no batch, or only empty ones
        raise ValueError("data.normalize: the training set is empty")
    return total, square, count


def fit_standardizer(dataset: Dataset) -> Standardize:
    """Mean/std of the training inputs: per channel (dim 1) for ``(N, C, ...)``, per feature
    for ``(N, F)``, a scalar for ``(N,)`` inputs. Population std; constant features get 1."""
    ndim = len(input_shape(dataset))
    dims = [0, *range(2, ndim)]
    total, square, count = _moments(dataset, dims)
    mean = total / count
    std = (square / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std < STD_FLOOR, torch.ones_like(std), std)
    shape = (-1, *([1] * (ndim - 2))) if ndim >= 2 else ()
    return Standardize(mean.float().reshape(shape), std.float().reshape(shape))


class Augment:
    """Seeded per-sample torchvision v2 augmentation of an ``(N, C, H, W)`` batch.

    A v2 transform called on a batch draws *one* set of random parameters for all of it (the
    whole batch would flip together), so each sample is transformed on its own. The global
    torch RNG is forked and seeded with ``key``: the result depends only on ``(seed, epoch,
    batch)``, and dropout or weight init elsewhere see an RNG stream unaffected by augmentation.
    """

    def __init__(self, flip: bool, rotation: float, crop_padding: int, size: Sequence[int]) -> None:
        from torchvision.transforms import v2  # deferred: torchvision import costs ~1 s

        steps: list[Any] = []
        if flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if rotation:
            steps.append(v2.RandomRotation(degrees=float(rotation)))
        if crop_padding:
            steps.append(v2.RandomCrop(size=tuple(size), padding=int(crop_padding)))
        self.pipeline = v2.Compose(steps) if steps else None

    def __call__(self, x: torch.Tensor, key: int = 0) -> torch.Tensor:
        if self.pipeline is None:
            return x
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key)
            return torch.stack([self.pipeline(sample) for sample in x])


class Chain:
    """Apply transforms in order (augment on raw pixels first, then standardise, as torchvision
    pipelines do: padding and rotation fill with 0 = black, not with the mean)."""

    def __init__(self, steps: Sequence[Transform]) -> None:
        self.steps = list(steps)

    def __call__(self, x: torch.Tensor, key: int = 0) -> torch.Tensor:
        for step in self.steps:
            x = step(x, key)
        return x


def _augment(spec: dict[str, Any], train: Dataset) -> Augment:
    shape = input_shape(train)
    if len(shape) != 4:
        raise ValueError(f"data.augment applies to image data (N,C,H,W); got shape {shape}")
    return Augment(bool(spec.get("flip", False)), float(spec.get("rotation", 0) or 0),
                   int(spec.get("crop_padding", 0) or 0), size=shape[2:])


def input_transforms(spec: dict[str, Any], train: Dataset) -> tuple[Transform | None, Transform | None]:
    """``(train_transform, val_transform)`` for the ``data`` config (None = inputs as they are).

    Raises:
        ValueError: ``augment`` on inputs that are not ``(N, C, H, W)`` images.
    """
    train_steps: list[Transform] = []
    val_steps: list[Transform] = []
    augment = spec.get("augment") or {}
    if augment.get("flip") or augment.get("rotation") or augment.get("crop_padding"):
        train_steps.append(_augment(augment, train))
    if spec.get("normalize"):
        standardize = fit_standardizer(train)  # training data only: val must not leak in
        train_steps.append(standardize)
        val_steps.append(standardize)

    def chain(steps: list[Transform]) -> Transform | None:
        return None if not steps else steps[0] if len(steps) == 1 else Chain(steps)

    return chain(train_steps), chain(val_steps)
