"""Specs and policies are data: no YAML tag runs code, embedded Ray listens on loopback only."""

from __future__ import annotations

import os
import sys
import types

import pytest

from autofix.cli import main

PAYLOADS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("kind", ["spec", "policy"])
def test_python_tags_are_rejected_and_never_run(tmp_path, capsys, payload, kind):
    marker = tmp_path / "pwned"
    value = payload.format(marker=marker)
    path = tmp_path / f"{kind}.yaml"
    if kind == "spec":
        path.write_text(f"version: 1\nname: x\ntrainable: {value}\n")
        code = main(["run", str(path), "--output", str(tmp_path / "out")])
    else:
        path.write_text(f"version: 1\npolicies:\n  - name: {value}\n")
        code = main(["policies", "check", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_embedded_ray_binds_to_loopback_without_a_dashboard(monkeypatch):
    from autofix.spec.schema import load_spec
    from autofix.tune.runner import ray_session

    calls: list[dict] = []
    fake = types.SimpleNamespace(is_initialized=lambda: False, shutdown=lambda: None,
                                 init=lambda **kw: calls.append({**kw, "env": dict(os.environ)}))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    spec = load_spec({"name": "x", "trainable": "os:getcwd"})
    with ray_session(spec, None, verbose=False):
        pass
    # Ray 2.60 keeps 127.0.0.1 only in its single-node mode: set for every process it starts, then
    # restored (what listens where is measured in tests/test_interrupts.py).
    assert calls[0]["env"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
    assert calls and calls[0]["_node_ip_address"] == "127.0.0.1"
    assert calls[0]["include_dashboard"] is False
    assert "address" not in calls[0]
