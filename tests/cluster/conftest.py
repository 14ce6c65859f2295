"""Tests that need a Ray of their own (``make test-cluster``): never the shared ``ray_session``.

Each test starts its cluster in a subprocess or a fixture with explicit addresses and a private
temp dir, and tears it down itself (docs/ray-tune.md: several Ray instances on one host
make ``address="auto"`` fail).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def ray_temp_dir():
    """A short private Ray temp dir (unix socket paths must stay under ~107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="afr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
