"""``"package.module:callable"`` references: checked when the spec is loaded, imported by path only.

Factories are imported only from the dotted paths a spec names (never evaluated as code),
and a missing module or attribute is reported as a spec problem before anything starts.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

__all__ = ["check_args", "is_ref", "resolve"]

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_ref(text: str) -> bool:
    return bool(_REF.match(text))


def resolve(ref: str) -> Callable[..., Any]:
    """Import ``module:attr`` (attr may be dotted); ValueError with a readable reason otherwise."""
    if not is_ref(ref):
        raise ValueError(f"expected 'package.module:callable', got {ref!r}")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{module_name}' ({exc}); "
                         "it is looked up in the spec's folder and 'python_path'") from None
    except Exception as exc:  # noqa: BLE001 - user code failing at import time is still the user's input
        raise ValueError(f"importing '{module_name}' raised {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = sorted(n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n, None)))
            raise ValueError(f"'{module_name}' has no attribute '{part}'; "
                             f"callables there: {', '.join(names[:12]) or 'none'}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"'{ref}' is not callable")
    return target


def check_args(fn: Callable[..., Any], args: dict[str, Any], *, fixed: tuple[str, ...] = ()) -> None:
    """Fail early when ``fn(**args)`` could not bind (unknown or missing arguments)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: let the call itself decide
    params = [p for name, p in sig.parameters.items() if name not in fixed]
    try:
        sig.replace(parameters=params).bind(**args)
    except TypeError as exc:
        accepted = ", ".join(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        raise ValueError(f"{exc}; it accepts: {accepted or 'no arguments'}") from None
