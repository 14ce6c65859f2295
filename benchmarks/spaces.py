"""Knob spaces the search baselines explore: the 7 knobs autofix's actions touch, and 17.

A space is a set of flat knobs (``lr``, ``optimizer``, ``scheduler``, ...) and
:meth:`KnobSpace.materialize` turns one assignment into a managed training config
(``autofix.spec.training.TrainingSpec``) on top of the case's base config. Flat knobs keep the Tune
param space and PBT's mutations simple (strings and numbers, no dicts), while the config
values they produce have the same shapes as autofix's actions write (``init``, ``grad_clip``,
``scheduler``), so patch sizes compare like with like.

* ``small`` (7): learning rate, optimiser, scheduler, init, class weights, gradient clipping,
  input normalisation: the knobs of autofix's shipped policies.
* ``large`` (17): adds SGD momentum, batch size, weight decay, warm-up, dropout, activation,
  batch norm, balanced sampler, label smoothing and, for image data, augmentation.

Knob values are absolute, not relative to the user's: ``init: default`` removes a re-init,
``scheduler: none`` removes the user's schedule. Momentum applies to SGD only (the other
optimisers take no such argument); a warm-up ramp combines with no scheduler (then constant)
or cosine (``warmup_cosine``) and is ignored with step/exponential/plateau.

Architecture knobs the model cannot take (a model without ``nn.Sequential`` activations to
swap) are left out of the space for that case, as autofix skips those patches.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SPACES", "Knob", "KnobSpace", "large_space", "materialize", "small_space"]

_OPTIMIZERS = ["adam", "adamw", "rmsprop", "sgd", "adagrad"]
_SCHEDULERS = ["none", "step", "cosine", "exponential", "reduce_on_plateau"]
_INITS = ["default", "kaiming", "xavier", "orthogonal"]


@dataclass(frozen=True)
class Knob:
    """One searchable knob: log-uniform / uniform floats in ``[low, high]`` or a choice."""

    name: str
    kind: str  # "log" | "uniform" | "choice"
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    def domain(self) -> Any:
        """The Ray Tune search domain."""
        from ray import tune

        if self.kind == "log":
            return tune.loguniform(self.low, self.high)
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        return tune.choice(list(self.values))

    def mutation(self) -> Any:
        """PBT's ``hyperparam_mutations`` entry: a domain for floats, the list for choices."""
        return self.domain() if self.kind != "choice" else list(self.values)

    def sample(self, rng: random.Random) -> Any:
        """A value drawn without Ray (tests, random restarts)."""
        if self.kind == "log":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.choice(self.values)

    def clip(self, value: Any) -> Any:
        """Back inside the space: PBT multiplies floats by 0.8/1.2 without bounds."""
        if self.kind == "choice":
            return value if value in self.values else self.values[0]
        return min(max(float(value), self.low), self.high)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class KnobSpace:
    """The knobs of one space for one base training config."""

    name: str
    base: dict[str, Any]
    knobs: tuple[Knob, ...]

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.knobs]

    def param_space(self) -> dict[str, Any]:
        """Tune ``param_space``: the constant base config and one domain per knob."""
        return {"base": self.base, "space": self.name, "knobs": {k.name: k.domain() for k in self.knobs}}

    def mutations(self) -> dict[str, Any]:
        """PBT ``hyperparam_mutations`` over the same knobs (nested under ``knobs``)."""
        return {"knobs": {k.name: k.mutation() for k in self.knobs}}

    def clip_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """PBT ``custom_explore_fn``: every knob back inside its range."""
        by_name = {k.name: k for k in self.knobs}
        config["knobs"] = {n: by_name[n].clip(v) if n in by_name else v for n, v in config["knobs"].items()}
        return config

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One knob assignment drawn without Ray."""
        return {k.name: k.sample(rng) for k in self.knobs}

    def materialize(self, knobs: dict[str, Any]) -> dict[str, Any]:
        """The training config for one assignment (a deep copy of the base, knobs applied)."""
        return materialize(self.base, knobs)


def materialize(base: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """Apply flat ``knobs`` to a training config; knobs absent from the dict stay as in ``base``."""
    cfg = copy.deepcopy(base)
    unknown = sorted(set(knobs) - set(_APPLY))
    if unknown:
        raise KeyError(f"unknown knob(s) {unknown}; known: {sorted(_APPLY)}")
    for name in _APPLY:  # fixed order: the optimiser is chosen before its momentum is set
        if name in knobs:
            _APPLY[name](cfg, knobs[name], knobs)
    return cfg


def _optimizer(cfg: dict, value: str, knobs: dict) -> None:
    old = cfg["optimizer"]
    kwargs = dict(old.get("kwargs") or {}) if old["name"] == value else {}
    # Weight decay is not tied to the optimiser (autofix's switch_optimizer keeps it too).
    if "weight_decay" in (old.get("kwargs") or {}):
        kwargs["weight_decay"] = old["kwargs"]["weight_decay"]
    cfg["optimizer"] = {**old, "name": value, "kwargs": kwargs}


def _scheduler(cfg: dict, value: str, knobs: dict) -> None:
    from autofix.actions.schedule import AddScheduler

    warmup = int(knobs.get("warmup_epochs", 0) or 0)
    if warmup and value in ("none", "cosine"):  # a ramp combines with constant or cosine only
        kind = "linear_warmup" if value == "none" else "warmup_cosine"
        t_max = max(1, int(cfg["epochs"]) - warmup) if kind == "warmup_cosine" else None
        cfg["scheduler"] = {"name": kind, "kwargs": AddScheduler(kind=kind, warmup_epochs=warmup, t_max=t_max).kwargs()}
    elif value == "none":
        cfg["scheduler"] = None
    else:
        t_max = int(cfg["epochs"]) if value == "cosine" else None
        cfg["scheduler"] = {"name": value, "kwargs": AddScheduler(kind=value, t_max=t_max).kwargs()}


def _init(cfg: dict, value: str, knobs: dict) -> None:
    cfg["init"] = None if value == "default" else {
        "scheme": value, "pattern": None, "types": ["Conv1d", "Conv2d", "Linear"]}


def _clip(cfg: dict, value: float, knobs: dict) -> None:
    cfg["grad_clip"] = {"kind": "norm", "max": float(value)} if value else None


def _momentum(cfg: dict, value: float, knobs: dict) -> None:
    if cfg["optimizer"]["name"] == "sgd":  # the other optimisers have no momentum kwarg
        cfg["optimizer"]["kwargs"] = {**(cfg["optimizer"].get("kwargs") or {}), "momentum": float(value)}


def _weight_decay(cfg: dict, value: float, knobs: dict) -> None:
    kwargs = {k: v for k, v in (cfg["optimizer"].get("kwargs") or {}).items() if k != "weight_decay"}
    cfg["optimizer"]["kwargs"] = {**kwargs, "weight_decay": float(value)} if value else kwargs


def _label_smoothing(cfg: dict, value: float, knobs: dict) -> None:
    if cfg["loss"]["name"] == "cross_entropy":
        args = {k: v for k, v in (cfg["loss"].get("args") or {}).items() if k != "label_smoothing"}
        cfg["loss"]["args"] = {**args, "label_smoothing": float(value)} if value else args


def _augment(cfg: dict, value: str, knobs: dict) -> None:
    # autofix's overfitting-images policy uses this light augmentation (no flips for digits).
    cfg["data"]["augment"] = {"flip": False, "rotation": 10.0, "crop_padding": 1} if value == "light" else None


def _setter(*path: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[dict, Any, dict], None]:
    def apply(cfg: dict, value: Any, knobs: dict) -> None:
        node = cfg
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = convert(value)
    return apply


# Order matters: the optimiser is chosen before its momentum/weight decay are set.
_APPLY: dict[str, Callable[[dict, Any, dict], None]] = {
    "lr": _setter("optimizer", "lr", convert=float),
    "optimizer": _optimizer,
    "momentum": _momentum,
    "weight_decay": _weight_decay,
    "scheduler": _scheduler,
    "warmup_epochs": lambda cfg, value, knobs: None,  # applied by _scheduler
    "init": _init,
    "class_weights": _setter("loss", "class_weights", convert=lambda v: None if v == "none" else v),
    "grad_clip": _clip,
    "normalize": _setter("data", "normalize", convert=bool),
    "batch_size": _setter("batch_size", convert=int),
    "dropout": _setter("architecture", "dropout", convert=lambda v: float(v) if v else None),
    "activation": _setter("architecture", "activation", convert=lambda v: None if v == "keep" else v),
    "batch_norm": _setter("architecture", "batch_norm", convert=bool),
    "sampler": _setter("data", "sampler"),
    "label_smoothing": _label_smoothing,
    "augment": _augment,
}


def _small_knobs() -> list[Knob]:
    return [
        Knob("lr", "log", 1e-5, 1e-1),
        Knob("optimizer", "choice", values=tuple(_OPTIMIZERS)),
        Knob("scheduler", "choice", values=tuple(_SCHEDULERS)),
        Knob("init", "choice", values=tuple(_INITS)),
        Knob("class_weights", "choice", values=("none", "balanced")),
        Knob("grad_clip", "choice", values=(0.0, 0.5, 1.0, 5.0)),
        Knob("normalize", "choice", values=(False, True)),
    ]


def small_space(base: dict[str, Any]) -> KnobSpace:
    """The 7 knobs autofix's shipped policies touch."""
    return KnobSpace("small", copy.deepcopy(base), tuple(_small_knobs()))


