"""One Ray instance for the whole test session (dashboard off, quiet), started on first use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

for key, value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray shared by every end-to-end test; autofix.run joins it instead of starting one."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _private_autofix_home(tmp_path, monkeypatch):
    """Tests never write the user's ~/.autofix ledger."""
    monkeypatch.setenv("AUTOFIX_HOME", str(tmp_path / "autofix-home"))


@pytest.fixture(autouse=True)
def _evidence_is_declared(monkeypatch):
    """Every finding a detector makes, in any test, holds only the evidence keys its class
    declares (``evidence_keys``): what ``autofix policies check`` lets a policy's
    ``where: {evidence.KEY: ...}`` read."""
    from autofix.symptoms.base import Detector, ProbeDetector

    def checked(make):
        def wrapper(self, *args, **evidence):
            finding = make(self, *args, **evidence)
            undeclared = set(finding.evidence) - set(type(self).evidence_keys)
            assert not undeclared, f"{type(self).__name__} made evidence {sorted(undeclared)} it does not declare"
            return finding
        return wrapper

    monkeypatch.setattr(Detector, "finding", checked(Detector.finding))
    monkeypatch.setattr(ProbeDetector, "found", checked(ProbeDetector.found))
