"""The package layout reads as the pipeline, its layers import only downstream, and the module
paths of earlier releases still import (a run pickled by an earlier autofix resumes)."""

from __future__ import annotations

import ast
import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import autofix
from autofix._moved import MOVED

PACKAGE = Path(autofix.__file__).parent
# Which autofix packages each layer may import (besides itself, autofix.errors and autofix._moved):
# probes -> metrics -> symptoms -> rules (policies) -> actions (patches) -> tune (relaunch) ->
# reports. The spec and the judge are the vocabulary every layer reads.
ALLOWED = {
    # validating a spec checks its knobs and where paths, and (lazily, torch) a builtin dataset's args
    "spec": {"actions", "symptoms", "rules", "judge", "harness"},
    "judge": {"spec"},
    "symptoms": {"spec", "judge", "rules"},  # rules.isolation: the ladder's evidence names (pure data)
    "actions": {"spec"},
    "rules": {"spec", "judge", "symptoms", "actions", "reports"},  # reports.journal: the engine writes it
    "probes": {"spec", "judge"},
    "harness": {"spec", "judge", "probes", "rules", "symptoms"},  # rung budgets, the spike rule: pure
    "tune": {"spec", "judge", "symptoms", "actions", "rules", "harness", "probes", "reports"},
    "reports": {"spec", "judge", "symptoms", "actions", "rules"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autofix"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("autofix"))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_it_may(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if len(parts) < 2 or parts[1] in (layer, "errors", "_moved") or not (PACKAGE / parts[1]).is_dir():
                continue
            if parts[1] not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert bad == []


def test_the_top_level_holds_entry_points_only():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "_moved.py", "cli.py", "docgen.py", "errors.py"]


@pytest.mark.parametrize("layer", ["spec", "judge", "symptoms", "actions", "rules", "reports"])
def test_pure_layers_import_neither_torch_nor_ray(layer):
    modules = [f"autofix.{layer}.{p.stem}" for p in (PACKAGE / layer).glob("*.py") if p.stem != "__init__"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))\nprint(','.join(bad))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_imports_the_module_that_holds_the_code(old):
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old], "the real module keeps its own spec"


def test_an_object_pickled_under_an_old_path_loads():
    from autofix.rules.alerts import PolicyState

    # protocol 0 writes module paths as text lines: one can be swapped for the old one
    payload = pickle.dumps(PolicyState(), protocol=0).replace(b"autofix.rules.alerts", b"autofix.alerts")
    assert b"autofix.alerts" in payload
    assert isinstance(pickle.loads(payload), PolicyState)
    spec_payload = pickle.dumps(autofix.Spec, protocol=0).replace(b"autofix.spec.schema", b"autofix.spec")
    assert pickle.loads(spec_payload) is autofix.Spec