def large_space(base: dict[str, Any]) -> KnobSpace:
    """A realistic 15+-knob space: the small one plus the usual tuning knobs."""
    extra = [
        Knob("momentum", "uniform", 0.0, 0.99),
        Knob("weight_decay", "choice", values=(0.0, 1e-5, 1e-4, 1e-3, 1e-2)),
        Knob("warmup_epochs", "choice", values=(0, 1, 3)),
        Knob("batch_size", "choice", values=(16, 32, 64, 128, 256)),
        Knob("sampler", "choice", values=("uniform", "balanced")),
        Knob("label_smoothing", "choice", values=(0.0, 0.1)),
        Knob("dropout", "choice", values=(0.0, 0.1, 0.3, 0.5)),
        Knob("activation", "choice", values=("keep", "relu", "leaky_relu", "elu", "selu", "tanh")),
        Knob("batch_norm", "choice", values=(False, True)),
        Knob("augment", "choice", values=("none", "light")),
    ]
    knobs = [k for k in [*_small_knobs(), *extra] if _applicable(base, k)]
    return KnobSpace("large", copy.deepcopy(base), tuple(knobs))


def _is_image_data(base: dict[str, Any]) -> bool:
    """Whether training samples are (C, H, W) images: augmentation takes only those."""
    from autofix.harness.builders import build_data  # small zoo datasets: built in well under 1 s

    _zoo_on_path()
    train, _val = build_data(base["data"], int(base.get("seed", 0)))
    return train[0][0].dim() == 3


def _zoo_on_path() -> None:
    from common import REPO_DIR, ZOO_DIR  # the zoo's model and data factories

    for path in (str(ZOO_DIR), str(REPO_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)


def _applicable(base: dict[str, Any], knob: Knob) -> bool:
    """Whether every value of ``knob`` gives a config this case's model and data can take."""
    if knob.name == "augment":
        return _is_image_data(base)
    if knob.name == "label_smoothing":
        return base["loss"]["name"] == "cross_entropy"
    if knob.name not in ("activation", "batch_norm", "dropout"):
        return True
    from autofix.harness.builders import build_model  # imports torch: only for model knobs

    _zoo_on_path()

    for value in knob.values:
        cfg = materialize(base, {knob.name: value})
        try:
            build_model(cfg["model"], cfg.get("architecture"), cfg.get("init"))
        except (ValueError, TypeError, RuntimeError):
            return False
    return True


SPACES: dict[str, Callable[[dict[str, Any]], KnobSpace]] = {"large": large_space, "small": small_space}
