"""``autofix resume DIR``: continue a run whose driver died (killed, crashed, rebooted).

Ray Tune restores its experiment (finished trials stay finished, unfinished ones resume from
their last checkpoint) and, with it, the searcher's saved state, which carries the engine's whole
lineage; replayed reports are keyed by iteration and judged once, so no attempt is launched twice
and the final report holds the lineage from before and after the kill.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

from autofix.errors import InputError, Problem
from autofix.reports.journal import read_journal
from autofix.reports.reporting import Report
from autofix.rules.engine import Engine
from autofix.spec.schema import Spec, load_spec
from autofix.tune import controller
from autofix.tune.interrupt import Interrupts
from autofix.tune.raysession import DRIVER_LOG, ray_logs, ray_session
from autofix.tune.rundir import lock_run
from autofix.tune.runner import SPEC_COPY, assemble, conclude, failures, journal_signal, trainable_of

__all__ = ["resume"]


def _check(out: Path) -> None:
    where = str(out)
    if not (out / SPEC_COPY).is_file():
        raise InputError([Problem(where, None, "DIR", f"not an autofix run directory (no {SPEC_COPY})")])
    if not (out / "tune" / "tuner.pkl").is_file():
        raise InputError([Problem(where, None, "DIR",
                                  "the run never reached Ray Tune: nothing to resume; start it again")])
    status = _reported_status(out)
    if status is not None and status != "interrupted":
        raise InputError([Problem(where, None, "DIR", f"this run already finished ({status}, see report.json)")])


def _reported_status(out: Path) -> str | None:
    """The status in ``report.json`` (None: no report; an interrupted run may be resumed)."""
    try:
        return str(json.loads((out / "report.json").read_text()).get("status"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return "unreadable report"


def _saved_spec(out: Path) -> Spec:
    """The run's validated spec, its modules looked up from the spec's folder as recorded at the
    start (not the working directory): resume works from anywhere, and says so if they moved."""
    saved = json.loads((out / SPEC_COPY).read_text())
    base = saved["base_dir"]
    try:
        return load_spec(saved["spec"], base_dir=base, name=str(out / SPEC_COPY))
    except InputError as err:
        paths = ", ".join([base, *saved["spec"].get("python_path", [])])
        hint = (f"the run was started with its spec in {base} (python_path: {paths}); if the user's "
                "modules moved since, put them back there or start a new run")
        if not Path(base).is_dir():
            hint = f"the spec's folder {base} no longer exists; " + hint
        raise InputError([Problem(p.file, p.line, p.field, f"{p.message}; {hint}", p.context)
                          for p in err.problems]) from None


def _saved_engine_state(experiment: Path) -> dict[str, Any] | None:
    files = glob.glob(str(experiment / "searcher-state-*.pkl"))
    if not files:
        return None
    # Named by session start time; Tune rewrites all of them at the end, so mtimes tie.
    with open(max(files), "rb") as f:
        return pickle.load(f)["engine"]


def _budget_left_s(wall_clock_s: float | None, records: list[dict[str, Any]]) -> float | None:
    """What the run has left of ``wall_clock_s``: the time spent in every earlier driver session
    (its first to its last journal record) is subtracted; the time the driver was dead is not."""
    if wall_clock_s is None:
        return None
    spent, start, last = 0.0, None, None
    for record in records:
        if record["event"] in ("run_started", "run_resumed"):
            spent += (last - start) if start is not None and last is not None else 0.0
            start = record["ts"]
        last = record["ts"]
    spent += (last - start) if start is not None and last is not None else 0.0
    return max(0.0, wall_clock_s - spent)


def resume(directory: str | os.PathLike, *, address: str | None = None, verbose: bool = False,
           echo: Any = None, observer: Any = None) -> Report:
    """Continue the run in ``directory``; returns its report (also written there)."""
    out = Path(directory).resolve()
    _check(out)
    run_dir = lock_run(out)  # one driver per run: a live one keeps it
    try:
        spec = _saved_spec(out)
        engine, journal = assemble(spec, out, echo)
    except BaseException:
        run_dir.release()
        raise
    experiment = out / "tune"
    journal("run_resumed", output=str(out))
    started = time.monotonic()
    restored: list[Engine] = []

    left_s = _budget_left_s(spec.budget.wall_clock_s, read_journal(out / "journal.jsonl"))

    def reattach(live: Engine) -> None:
        # The engine Tune restored decides from here on: give it this driver's journal (with
        # the ledger and terminal sinks) and live view, so the resumed segment is seen and learnt,
        # and what is left of the wall-clock budget.
        live.journal, live.observer = journal, observer
        live.deadline = time.time() + left_s if left_s is not None else None
        restored.append(live)

    try:
        controller.ON_RESTORE = reattach
        with Interrupts(journal_signal(journal, out)) as stop, failures(out, verbose):
            with ray_session(spec, address, verbose, out / DRIVER_LOG), ray_logs(out, verbose):
                stop.rearm()
                if not stop.signal:
                    from ray import tune

                    tuner = tune.Tuner.restore(str(experiment), trainable=trainable_of(spec),
                                               resume_unfinished=True, resume_errored=False)
                    tuner.fit()
            if restored:
                engine = restored[-1]
            elif (state := _saved_engine_state(experiment)) is not None:
                engine.load_state_dict(state)
            return conclude(spec, engine, out, journal, time.monotonic() - started, interrupted=stop.signal)
    finally:
        controller.ON_RESTORE = None
        journal.close()
        run_dir.release()
