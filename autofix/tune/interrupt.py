"""Ctrl-C is not a verdict: the first SIGINT or SIGTERM stops the run so that it can be resumed;
a second one quits at once (and the run can still be resumed).

The first signal asks Ray Tune to end its experiment the way Tune's own Ctrl-C handler does
(``ray/tune/tune.py``, ``_setup_signal_catching``): the loop stops, the experiment state (with
the engine's lineage, saved by the searcher) is written one last time, and the trials are
stopped; a trial resumes from its last reported checkpoint. Tune's handler is reached through
SIGUSR1, which Tune registers for that purpose; its SIGINT handler is switched off
(``TUNE_DISABLE_SIGINT_HANDLER``) so that SIGINT and SIGTERM take the same path, and so that a
second signal reaches this module instead of Python's default ``KeyboardInterrupt``. A signal
that arrives before Tune has installed its handler is kept *pending*; the controller calls
:func:`poll` on every Tune event, which passes it on then.

The second signal journals that it quit, SIGKILLs the processes this one started (the
embedded Ray: GCS, raylet, its agents and workers; Ray's own fate sharing would leave the
dashboard and runtime-env agents running, measured) and ends the process with exit status 130
without waiting for anything. The run directory's lock is dropped by the kernel, and Tune's
experiment state saved at most a second earlier (``TUNE_GLOBAL_CHECKPOINT_S``) is what
``autofix resume`` continues from, as after a killed driver.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "Interrupts", "descendants", "poll"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for a run ended by Ctrl-C
_SIGNALS = ("SIGINT", "SIGTERM")
_ACTIVE: Interrupts | None = None  # the interrupts of the run in progress (one per process)


def poll() -> None:
    """Pass a pending stop to Tune (called from Tune's own loop, once its handler exists)."""
    if _ACTIVE is not None and _ACTIVE.pending:
        _ACTIVE._stop_tune()


def descendants(pid: int) -> list[int]:
    """Every process started by ``pid``, children first (Linux ``/proc``; elsewhere none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])  # the name may hold spaces
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


class Interrupts:
    """Installs the handlers for the duration of a run (main thread only; elsewhere Python's
    defaults stay). ``signal`` is the name of the first signal received, or None.

    ``on_signal(name, force)`` is called for each: journal it and tell the user. It must not
    raise; with ``force`` the process exits right after it returns.
    """

    def __init__(self, on_signal: Callable[[str, bool], None]) -> None:
        self.on_signal = on_signal
        self.signal: str | None = None
        self.pending = False
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def __enter__(self) -> Interrupts:
        global _ACTIVE
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in _SIGNALS:
            number = getattr(signal, name)
            self._saved[number] = signal.signal(number, self._handle)
        if hasattr(signal, "SIGUSR1"):  # Tune installs its own during fit: none before it
            self._saved[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        _ACTIVE = self
        return self

    def rearm(self) -> None:
        """Take SIGTERM (and SIGINT) back after ``ray.init``, which installs its own SIGTERM
        handlers (a Python ``sys.exit`` and, in the core worker, a native one that aborts)."""
        for name in _SIGNALS:
            number = getattr(signal, name)
            if number in self._saved:
                signal.signal(number, self._handle)

    def __exit__(self, *exc: Any) -> None:
        global _ACTIVE
        if not self._saved:
            return
        for number, handler in self._saved.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self._saved.clear()
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
        _ACTIVE = None

    def _handle(self, number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        if self.signal is not None:
            self.on_signal(name, True)
            sys.stdout.flush()
            sys.stderr.flush()
            for pid in descendants(os.getpid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:  # already gone
                    pass
            os._exit(EXIT_INTERRUPTED)
        self.signal = name
        self.pending = True
        self.on_signal(name, False)
        self._stop_tune()

    def _stop_tune(self) -> None:
        handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if callable(handler):  # Tune's: ends its loop, saves the experiment state, stops trials
            self.pending = False
            handler(signal.SIGUSR1, None)
