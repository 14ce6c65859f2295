"""Config patches as the benchmark counts them: dotted overrides and changed leaf keys."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["apply_overrides", "changed_keys", "patch_size"]


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with each ``a.b.c: value`` set (intermediate dicts created)."""
    out = copy.deepcopy(config)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = copy.deepcopy(value)
    return out


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_leaves(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


# Not the user's intent: bookkeeping keys the methods add to run a trial.
_IGNORED_KEYS = ("warm_start", "__autofix__", "min_epoch_s", "seed", "epochs", "checkpoint_every", "probes")


def _section_defaults() -> dict[str, dict[str, Any]]:
    """Leaf defaults of the optional sections a patch may create (``init: {scheme: kaiming}``
    also writes ``init.types``: one intended key, not two)."""
    from autofix.spec import training as t

    sections = {"init": t.InitSpec, "grad_clip": t.GradClipSpec, "scheduler": t.SchedulerSpec,
                "data.augment": t.AugmentSpec, "architecture": t.ArchitectureSpec}
    out = {}
    for path, cls in sections.items():
        fields = {k: f.get_default(call_default_factory=True) for k, f in cls.model_fields.items()
                  if not f.is_required()}
        out[path] = _leaves(fields, path)
    return out


def changed_keys(user_config: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Dotted leaf keys whose value differs between the user's config and ``config`` (sorted).

    A None/absent value and an empty one are the same; in a section one side lacks (``init``,
    ``grad_clip``, ``scheduler``, ``data.augment``), leaves left at the schema default are not
    counted but the section counts at least once. Bookkeeping keys (seed, epochs, padding,
    warm-start pointers, probes) are not counted.
    """
    def clean(cfg: dict[str, Any]) -> dict[str, Any]:
        leaves = _leaves({k: v for k, v in cfg.items() if k not in _IGNORED_KEYS})
        return {k: v for k, v in leaves.items() if v not in (None, {}, [])}

    old, new = clean(user_config), clean(config)
    changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    for path, defaults in _section_defaults().items():
        inside = {k for k in changed if k.startswith(path + ".")}
        one_sided = all((k in old) != (k in new) for k in inside)
        if not inside or not one_sided:
            continue
        kept = {k for k in inside if k not in defaults or (old.get(k, new.get(k)) != defaults[k])}
        changed -= inside - kept
        if not kept:  # named by the section's first field (init.scheme), not the alphabet
            changed.add(next((k for k in defaults if k in inside), sorted(inside)[0]))
    return sorted(changed)


def patch_size(user_config: dict[str, Any], config: dict[str, Any]) -> int:
    """Number of leaf config keys changed from the user's config (see :func:`changed_keys`)."""
    return len(changed_keys(user_config, config))
