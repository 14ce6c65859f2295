"""``autofix.run``: validate everything, then drive one Ray Tune experiment with the engine.

Order matters for "nothing started on bad input": the spec, the policies and the output
directory are all checked before Ray is initialised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pydantic

from autofix import settle
from autofix.engine import Engine, Plan
from autofix.journal import Journal
from autofix.ledger import Ledger
from autofix.policy import load_policies
from autofix.reporting import Report, build_report
from autofix.rundir import RunDir, claim
from autofix.spec import Spec, load_spec
from autofix.symptoms import build_detectors
from autofix.training import TrainingSpec

__all__ = ["SPEC_COPY", "assemble", "conclude", "notices", "prepare", "ray_session", "run", "trainable_of"]

SPEC_COPY = "spec.json"  # the validated spec, kept in the run directory for `autofix resume`

# Quiet by default (shared/notes/ray-tune.md, "Quiet tests"); users can still override them.
for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
                     "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
                     # Experiment state (with the engine's lineage) saved at least every second, so
                     # a killed driver loses at most about a second of decisions; "auto" can wait
                     # ~10 s. Each save writes a few tens of KB.
                     "TUNE_GLOBAL_CHECKPOINT_S": "1"}.items():
    os.environ.setdefault(_key, _value)


def prepare(spec: Any, output: str | os.PathLike | None = None, overwrite: bool = False,
            echo: Callable[[dict], None] | None = None) -> tuple[Spec, Engine, RunDir, Journal]:
    """Everything that can fail on user input, done before Ray starts.

    The run directory is claimed (:func:`autofix.rundir.claim`: validated, locked, cleared only
    if it is an autofix run directory and ``overwrite`` is set); the caller releases it.
    """
    spec = load_spec(spec)
    load_policies(spec.policy_paths())  # policy files are input too: checked before anything
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
    for text in notices(spec):
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
    policies = load_policies(spec.policy_paths())
    detectors = build_detectors(spec.watched_loss, spec.symptom_params())
    ledger = Ledger(spec.ledger_path()) if spec.ledger_path() else None
    journal = Journal(out / "journal.jsonl", echo=echo)
    plan = Plan(
        config=spec.base_config(), metric=spec.metric, mode=spec.mode, loss_metric=spec.watched_loss,
        min_drop=spec.success.min_drop, max_attempts=spec.budget.max_attempts,
        max_epochs=spec.budget.max_epochs, aliases=dict(spec.knobs), parallel=spec.budget.max_concurrent,
        soft_min_steps=spec.patience.min_steps, soft_share=spec.patience.share,
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

    Returns the :class:`~autofix.reporting.Report` (also written to ``OUTPUT/report.json``).
    Raises :class:`~autofix.errors.InputError` on bad input, before anything starts.
    """
    spec, engine, run_dir, journal = prepare(spec, output, overwrite, echo)
    out = run_dir.path
    engine.observer = observer
    if on_spec is not None:
        on_spec(spec)
    started = time.monotonic()
    try:
        with ray_session(spec, address, verbose):
            _fit(spec, engine, out, verbose)
        return conclude(spec, engine, out, journal, time.monotonic() - started)
    finally:
        journal.close()
        run_dir.release()


def conclude(spec: Spec, engine: Engine, out: Path, journal: Journal, elapsed: float) -> Report:
    """End the run: settle every attempt, write report.json and report.html, journal the end."""
    ended = _ended_because(spec, engine, elapsed)
    engine.finish(ended)
    _learn(spec, engine)
    report = build_report(engine, spec.name, str(out), elapsed, ended)
    report.write(out / "report.json")
    from autofix.htmlreport import write_html  # matplotlib is imported only here, at the end

    write_html(report, out / "report.html")
    journal("run_finished", status=report.status, winner=report.winner, reason=ended)
    return report


