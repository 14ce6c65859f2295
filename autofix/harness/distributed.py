"""Data-parallel (DDP) hooks of the managed loop: what changes when N processes train one model.

Ray-free on purpose (only the tune package touches Ray): :mod:`autofix.tune.ddp` builds a
:class:`Parallel` from Ray Train's context and passes ``ray.train.torch.prepare_model`` as
``wrap``. What the loop does differently under a :class:`Parallel`:

* the training batches are a rank-strided shard of each epoch's seeded order (every rank draws
  the same permutation, takes ``order[rank::world]``, and the tail that does not divide evenly
  is dropped so every rank runs the same number of steps: DDP's all-reduce needs that);
* the per-rank batch is ``batch_size // world`` so the global batch, and the number of
  optimizer steps per epoch, stay what the spec says;
* forward/backward passes go through the wrapped (DDP) model, while probes, evaluation and
  checkpoints use the plain module (``model.module``), so checkpoints load in single-process
  runs too;
* "skip a non-finite loss" is decided by all ranks together, else one rank would skip a
  backward the others wait on in the all-reduce (a hang);
* the spike guard judges the mean loss over the ranks (one all-reduce of a number a step, only with
  the guard on), and its "is it the batch or the weights?" check the mean over the ranks too:
  every rank runs the same deterministic rules on the same numbers, so all agree on each rewind
  and restore their (identical) snapshots together;
* only rank 0 writes checkpoints (the caller reports only rank 0's metrics);
* batches and the loss's weights move to ``device`` (``wrap`` moves the model there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Parallel", "all_finite", "mean_across", "per_rank_batch", "shard_order", "unwrap"]


def _identity(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel run and how to wrap its model."""

    rank: int
    world_size: int
    wrap: Callable[[nn.Module], nn.Module] = field(default=_identity, compare=False)
    device: str = "cpu"  # where this rank's batches and loss go (its GPU with use_gpu)

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not within a world of {self.world_size}")

    @property
    def is_chief(self) -> bool:
        """Rank 0: the process whose metrics and checkpoints are reported."""
        return self.rank == 0


def shard_order(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of an epoch's sample order: equal-sized, disjoint, strided."""
    usable = len(order) - len(order) % world_size
    return order[:usable][rank::world_size]


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The batch each rank draws so that the global batch is ``batch_size`` (at least 1)."""
    return max(1, batch_size // world_size)


def all_finite(loss: torch.Tensor) -> bool:
    """True when the loss is finite on every rank (a collective: every rank must call it)."""
    flag = torch.tensor([1.0 if bool(torch.isfinite(loss).all()) else 0.0], device=loss.device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item() > 0)


def mean_across(value: float, device: str = "cpu") -> float:
    """The mean of ``value`` over the ranks (a collective: every rank must call it); the value
    itself without a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return float(total.item()) / torch.distributed.get_world_size()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (the model itself when not wrapped)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model
