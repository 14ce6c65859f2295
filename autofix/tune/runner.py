"""``autofix.run``: validate everything, then drive one Ray Tune experiment with the engine.

Order matters for "nothing started on bad input": the spec, the policies and the output
directory are all checked before Ray is initialised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic

from autofix.errors import InputError, RunFailed
from autofix.judge.judging import Inputs
from autofix.reports.journal import Journal
from autofix.reports.reporting import Report, build_report
from autofix.rules import settle
from autofix.rules.ending import ended_because, interrupted_because
from autofix.rules.engine import Engine, Plan
from autofix.rules.ledger import Ledger
from autofix.rules.policy import load_policies
from autofix.spec.schema import Spec, load_spec
from autofix.spec.training import SpikeGuardSpec, TrainingSpec
from autofix.symptoms import build_detectors
from autofix.tune import preflight
from autofix.tune.interrupt import Interrupts
from autofix.tune.raysession import DRIVER_LOG, cluster_address, ray_logs, ray_session
from autofix.tune.rundir import RunDir, claim

__all__ = ["SPEC_COPY", "assemble", "conclude", "failures", "journal_signal", "notices", "prepare", "ray_session",
           "run", "trainable_of"]

SPEC_COPY = "spec.json"  # the validated spec, kept in the run directory for `autofix resume`

# Quiet by default (docs/ray-tune.md, "Quiet tests"); users can still override them.
for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
                     "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
                     # Experiment state (with the engine's lineage) saved at least every second, so
                     # a killed driver loses at most about a second of decisions; "auto" can wait
                     # ~10 s. Each save writes a few tens of KB.
                     "TUNE_GLOBAL_CHECKPOINT_S": "1"}.items():
    os.environ.setdefault(_key, _value)


def prepare(spec: Any, output: str | os.PathLike | None = None, overwrite: bool = False,
            echo: Callable[[dict], None] | None = None,
            address: str | None = None) -> tuple[Spec, Engine, RunDir, Journal]:
    """Everything that can fail on user input, done before Ray starts.

    The spec and its policy files are validated, the managed model and data built once
    (:mod:`autofix.tune.preflight`; on the cluster instead when an address is given, see :func:`run`),
    and the run directory is claimed (:func:`autofix.tune.rundir.claim`: validated, locked, cleared
    only if it is an autofix run directory and ``overwrite`` is set); the caller releases it.
    """
    spec = load_spec(spec)
    policies = load_policies(spec.policy_paths(), spec.known_paths())  # policy files are input too: checked first
    if not cluster_address(spec, address):
        preflight.check(spec)
    target = output if output is not None else Path("runs", f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = claim(target, spec.base_dir, overwrite)
    out = run_dir.path  # resolved: Tune pickles the engine and its journal path
    try:
        (out / SPEC_COPY).write_text(json.dumps({"spec": spec.model_dump(mode="json"), "base_dir": spec.base_dir}))
        engine, journal = assemble(spec, out, echo)
    except BaseException:
        run_dir.release()
        raise
    journal("run_started", name=spec.name, output=str(out), policies=engine.policies.sources,
            config=engine.plan.config, metric=spec.metric, mode=spec.mode, budget=spec.budget.model_dump())
    guard = (spec.training.spike_guard if spec.training is not None else spec.spike_guard or SpikeGuardSpec()).enabled
    if guard and not engine.in_trial["policies"]:
        journal("notice", text="training.spike_guard is on but no enabled policy answers loss_spike with rewind: "
                               "no spike is rewound")
    for text in notices(spec) + [f"policy: {w} (kept: a custom trainable may report it)" for w in policies.warnings]:
        journal("notice", text=text)
    return spec, engine, run_dir, journal


def notices(spec: Spec) -> list[str]:
    """What autofix cannot check for this run and says so once, at its start."""
    loss = spec.training.loss if spec.training is not None else None
    if loss is not None and loss.expects is None and ":" in loss.name:
        return [f"loss {loss.name!r} declares no loss.expects (logits | probabilities | log_probs): the check "
                "that the model's outputs fit the loss (output_loss_mismatch) is skipped"]
    return []


def assemble(spec: Spec, out: Path, echo: Callable[[dict], None] | None = None) -> tuple[Engine, Journal]:
    """The engine of a run and its journal (appending to ``out/journal.jsonl``)."""
    policies = load_policies(spec.policy_paths(), spec.known_paths())
    params = spec.symptom_params()
    # Slow progress is judged on the run's own success bar unless the spec sets another.
    params["slow_progress"] = {"min_drop": spec.success.min_drop, **params.get("slow_progress", {})}
    detectors = build_detectors(spec.watched_loss, params)
    ledger = Ledger(spec.ledger_path()) if spec.ledger_path() else None
    journal = Journal(out / "journal.jsonl", echo=echo)
    plan = Plan(
        config=spec.base_config(), metric=spec.metric, mode=spec.mode, loss_metric=spec.watched_loss,
        min_drop=spec.success.min_drop, max_attempts=spec.budget.max_attempts,
        max_epochs=spec.budget.max_epochs, aliases=dict(spec.knobs), parallel=spec.budget.max_concurrent,
        soft_min_steps=spec.patience.min_steps, soft_share=spec.patience.share,
        inputs=spec.judge.inputs() if spec.judge is not None else Inputs(), managed=spec.training is not None,
        guard=spec.spike_guard.model_dump() if spec.spike_guard is not None else None,
    )
    engine = Engine(plan, detectors, policies, journal=journal, check_config=_config_checker(spec),
                    ranker=ledger.ranker() if ledger else None)
    return engine, journal


def _config_checker(spec: Spec) -> Callable[[dict], str | None]:
    """Managed configs are re-validated after every patch; custom ones are the user's own.

    A patch that touches the model (architecture surgery, re-initialisation) is also tried on
    the driver by building the model once, as a trial would (same data, seed and first batch):
    a change the model cannot take (a functional ``F.relu`` cannot be swapped, the head already
    ends as asked) is skipped with its reason instead of burning an attempt.
    """
    if spec.training is None:
        return lambda config: None
    base = spec.base_config()

    def check(config: dict) -> str | None:
        try:
            TrainingSpec.model_validate(config)
        except pydantic.ValidationError as err:
            return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False))
        if all(config.get(k) == base.get(k) for k in ("model", "architecture", "init")):
            return None
        from autofix.harness.assemble import preview_model

        try:
            preview_model(config)  # the trial's data, seed and first batch: the same surgery
        except (ValueError, TypeError, RuntimeError) as exc:
            return str(exc)
        return None

    return check


def run(spec: Any, output: str | os.PathLike | None = None, *, address: str | None = None,
        overwrite: bool = False, verbose: bool = False,
        echo: Callable[[dict], None] | None = None, observer: Callable[[Any], None] | None = None,
        on_spec: Callable[[Spec], None] | None = None) -> Report:
    """Run the remediation loop for ``spec`` (a YAML path, a dict or a :class:`Spec`).

    Returns the :class:`~autofix.reports.reporting.Report` (also written to ``OUTPUT/report.json``); its
    status is ``interrupted`` when SIGINT or SIGTERM stopped the run (``autofix resume``
    continues it). Raises :class:`~autofix.errors.InputError` on bad input, before any trial
    starts and with no run directory left behind, and :class:`~autofix.errors.RunFailed` when
    Ray fails under the run (the full traceback in ``OUTPUT/driver.log``).
    """
    spec, engine, run_dir, journal = prepare(spec, output, overwrite, echo, address)
    out = run_dir.path
    engine.observer = observer
    if on_spec is not None:
        on_spec(spec)
    started = time.monotonic()
    try:
        with Interrupts(journal_signal(journal, out)) as stop, failures(out, verbose):
            with joined(spec, address, verbose, run_dir), ray_logs(out, verbose):
                stop.rearm()
                if not stop.signal:
                    _fit(spec, engine, out, verbose)
            return conclude(spec, engine, out, journal, time.monotonic() - started, interrupted=stop.signal)
    finally:
        journal.close()
        run_dir.release()


@contextlib.contextmanager
def joined(spec: Spec, address: str | None, verbose: bool, run_dir: RunDir) -> Iterator[None]:
    """Inside :func:`ray_session`, with the cluster check done: when Ray refuses the connection
    or the model and data cannot be built on the cluster, nothing has run yet, so the run
    directory this run created is removed again (never a folder that existed before)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(ray_session(spec, address, verbose, run_dir.path / DRIVER_LOG))
            if cluster_address(spec, address):
                preflight.check_remote(spec)
        except BaseException:
            stack.close()  # Ray shut down first: nothing of it may hold the folder's files
            run_dir.discard()
            raise
        yield


