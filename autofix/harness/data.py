"""Builtin offline datasets for the managed-training harness.

Every builtin has the signature ``fn(seed: int, val_fraction: float = 0.2, **args)`` and returns
``(train_dataset, val_dataset)`` as :class:`torch.utils.data.TensorDataset` pairs, features
float32 and class labels int64. Nothing here touches the network: scikit-learn ships ``digits``
inside the package, the other sets are generated. :class:`Batches` iterates any dataset in a
seeded, restorable order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset, WeightedRandomSampler

from autofix.harness.distributed import shard_order

__all__ = ["DATASETS", "Batches", "blobs", "circles", "classification", "digits", "fake", "split_arrays"]

Pair = tuple[TensorDataset, TensorDataset]


def split_arrays(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float = 0.2) -> Pair:
    """Split ``(x, y)`` into train/val TensorDatasets, deterministic for a given ``seed``.

    Stratified when ``y`` holds class ids, so a small or imbalanced set keeps every class on both
    sides; falls back to a plain split where stratifying is impossible (a class with one member,
    or fewer val slots than classes).
    """
    stratify = y if np.issubdtype(y.dtype, np.integer) else None
    try:
        x_tr, x_va, y_tr, y_va = train_test_split(
            x, y, test_size=val_fraction, random_state=seed, stratify=stratify
        )
    except ValueError:
        if stratify is None:
            raise
        x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=val_fraction, random_state=seed)
    return _tensors(x_tr, y_tr), _tensors(x_va, y_va)


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    y_dtype = torch.int64 if np.issubdtype(y.dtype, np.integer) else torch.float32
    return TensorDataset(
        torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32),
        torch.as_tensor(np.ascontiguousarray(y), dtype=y_dtype),
    )


def digits(
    seed: int,
    val_fraction: float = 0.2,
    scale: float = 1.0 / 16.0,
    flatten: bool = False,
    classes: Sequence[int] | None = None,
    max_per_class: Mapping[str | int, int] | None = None,
    channels: int = 1,
    upscale: int = 1,
) -> Pair:
    """scikit-learn's 8x8 handwritten digits (1797 images, about 180 per class).

    Args:
        scale: multiplies the raw 0..16 pixel values; the default maps them into [0, 1].
        flatten: give ``(N, 64)`` rows for an MLP instead of ``(N, 1, 8, 8)`` images.
        classes: keep only these digits; labels are then renumbered to their position in
            ``classes`` so a model needs ``len(classes)`` outputs.
        max_per_class: cap per original digit, keys may be strings (JSON), e.g.
            ``{"0": 900, "1": 40}`` to build an imbalanced set; a seeded random subset is kept.
        channels: repeat the grey channel (3: RGB-shaped input for image models).
        upscale: nearest-neighbour upsampling factor (4: 32x32 images, the seed SimpleCNN's size).
    """
    bunch = skd.load_digits()
    x = bunch.images.astype(np.float32) * np.float32(scale)
    y = bunch.target.astype(np.int64)
    keep = np.ones(len(y), dtype=bool)
    if classes is not None:
        keep &= np.isin(y, list(classes))
    if max_per_class:
        keep &= _cap_mask(y, {int(k): int(v) for k, v in max_per_class.items()}, seed)
    x, y = x[keep], y[keep]
    if classes is not None:
        lookup = {int(c): i for i, c in enumerate(classes)}
        y = np.array([lookup[int(v)] for v in y], dtype=np.int64)
    if flatten:
        x = x.reshape(len(x), 64)
    else:
        x = np.repeat(np.repeat(x, upscale, axis=1), upscale, axis=2)[:, None, :, :].repeat(channels, axis=1)
    return split_arrays(x, y, seed, val_fraction)


def _cap_mask(y: np.ndarray, caps: dict[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.ones(len(y), dtype=bool)
    for label, cap in caps.items():
        idx = np.flatnonzero(y == label)
        if len(idx) > cap:
            mask[rng.permutation(idx)[cap:]] = False
    return mask


def blobs(
    seed: int,
    val_fraction: float = 0.2,
    n_samples: int = 1000,
    n_features: int = 2,
    centers: int = 3,
    cluster_std: float = 1.0,
    scale: float = 1.0,
    **extra: object,
) -> Pair:
    """Gaussian blobs (``make_blobs``); ``scale`` multiplies features, extra args pass through."""
    x, y = skd.make_blobs(
        n_samples=n_samples, n_features=n_features, centers=centers,
        cluster_std=cluster_std, random_state=seed, **extra,
    )
    return split_arrays(x * scale, y.astype(np.int64), seed, val_fraction)


def circles(
    seed: int,
    val_fraction: float = 0.2,
    n_samples: int = 1000,
    noise: float = 0.1,
    factor: float = 0.5,
    scale: float = 1.0,
    **extra: object,
) -> Pair:
    """Two concentric circles (``make_circles``), 2 features, 2 classes; not linearly separable."""
    x, y = skd.make_circles(
        n_samples=n_samples, noise=noise, factor=factor, random_state=seed, **extra
    )
    return split_arrays(x * scale, y.astype(np.int64), seed, val_fraction)


def classification(
    seed: int,
    val_fraction: float = 0.2,
    n_samples: int = 1000,
    n_features: int = 20,
    n_informative: int = 5,
    n_classes: int = 2,
    weights: Sequence[float] | None = None,
    scale: float = 1.0,
    **extra: object,
) -> Pair:
    """``make_classification``; ``weights`` (e.g. ``[0.95, 0.05]``) makes it imbalanced."""
    x, y = skd.make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=n_informative,
        n_classes=n_classes, weights=list(weights) if weights is not None else None,
        random_state=seed, **extra,
    )
    return split_arrays(x * scale, y.astype(np.int64), seed, val_fraction)


def fake(
    seed: int,
    val_fraction: float = 0.2,
    size: int = 1000,
    image_size: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    random_offset: int = 0,
    scale: float = 1.0,
) -> Pair:
    """torchvision ``FakeData`` materialized once into tensors (float32 in [0, 1] times ``scale``).

    Labels are random, so a model can only memorize them: val accuracy stays near chance.
    """
    from torchvision.datasets import FakeData  # deferred: torchvision import costs ~1 s
    from torchvision.transforms import ToTensor

    source = FakeData(
        size=size, image_size=tuple(image_size), num_classes=num_classes,
        transform=ToTensor(), random_offset=random_offset,
    )
    items = [source[i] for i in range(size)]
    x = torch.stack([img for img, _ in items]).numpy() * np.float32(scale)
    y = np.array([label for _, label in items], dtype=np.int64)
    return split_arrays(x, y, seed, val_fraction)


class Batches:
    """Seeded batch iteration: the order for epoch ``e`` depends only on ``(seed, e)``.

    That makes a restored run replay exactly the batches the crashed one would have seen.
    TensorDatasets (all builtins) are sliced directly, skipping DataLoader's per-item collate,
    which would otherwise dominate the cost of small models.

    Args:
        weights: per-sample weights; when given, each epoch draws ``len(dataset)`` indices with
            replacement through :class:`torch.utils.data.WeightedRandomSampler` (seeded by
            ``(seed, epoch)``) instead of a permutation: a balanced sampler.
        transform: ``transform(x, key)`` applied to every input batch (normalisation,
            augmentation); ``key`` depends only on ``(seed, epoch, batch index)`` so a random
            transform replays exactly too.
        shard: ``(rank, world_size)`` of a data-parallel run: this rank iterates its strided,
            equal-sized share of each epoch's order (:func:`autofix.harness.distributed.shard_order`).
        device: move every batch there (after the transform), e.g. a DDP rank's GPU.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int,
                 weights: torch.Tensor | None = None,
                 transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 shard: tuple[int, int] | None = None, device: str | None = None) -> None:
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.weights, self.transform, self.shard, self.device = weights, transform, shard, device

    def steps_per_epoch(self) -> int | None:
        """Batches (optimizer steps) per epoch, or None for a dataset without a length."""
        try:
            size = len(self.dataset)  # type: ignore[arg-type]  # Dataset declares no __len__; ours have it
        except TypeError:
            return None
        if self.weights is not None:
            size = len(self.weights)  # a balanced sampler draws that many, with replacement
        if self.shard is not None:
            size = (size - size % self.shard[1]) // self.shard[1]  # shard_order's equal shares
        return -(-size // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches for ``epoch``; a dataset with ``set_epoch`` is told the epoch
        first (the convention of torch's ``DistributedSampler`` and Hugging Face datasets)."""
        if callable(getattr(self.dataset, "set_epoch", None)):
            self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]  # checked just above
        key = self.seed * 1_000_003 + epoch
        for i, (x, y) in enumerate(self._raw(torch.Generator().manual_seed(key))):
            if self.transform is not None:
                x = self.transform(x, (key * 100_003 + i) % 2**63)  # a valid torch seed
            if self.device is not None:
                x, y = x.to(self.device), y.to(self.device)
            yield x, y

    def _sampler(self, gen: torch.Generator) -> Sampler[int] | None:
        if self.weights is None:
            return None
        return WeightedRandomSampler(self.weights, num_samples=len(self.weights),  # type: ignore[arg-type]  # takes a tensor
                                     replacement=True, generator=gen)

    def _shard_order(self, gen: torch.Generator) -> torch.Tensor:
        """This rank's sample indices for the epoch: its share of the seeded order."""
        sampler = self._sampler(gen)
        if sampler is not None:
            order = torch.as_tensor(list(sampler), dtype=torch.int64)
        elif self.shuffle:
            order = torch.randperm(len(self.dataset), generator=gen)  # type: ignore[arg-type]  # as above
        else:
            order = torch.arange(len(self.dataset))  # type: ignore[arg-type]  # as above
        assert self.shard is not None  # only a sharded (DDP) dataset is read by shard
        return shard_order(order, *self.shard)

    def _raw(self, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shard is not None:
            yield from self._sharded(gen)
            return
        ds, size, sampler = self.dataset, self.batch_size, self._sampler(gen)
        if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
            x, y = ds.tensors
            if sampler is not None:
                order: torch.Tensor | None = torch.as_tensor(list(sampler), dtype=torch.int64)
            else:
                order = torch.randperm(len(ds), generator=gen) if self.shuffle else None
            for start in range(0, len(ds), size):
                if order is None:
                    yield x[start : start + size], y[start : start + size]
                else:
                    idx = order[start : start + size]
                    yield x[idx], y[idx]
            return
        if sampler is not None:
            yield from DataLoader(ds, batch_size=size, sampler=sampler)
            return
        yield from DataLoader(ds, batch_size=size, shuffle=self.shuffle, generator=gen)

    def _sharded(self, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._shard_order(gen)
        ds, size = self.dataset, self.batch_size
        if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
            x, y = ds.tensors
            for start in range(0, len(order), size):
                idx = order[start : start + size]
                yield x[idx], y[idx]
            return
        yield from DataLoader(Subset(ds, order.tolist()), batch_size=size, shuffle=False)


DATASETS: dict[str, Callable[..., Pair]] = {
    "blobs": blobs,
    "circles": circles,
    "classification": classification,
    "digits": digits,
    "fake": fake,
}
