"""What the user declares, and the names every layer shares.

``schema`` (the spec: ``load_spec``, validated at the boundary with file and line), ``training``
(the managed-training part), ``catalogue`` (metrics and option lists, declared once), ``sources``
(YAML with line numbers), ``refs`` ("module:callable" references). Pure: no torch, no ray.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``autofix.spec`` was the module autofix.spec.schema is now: its names (a pickled Spec of an
    # earlier run) resolve here, loaded on first use so importing a sibling imports no schema.
    from autofix.spec import schema

    try:
        return getattr(schema, name)
    except AttributeError:
        raise AttributeError(f"module 'autofix.spec' has no attribute {name!r}") from None