@contextlib.contextmanager
def failures(out: Path, verbose: bool) -> Iterator[None]:
    """Ray or autofix failing under a run: the traceback goes to ``OUTPUT/driver.log`` and a
    :class:`RunFailed` of one line names it (with ``-v`` the exception passes unchanged)."""
    try:
        yield
    except (InputError, RunFailed):
        raise
    except Exception as exc:
        if verbose:
            raise
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if out.is_dir():
            log = out / DRIVER_LOG
            with open(log, "a", encoding="utf-8") as f:
                f.write(text)
        else:  # nothing ran and the run directory was removed again: the temp folder keeps it
            with tempfile.NamedTemporaryFile("w", prefix="autofix-error-", suffix=".log", delete=False) as tmp:
                tmp.write(text)
            log = Path(tmp.name)
        raise RunFailed(_one_line(exc), str(log)) from exc


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"


def journal_signal(journal: Journal, out: Path) -> Callable[[str, bool], None]:
    """What a SIGINT/SIGTERM does first: journal it (the terminal shows the journal's line)."""
    def on_signal(name: str, force: bool) -> None:
        journal("run_interrupted", signal=name, force=force, resume=f"autofix resume {out}")
    return on_signal


def conclude(spec: Spec, engine: Engine, out: Path, journal: Journal, elapsed: float,
             interrupted: str | None = None) -> Report:
    """End the run: settle every attempt, write report.json and report.html, journal the end.

    An interrupted run is not ended: its attempts stay as they were (running ones resume from
    their last checkpoint), nothing is learnt, and report.json says ``interrupted``."""
    if interrupted:
        resume = f"autofix resume {out}" if (out / "tune" / "tuner.pkl").is_file() else None
        ended = interrupted_because(interrupted, resume)
        report = build_report(engine, spec.name, str(out), elapsed, ended, status="interrupted")
        report.write(out / "report.json")
        journal("run_finished", status=report.status, winner=None, reason=ended)
        return report
    ended = ended_because(engine, spec.budget, elapsed)
    engine.finish(ended)
    _learn(spec, engine)
    report = build_report(engine, spec.name, str(out), elapsed, ended)
    report.write(out / "report.json")
    from autofix.reports.html import write_html  # matplotlib is imported only here, at the end

    write_html(report, out / "report.html")
    journal("run_finished", status=report.status, winner=report.winner, reason=ended)
    return report


