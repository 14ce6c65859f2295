"""The run directory: autofix's marker, an exclusive lock, and what ``--overwrite`` may delete.

A run directory carries :data:`MARKER` (written when autofix creates it) and, while a driver
works in it, an exclusive ``flock`` on :data:`LOCK` held by that driver process (released by
the kernel when the process ends, however it ends). ``--overwrite`` only ever clears a folder
that carries the marker and whose lock is free, and never the working directory, an ancestor of
it or of the spec, the spec's own folder or the home folder: one line on refusal (exit 2),
nothing touched. Only the folder's entries are removed, never the folder itself (its lock
lives in it), and symbolic links are unlinked, never followed (``ray.storage_path`` makes
``tune`` one).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from autofix.errors import InputError, Problem

try:  # POSIX; elsewhere runs are not locked (documented in docs/cli.md)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # no fcntl off POSIX: runs are not locked

__all__ = ["LOCK", "MARKER", "RunDir", "claim", "lock_run"]

MARKER = ".autofix-run"
LOCK = ".lock"


@dataclass
class RunDir:
    """A claimed run directory: its resolved path, the open, locked lock file, and the folders
    this claim created (the run directory itself and any missing parents, outermost first)."""

    path: Path
    _fd: int | None = None
    created: list[Path] = field(default_factory=list)

    def release(self) -> None:
        """Drop the lock (the process ending drops it too)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Undo the claim of a run that never started (Ray refused the connection, the data could
        not be built on the cluster): remove what this run wrote, and the folders this claim
        created; a folder that existed before is emptied of this run's files, never removed.

        Only called before any trial ran: everything in the folder is then this run's (a claimed
        folder was empty, or an autofix run directory cleared by ``--overwrite``).
        """
        self.release()
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for folder in reversed(self.created[:-1]):  # parents, innermost first, only if empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            return
        _clear(self.path, keep=())


def _refuse(path: str, message: str) -> InputError:
    return InputError([Problem(path, None, "--output", message)])


def _protected(out: Path, spec_dir: Path | None) -> str | None:
    """Why ``out`` may never be cleared, or None."""
    cwd = Path.cwd().resolve()
    if out == cwd:
        return "is the current directory"
    if out == Path.home().resolve():
        return "is the home folder"
    if out in cwd.parents:
        return "is an ancestor of the current directory"
    if spec_dir is not None:
        if out == spec_dir:
            return "is the folder of the spec"
        if out in spec_dir.parents:
            return "is an ancestor of the spec's folder"
    return None


def _resolve(raw: str | os.PathLike) -> Path:
    text = os.fspath(raw)
    if not str(text).strip():
        raise _refuse(repr(text), "expected a directory path, got an empty string")
    if "\0" in str(text):
        raise _refuse(repr(text), "a path cannot contain a NUL character")
    out = Path(text).expanduser().resolve()
    for parent in [out, *out.parents]:  # a path under a regular file can never become a folder
        if parent.exists() and not parent.is_dir():
            what = "is a regular file" if parent == out else f"is under {parent}, which is a file"
            raise _refuse(str(raw), f"{what}; expected a directory autofix can create or clear")
    return out


def _lock(out: Path, shown: str, created: list[Path] | None = None) -> RunDir:
    """Take the exclusive lock of ``out`` or refuse, naming the process that holds it."""
    if fcntl is None:  # pragma: no cover - Windows
        return RunDir(out)
    lock = out / LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _refuse(shown, f"cannot write {lock}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise _refuse(shown, f"a live autofix process ({holder}) is running in it; "
                             "wait for it to end or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    return RunDir(out, fd, created or [])


def lock_run(directory: str | os.PathLike) -> RunDir:
    """Lock an existing run directory (``autofix resume``); refuse if a live process holds it."""
    out = Path(directory).expanduser().resolve()
    return _lock(out, str(directory))


def _clear(out: Path, keep: tuple[str, ...] = (LOCK,)) -> None:
    """Remove every entry of ``out`` but ``keep`` (its lock); links are unlinked, never followed."""
    for entry in out.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def claim(raw: str | os.PathLike, spec_dir: str | os.PathLike | None, overwrite: bool) -> RunDir:
    """Validate ``--output``, lock it, clear it if asked and allowed, and mark it as autofix's.

    Raises :class:`InputError` (one problem, nothing touched) for an empty or impossible path,
    a regular file, a non-empty folder without ``overwrite``, and, with ``overwrite``, a
    protected folder, a folder without the marker or one a live process holds.
    """
    shown = str(raw)
    out = _resolve(raw)
    spec = Path(spec_dir).resolve() if spec_dir is not None else None
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise _refuse(shown, "exists and is not empty; choose another directory or pass --overwrite")
        why = _protected(out, spec)
        if why is not None:
            raise _refuse(shown, f"{why}: --overwrite deletes only autofix run directories")
        if not (out / MARKER).is_file():
            raise _refuse(shown, f"is not an autofix run directory (no {MARKER}); --overwrite deletes "
                                 "only those: choose another directory")
        run = _lock(out, shown)
        _clear(out)
    else:
        created = [p for p in reversed([out, *out.parents]) if not p.exists()]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _refuse(shown, f"cannot create the directory: {exc.strerror or exc}") from None
        run = _lock(out, shown, created)
    (out / MARKER).write_text(json.dumps({"autofix_run": 1, "created": round(time.time(), 3)}) + "\n")
    return run
