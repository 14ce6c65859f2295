"""Checks of the training loop itself, on every optimizer step, at no device cost.

Two bugs no hyperparameter can cure show in how gradients meet ``optimizer.step()``:

* **missing ``zero_grad``**: the first backward after a step accumulates into the gradient
  that step used. A tensor hook on one parameter the optimizer holds runs before each
  accumulation (PyTorch calls hooks registered on a leaf before it adds into ``.grad``); right
  after a step it checks whether ``.grad`` is still the very tensor the step read, unchanged
  (same object, same ``_version``: ``zero_grad(set_to_none=False)`` zeroes in place and bumps
  the version, the default ``set_to_none=True`` leaves ``None``). Gradient accumulation that
  steps and zeroes every k batches is never counted: only the first backward after a step is.
* **no gradient reaches the parameters** (a loss on detached outputs, parameters without
  gradients, an optimizer holding other tensors): ``optimizer.step()`` runs while none of the
  optimizer's parameters has a ``.grad``.

Counts only, per epoch: ``stale_grad_steps`` of ``stale_grad_checks`` (first backwards after a
step, the epoch's first excluded), ``gradless_steps`` of ``optimizer_steps``. No tensor is read, so
nothing syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["LoopCheck"]


class LoopCheck:
    """Counts stale-gradient accumulations and gradient-less steps of ``optimizer`` (see module).

    ``params`` are the model's trainable parameters; the watched one is the first of them the
    optimizer also holds (a parameter it does not hold keeps its gradient legitimately). Without
    an optimizer, or one without step hooks, nothing is counted.
    """

    def __init__(self, params: Sequence[torch.Tensor], optimizer: Any) -> None:
        self._handles: list[Any] = []
        self._armed: tuple[torch.Tensor, int] | None = None  # the .grad a step left, and its version
        self._watch: torch.Tensor | None = None
        self._reset()
        if optimizer is None or not hasattr(optimizer, "register_step_post_hook"):
            self._held: list[torch.Tensor] = []
            return
        self._held = [p for group in optimizer.param_groups for p in group["params"]]
        held = {id(p) for p in self._held}
        watch = self._watch = next((p for p in params if id(p) in held and p.requires_grad), None)
        self._handles = [optimizer.register_step_pre_hook(self._before_step),
                         optimizer.register_step_post_hook(self._after_step)]
        if watch is not None:
            self._handles.append(watch.register_hook(self._on_grad))

    def _reset(self) -> None:
        self.stale = self.checks = self.gradless = self.steps = 0

    def _before_step(self, *_: Any) -> None:
        self.steps += 1
        if not any(p.grad is not None for p in self._held):
            self.gradless += 1

    def _after_step(self, *_: Any) -> None:
        grad = self._watch.grad if self._watch is not None else None
        self._armed = (grad, grad._version) if grad is not None else None

    def _on_grad(self, _grad: torch.Tensor) -> None:
        armed, self._armed = self._armed, None
        if armed is None:
            return
        self.checks += 1
        assert self._watch is not None  # armed only while a parameter is watched
        now = self._watch.grad
        if now is armed[0] and now._version == armed[1]:
            self.stale += 1

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's counts (none before the first optimizer step), then reset. An epoch's first
        backward is not checked: a run restored from a checkpoint then counts as one that was not."""
        self._armed = None
        out: dict[str, float] = {}
        if self.steps:
            out.update(optimizer_steps=float(self.steps), gradless_steps=float(self.gradless))
        if self.checks:
            out.update(stale_grad_checks=float(self.checks), stale_grad_steps=float(self.stale))
        self._reset()
        return out

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