def _learn(spec: Spec, engine: Engine) -> None:
    """Feed the ledger the verdicts worth learning from (:func:`autofix.rules.settle.ledger_outcomes`):
    a fix healed only when it beat its parent at the same step, never on a relative rise."""
    path = spec.ledger_path()
    if path is None:
        return
    ledger = Ledger(path)
    for attempt, healed in settle.ledger_outcomes(engine.attempts, engine.plan.metric, engine.plan.mode):
        assert attempt.answers and attempt.policy and attempt.action  # set together when a policy launched it
        ledger.record(spec.name, attempt.id, attempt.answers, attempt.policy, attempt.action, healed=healed)


def trainable_of(spec: Spec) -> Any:
    """The Tune trainable of a spec, with its per-trial resources."""
    from ray import tune

    from autofix.tune.ddp import make_distributed_trainable
    from autofix.tune.trial import make_custom_trainable, managed_trainable

    dist = spec.ray.distributed
    if dist is not None:
        trainable = make_distributed_trainable(dist.workers, dist.backend, dist.use_gpu, spec.ray.cpus_per_trial)
        # The Train workers hold the CPUs (cpus_per_trial each, in Train's own placement group);
        # the trial only waits on them. Tune rejects {"cpu": 0} alone, and any CPU here would
        # make 2 workers on a 2-CPU Ray wait forever for 2.01 CPUs.
        return tune.with_resources(trainable, {"cpu": 0, "memory": 1})
    trainable = managed_trainable if spec.trainable is None else make_custom_trainable(spec.trainable)
    return tune.with_resources(trainable, {"cpu": spec.ray.cpus_per_trial, "gpu": spec.ray.gpus_per_trial})


def _fit(spec: Spec, engine: Engine, out: Path, verbose: bool) -> None:
    from ray import tune

    from autofix.tune.controller import AutofixScheduler, AutofixSearcher
    from autofix.tune.trial import RESERVED

    name = lambda trial: f"{trial.config[RESERVED]['attempt']}-{trial.trial_id}"  # noqa: E731
    storage, experiment = _storage(spec, out)
    tuner = tune.Tuner(
        trainable_of(spec),
        tune_config=tune.TuneConfig(
            search_alg=AutofixSearcher(engine, spec.search_path(), spec.metric, spec.mode),
            scheduler=AutofixScheduler(engine), num_samples=-1,
            max_concurrent_trials=spec.budget.max_concurrent, time_budget_s=spec.budget.wall_clock_s,
            reuse_actors=True, trial_name_creator=name, trial_dirname_creator=name,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=storage, verbose=1 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=spec.ray.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
    tuner.fit()


def _storage(spec: Spec, out: Path) -> tuple[str, str]:
    """Tune's ``(storage_path, name)``: ``OUTPUT/tune``, or a folder of this run in ``ray.storage_path``.

    A shared storage holds many runs, so the folder is named after the output directory (plus a
    hash of its path); on a filesystem path ``OUTPUT/tune`` links to it, so ``resume``,
    ``diagnose`` and the HTML report find the experiment as usual.
    """
    if spec.ray.storage_path is None:
        return str(out), "tune"
    storage = spec.ray.storage_path
    experiment = f"{out.name}-{hashlib.sha1(str(out).encode()).hexdigest()[:8]}"
    if "://" not in storage:  # a URI (s3://, gs://, file://) is Tune's to resolve
        storage = str(Path(spec.base_dir, storage).expanduser().resolve())
        Path(storage, experiment).mkdir(parents=True, exist_ok=True)
        if not (out / "tune").exists():
            (out / "tune").symlink_to(Path(storage, experiment), target_is_directory=True)
    return storage, experiment


