"""Turn the plain-dict training config into torch objects.

The config is JSON-able on purpose (Ray ships it between processes and autofix patches it), so
everything here maps names and ``"module:callable"`` references to real objects.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from autofix.harness.anatomy import trace
from autofix.harness.data import DATASETS
from autofix.harness.initialize import reinitialize
from autofix.harness.losses import CLASS_ID_LOSSES, EXPECTS, CategoricalCrossentropy
from autofix.harness.schedules import SCHEDULERS, build_scheduler
from autofix.harness.surgery import apply_architecture, factory_kwargs, requested
from autofix.probes import DEFAULT_EVERY_STEPS

__all__ = [
    "LOSSES", "OPTIMIZERS", "SCHEDULERS", "LossFn", "build_data", "build_loss", "build_model", "build_optimizer",
    "build_scheduler", "normalize_config", "optimizer_class", "optimizer_kwargs", "resolve",
]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}
LOSSES: dict[str, type[nn.Module]] = {
    "bce_with_logits": nn.BCEWithLogitsLoss,
    "categorical_crossentropy": CategoricalCrossentropy,
    "cross_entropy": nn.CrossEntropyLoss,
    "mse": nn.MSELoss,
    "nll": nn.NLLLoss,
}

_DEFAULTS: dict[str, Any] = {
    "loss": {"name": "cross_entropy", "args": {}},
    "scheduler": None,
    "init": None,
    "batch_size": 64,
    "epochs": 15,
    "seed": 0,
    "grad_clip": None,
    "checkpoint_every": 1,
    "warm_start": None,
    "probes": {"enabled": True, "every_steps": DEFAULT_EVERY_STEPS},
}


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``config`` with every optional key filled with its default."""
    cfg = copy.deepcopy(config)
    for key, value in _DEFAULTS.items():
        if cfg.get(key) is None:
            cfg[key] = copy.deepcopy(value)
    cfg["model"].setdefault("args", {})
    cfg["data"].setdefault("args", {})
    cfg["data"].setdefault("val_fraction", 0.2)
    cfg["loss"].setdefault("args", {})
    cfg["optimizer"].setdefault("kwargs", {})
    for key, value in _DEFAULTS["probes"].items():
        cfg["probes"].setdefault(key, value)
    if cfg["scheduler"] is not None:
        cfg["scheduler"].setdefault("kwargs", {})
    # Neutral architecture knobs, so a checkpoint's record of the structure compares equal
    # whether the config came from the schema (all keys) or was written by hand.
    arch = cfg.get("architecture") or {}
    cfg["architecture"] = {"activation": arch.get("activation"),
                           "activation_scope": arch.get("activation_scope") or "hidden",
                           "output_activation": arch.get("output_activation"),
                           "batch_norm": bool(arch.get("batch_norm", False)),
                           "dropout": arch.get("dropout")}
    return cfg


