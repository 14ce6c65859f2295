"""Module paths from before the sub-package layout, still importable.

Tune pickles the run's searcher (``autofix.controller.Controller`` then, with its engine) into
the run directory; a run interrupted under an earlier autofix must still resume. Each old path
imports the module that now holds the code (the same module object, not a copy).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__all__ = ["MOVED", "install"]

_PACKAGES = {
    "spec": ["catalogue", "refs", "sources", "training"], "judge": ["judging", "verdict"], "harness": ["scoring"],
    "rules": ["alerts", "decisions", "ending", "engine", "isolation", "ladder", "ledger", "lineage", "policy",
              "policypaths", "policytest", "settle"],
    "tune": ["controller", "interrupt", "preflight", "raysession", "resume", "rundir", "runner", "trial"],
    "reports": ["diagnose", "explain", "journal", "progress", "reporting"],
}
MOVED = {f"autofix.{old}": f"autofix.{pkg}.{old}" for pkg, olds in _PACKAGES.items() for old in olds}
MOVED.update({"autofix.metrics": "autofix.judge.history", "autofix.htmlreport": "autofix.reports.html"})
# autofix.spec (the old module) is now a package: autofix/spec/__init__.py lends schema's names.


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._own: dict[str, importlib.machinery.ModuleSpec | None] = {}  # real name -> its own spec

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._own[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import machinery gave the real module the alias's spec: give it its own back.
        module.__spec__ = self._own.pop(module.__name__, module.__spec__)


def install() -> None:
    """Add the alias finder once (at ``import autofix``)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