def _learn(spec: Spec, engine: Engine) -> None:
    """Feed the ledger the verdicts worth learning from (:func:`autofix.settle.ledger_outcomes`):
    a fix healed only when it beat its parent at the same step, never on a relative rise."""
    path = spec.ledger_path()
    if path is None:
        return
    ledger = Ledger(path)
    for attempt, healed in settle.ledger_outcomes(engine.attempts, engine.plan.metric, engine.plan.mode):
        ledger.record(spec.name, attempt.id, attempt.answers, attempt.policy, attempt.action, healed=healed)


def trainable_of(spec: Spec) -> Any:
    """The Tune trainable of a spec, with its per-trial resources."""
    from ray import tune

    from autofix.trial import make_custom_trainable, make_distributed_trainable, managed_trainable

    dist = spec.ray.distributed
    if dist is not None:
        trainable = make_distributed_trainable(dist.workers, dist.backend, dist.use_gpu, spec.ray.cpus_per_trial)
        # The Train workers hold the CPUs (cpus_per_trial each, in Train's own placement group);
        # the trial only waits on them. Tune rejects {"cpu": 0} alone, and any CPU here would
        # make 2 workers on a 2-CPU Ray wait forever for 2.01 CPUs.
        return tune.with_resources(trainable, {"cpu": 0, "memory": 1})
    trainable = managed_trainable if spec.training is not None else make_custom_trainable(spec.trainable)
    return tune.with_resources(trainable, {"cpu": spec.ray.cpus_per_trial, "gpu": spec.ray.gpus_per_trial})


def _fit(spec: Spec, engine: Engine, out: Path, verbose: bool) -> None:
    from ray import tune

    from autofix.controller import AutofixScheduler, AutofixSearcher
    from autofix.trial import RESERVED

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


@contextlib.contextmanager
def ray_session(spec: Spec, address: str | None, verbose: bool) -> Iterator[None]:
    """Join the given cluster, or start an embedded local Ray bound to loopback."""
    import ray

    if ray.is_initialized():  # the caller (a notebook, the test session) owns Ray
        yield
        return
    address = address or spec.ray.address or os.environ.get("RAY_ADDRESS")
    if not verbose:  # no Ray log spam by default (-v shows it)
        logging.getLogger("ray").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if address:
            ray.init(address=address, log_to_driver=verbose)
        else:
            dashboard = stack.enter_context(_dashboard_for_train(spec.ray.distributed is not None))
            ray.init(num_cpus=spec.ray.num_cpus, log_to_driver=verbose, _node_ip_address="127.0.0.1",
                     logging_level=logging.INFO if verbose else logging.ERROR, **dashboard)
        try:
            yield
        finally:
            ray.shutdown()


@contextlib.contextmanager
def _dashboard_for_train(train: bool) -> Iterator[dict[str, Any]]:
    """The dashboard arguments of an embedded ``ray.init``: on, on loopback, for Ray Train.

    Train's placement-group cleaner asks the State API (a dashboard module) whether a stopped
    run's controller is gone; without the dashboard the group is never released and the next
    attempt waits forever (shared/notes/ray-tune.md). The cleaner finds the API through
    ``RAY_API_SERVER_ADDRESS``, else by auto-detection, which fails ("Found multiple active Ray
    instances") on a host running several Rays: so the port is chosen here and the variable
    set before Ray starts, for every process Ray spawns to inherit; restored afterwards.
    """
    if not train:
        yield {"include_dashboard": False}
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key, previous = "RAY_API_SERVER_ADDRESS", os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ[key] = f"http://127.0.0.1:{port}"
    try:
        yield {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def _ended_because(spec: Spec, engine: Engine, elapsed: float) -> str:
    if engine.winner is not None:
        return f"settled: keep {engine.winner}"
    if engine.halted is not None:
        return engine.halted
    budget = spec.budget
    if budget.wall_clock_s is not None and elapsed >= budget.wall_clock_s:
        return f"wall-clock budget of {budget.wall_clock_s:g} s spent"
    if engine.queue:
        return f"max_attempts={budget.max_attempts} reached"
    return "no policy had a remedy left for the last attempt"
