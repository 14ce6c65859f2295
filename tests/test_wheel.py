"""A built wheel works on its own: installed into a fresh virtualenv (``--no-deps``, on top of the
dependencies already installed here), it lists the built-in policies and heals a tiny run.

The package is built from a copy of the sources, so nothing is written into the checkout, and
run from a folder outside it, so the checkout's ``autofix`` cannot be imported by accident."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.ray

TINY = {"name": "wheel-tiny", "training": {
    "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3, "hidden": [16]}},
    "data": {"factory": "blobs", "args": {"n_samples": 300}}, "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 3}, "budget": {"max_attempts": 2, "wall_clock_s": 240}, "ledger": False}


def _sh(*argv: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode in (0, 1), f"{argv}: rc {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv holding only the wheel; the installed dependencies through a .pth."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "autofix", src / "autofix", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    _sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
        str(src), cwd=tmp)
    wheel = next((tmp / "dist").glob("autofix-*.whl"))
    env = tmp / "venv"
    _sh(sys.executable, "-m", "venv", "--without-pip", str(env), cwd=tmp)
    python = env / "bin" / "python"
    purelib = Path(_sh(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=tmp).stdout.strip())
    # The dependencies this checkout installed (torch, ray, ...): a path entry, not a site dir,
    # so the checkout's editable-install hook in it is never run.
    (purelib / "_autofix_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _sh(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel), cwd=tmp)
    return env


def test_the_wheel_ships_the_builtin_policies(venv, tmp_path):
    where = _sh(str(venv / "bin" / "python"), "-c", "import autofix.rules.policy as p; print(p.SHIPPED_POLICIES)",
                cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's own copy, not the checkout's
    listed = _sh(str(venv / "bin" / "autofix"), "policies", "list", cwd=tmp_path).stdout
    shipped = sorted(p.stem for p in (ROOT / "autofix" / "policies").glob("*.yaml"))
    assert len(shipped) >= 4
    for name in ("nonfinite-lower-lr", "dying-relu", "unnormalized-input", "overfitting"):
        assert name in listed
    tested = _sh(str(venv / "bin" / "autofix"), "policies", "test", "builtin", cwd=tmp_path)
    assert tested.returncode == 0 and "policy tests passed" in tested.stdout


def test_the_wheel_is_typed_and_licensed(venv, tmp_path):
    """PEP 561: the wheel carries autofix/py.typed; PEP 639: its licence and LICENSE file."""
    code = ("import importlib.metadata as m, importlib.resources as r; d = m.distribution('autofix'); "
            "print(r.files('autofix').joinpath('py.typed').is_file(), d.metadata['License-Expression'], "
            "any(f.name == 'LICENSE' for f in d.files))")
    out = _sh(str(venv / "bin" / "python"), "-c", code, cwd=tmp_path).stdout.split()
    assert out == ["True", "Apache-2.0", "True"]


def test_the_wheel_runs_a_tiny_spec(venv, tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = _sh(str(venv / "bin" / "autofix"), "run", "tiny.yaml", "-o", "out", "-q", cwd=tmp_path)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["attempts"][0]["outcome"] != "error", report["attempts"][0]
    assert report["status"] in ("healthy", "fixed", "unfixed") and done.stdout.startswith("autofix: ")
    started = json.loads((tmp_path / "out" / "journal.jsonl").read_text().splitlines()[0])
    assert all(p.startswith(str(venv)) for p in started["policies"]), started["policies"]
