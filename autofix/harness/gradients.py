"""Gradient norm and clipping of one training step (the managed loop, :mod:`autofix.harness.loop`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["clip_gradients", "grad_norm"]


def grad_norm(model: nn.Module) -> torch.Tensor:
    """The total 2-norm of the model's gradients (0 when none), before any clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: one fused foreach kernel
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def clip_gradients(model: nn.Module, clip: dict[str, Any] | None, norm: torch.Tensor) -> None:
    """Clip as ``clip`` (the config's ``grad_clip``: ``kind`` norm or value, ``max``) says;
    ``norm``: the step's total norm, already measured (:func:`grad_norm`)."""
    if clip is None:
        return
    params = [p for p in model.parameters() if p.grad is not None]
    if clip["kind"] == "norm" and hasattr(torch.nn.utils, "clip_grads_with_norm_"):
        torch.nn.utils.clip_grads_with_norm_(params, clip["max"], norm)  # reuse the norm
    elif clip["kind"] == "norm":
        torch.nn.utils.clip_grad_norm_(params, clip["max"])  # torch < 2.6
    elif clip["kind"] == "value":
        torch.nn.utils.clip_grad_value_(params, clip["max"])
    else:
        raise ValueError(f"grad_clip kind {clip['kind']!r} is not 'norm' or 'value'")