def resolve(ref: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted) and return the attribute.

    Raises:
        ValueError: naming ``ref`` when it is malformed, the module cannot be imported or the
            attribute does not exist, so a typo in a config reads as a config problem.
    """
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"reference {ref!r} is not of the form 'module:callable'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"reference {ref!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"reference {ref!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return obj


def build_model(spec: dict[str, Any], architecture: dict[str, Any] | None = None,
                init: dict[str, Any] | None = None, sample: Any = None) -> nn.Module:
    """Call the model factory with ``**args``, then apply the architecture and init knobs.

    Architecture knobs the factory takes as keyword arguments (``activation=``,
    ``batch_norm=``, ...) are passed to it, overriding ``args``; the others are done by
    surgery on the built model (:mod:`autofix.harness.surgery`). ``init`` re-initialises the
    matching layers last, outside the output head (:mod:`autofix.harness.initialize`).
    ``sample``: an input batch the surgery traces the forward path with (the harness passes the
    first training batch); without one the path comes from ``torch.fx``.
    """
    factory = resolve(spec["factory"])
    knobs = requested(architecture)
    passed = factory_kwargs(factory, knobs)
    model = factory(**{**spec.get("args", {}), **passed})
    model = apply_architecture(model, {k: v for k, v in knobs.items() if k not in passed}, sample)
    if init:
        head = set() if init.get("head") else trace(model, sample).head_ids()
        reinitialize(model, init, head)
    return model


def build_data(spec: dict[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    """Return ``(train, val)``: builtins get ``seed`` and ``val_fraction``, user refs ``**args``."""
    name, args = spec["factory"], spec.get("args", {})
    if name in DATASETS:
        # A val_fraction inside args (the builtins accept it) wins over the data-level key.
        kwargs = {"val_fraction": spec.get("val_fraction", 0.2), **args}
        return DATASETS[name](seed=seed, **kwargs)
    if ":" not in name:
        raise ValueError(
            f"data factory {name!r} is neither a builtin ({', '.join(sorted(DATASETS))}) "
            "nor a 'module:callable' reference"
        )
    train, val = resolve(name)(**args)
    return train, val


class LossFn:
    """A loss plus the target conversion that lets class-id labels feed every loss kind.

    * cross_entropy / nll / categorical_crossentropy: targets as int64 class ids (nll expects
      log-probabilities, categorical_crossentropy probabilities; feeding them raw logits is a
      classic bug, left as is so autofix can see it).
    * mse: class ids become one-hot rows when the model has several outputs, else floats.
    * bce_with_logits: class ids become floats shaped like a single-output model's logits
      (one-hot for several outputs, i.e. multi-label style).
    * a ``"module:callable"``: the factory is called with ``args`` and gets the targets as they
      come; what it expects of the outputs is the spec's ``loss.expects``.

    ``expects``: ``logits`` | ``probabilities`` | ``log_probs``, or None when unknown (mse, or a
    custom loss that does not say).
    """

    def __init__(self, name: str, args: dict[str, Any], expects: str | None = None) -> None:
        # Class weights arrive as JSON lists; torch wants tensors.
        kwargs = {
            k: torch.tensor(v, dtype=torch.float32) if isinstance(v, list) else v
            for k, v in args.items()
        }
        if ":" in name:
            self.name = name
            self.module = resolve(name)(**kwargs)
            self.expects = expects
            return
        key = name.lower()
        if key not in LOSSES:
            raise ValueError(f"loss {name!r} is not one of {', '.join(sorted(LOSSES))} or a 'module:callable'")
        self.name = key
        self.module = LOSSES[key](**kwargs)
        self.expects = EXPECTS[key]

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of the outputs ``out`` against targets ``y`` after converting ``y`` for this loss."""
        return self.module(out, self.targets(out, y))

    def targets(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Convert ``y`` into what this loss expects for outputs shaped like ``out``."""
        if ":" in self.name:
            return y  # the user's loss takes the targets as the data gives them
        if self.name in CLASS_ID_LOSSES:
            # Float 2-D targets are class probabilities, which cross_entropy accepts as is.
            return y if y.is_floating_point() and y.dim() > 1 else y.long()
        if not y.is_floating_point() and out.dim() == 2 and out.shape[1] > 1:
            return F.one_hot(y.long(), out.shape[1]).to(out.dtype)
        return y.to(out.dtype).reshape(out.shape)


def build_loss(spec: dict[str, Any], extra: dict[str, Any] | None = None) -> LossFn:
    """Loss from ``{"name", "args"}`` plus ``extra`` keyword arguments (computed class weights,
    see :func:`autofix.harness.weighting.loss_weight_kwargs`)."""
    return LossFn(spec["name"], {**spec.get("args", {}), **(extra or {})}, spec.get("expects"))


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """Map a case-insensitive optimizer name to its ``torch.optim`` class."""
    try:
        return OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(
            f"optimizer {name!r} is not one of {', '.join(sorted(OPTIMIZERS))}"
        ) from None


def optimizer_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """Optimizer kwargs with JSON lists (e.g. Adam ``betas``) turned into tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("kwargs", {}).items()}


def build_optimizer(
    spec: dict[str, Any], params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """Optimizer from ``{"name", "lr", "kwargs"}``."""
    return optimizer_class(spec["name"])(params, lr=spec["lr"], **optimizer_kwargs(spec))  # type: ignore[call-arg]  # all take lr
