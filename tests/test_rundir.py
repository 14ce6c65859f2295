"""`--output` and `--overwrite` never delete a user's files: only marked, unlocked autofix run
directories are cleared; everything else is one line and exit 2, with nothing touched.

Real files and a real second process holding the lock; no Ray starts (all of it is checked
before Ray would)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from autofix.cli import main
from autofix.tune.rundir import LOCK, MARKER, claim

SPEC = {"name": "tiny", "training": {
    "model": {"factory": "autofix.harness.models:mlp", "args": {"in_features": 2, "num_classes": 3, "hidden": [8]}},
    "data": {"factory": "blobs", "args": {"n_samples": 60}}, "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 1}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's folder: the spec, their own module and an unrelated file; the working directory."""
    home = tmp_path / "home"
    folder = home / "work" / "project"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    (folder / "mymodule.py").write_text("X = 1\n")
    (folder / "notes.txt").write_text("my notes\n")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(home))
    return folder


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(capsys, argv: list[str], expected: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expected in err[0], err


@pytest.mark.parametrize("output, why", [
    (".", "is the current directory"),
    ("..", "is an ancestor of the current directory"),
    ("../..", "is the home folder"),
    ("{home}", "is the home folder"),
])
def test_overwrite_refuses_the_working_directory_its_ancestors_and_home(project, capsys, output, why):
    before = _snapshot(project.parent.parent.parent)
    _refused(capsys, ["run", "spec.yaml", "-o", output.format(home=os.environ["HOME"]), "--overwrite"], why)
    assert _snapshot(project.parent.parent.parent) == before  # no marker, no lock, nothing deleted


def test_overwrite_refuses_the_spec_folder_and_its_ancestors_from_elsewhere(project, tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = _snapshot(project)
    _refused(capsys, ["run", str(project / "spec.yaml"), "-o", str(project), "--overwrite"],
             "is the folder of the spec")
    _refused(capsys, ["run", str(project / "spec.yaml"), "-o", str(project.parent), "--overwrite"],
             "is an ancestor of the spec's folder")
    assert _snapshot(project) == before


def test_overwrite_refuses_a_regular_file_and_an_unmarked_folder(project, capsys):
    (project / "results").mkdir()
    (project / "results" / "model.pt").write_bytes(b"weights")
    before = _snapshot(project)
    _refused(capsys, ["run", "spec.yaml", "-o", "notes.txt", "--overwrite"], "is a regular file")
    _refused(capsys, ["run", "spec.yaml", "-o", "results", "--overwrite"],
             f"not an autofix run directory (no {MARKER})")
    _refused(capsys, ["run", "spec.yaml", "-o", "results"], "exists and is not empty")
    assert _snapshot(project) == before


@pytest.mark.parametrize("output, expected", [
    ("", "expected a directory path, got an empty string"),
    ("/proc/x", "cannot create the directory"),
    ("notes.txt/run", "which is a file"),
])
def test_an_invalid_output_is_one_line_not_a_traceback(project, capsys, output, expected):
    before = _snapshot(project)
    _refused(capsys, ["run", "spec.yaml", "-o", output], expected)
    assert _snapshot(project) == before


def test_overwrite_clears_a_marked_run_directory_and_nothing_else(project, tmp_path):
    run = project / "runs" / "old"
    claim(run, project, overwrite=False).release()
    (run / "journal.jsonl").write_text("{}\n")
    (run / "tune").mkdir()
    outside = tmp_path / "shared-storage"
    outside.mkdir()
    (outside / "keep.txt").write_text("on shared storage")
    (run / "link").symlink_to(outside, target_is_directory=True)
    claimed = claim(run, project, overwrite=True)
    try:
        assert sorted(p.name for p in run.iterdir()) == sorted([LOCK, MARKER])
        assert (outside / "keep.txt").read_text() == "on shared storage"  # a link is unlinked, not followed
        assert (project / "notes.txt").is_file()
    finally:
        claimed.release()


HOLDER = textwrap.dedent("""
    import sys, time
    from autofix.tune.rundir import claim
    run = claim(sys.argv[1], None, overwrite=False)
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_directory_locked_by_a_live_process_is_neither_overwritten_nor_resumed(project, capsys):
    run = project / "runs" / "live"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (run / "journal.jsonl").write_text("{}\n")
        before = _snapshot(run)
        _refused(capsys, ["run", "spec.yaml", "-o", str(run), "--overwrite"],
                 f"a live autofix process (pid {holder.pid})")
        (run / "spec.json").write_text("{}")
        (run / "tune").mkdir()
        (run / "tune" / "tuner.pkl").write_bytes(b"")
        _refused(capsys, ["resume", str(run)], f"a live autofix process (pid {holder.pid})")
        assert (run / "journal.jsonl").read_text() == before["journal.jsonl"].decode()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the lock with the process
        try:
            claim(run, project, overwrite=True).release()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert not (run / "journal.jsonl").exists()
