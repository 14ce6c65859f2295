"""What the Ray Tune baselines share: the trainable, one experiment run, the result record.

The trainable runs the managed harness (:func:`autofix.harness.run_training`, one torch
thread) on either a plain training config (random repair) or ``{"base", "knobs"}`` (a knob
assignment of :mod:`spaces`). It adds one metric, ``objective``: ``val_loss`` with a
non-finite value replaced by 1e9, because ASHA's cutoff never stops a NaN trial (``NaN < x``
is false) and PBT cannot rank one; a careful user would do the same.

Trial-seconds are Tune's ``time_this_iter_s`` summed over reports, as for autofix. A new trial
actor's first report includes importing torch and the harness (~2.5 s idle, ~6 s on a loaded
2-core machine, measured): ASHA and PBT run two actors at a time, random repair one, each
reused for later trials (``reuse_actors=True``). Each ``Tuner.fit()`` also costs ~4-5 s of
wall time before the first trial starts.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
import zlib
from typing import Any

import ray.cloudpickle

from common import BENCH_DIR, REPO_DIR, ZOO_DIR, Budget, Case, MethodResult, changed_keys
from methods.judging import JudgingStopper

__all__ = ["NO_CHECKPOINTS", "OBJECTIVE", "knob_trainable", "method_result", "run_experiment", "run_seed"]

# No experiment banner or progress table on stdout (docs/ray-tune.md, "Quiet tests").
for _key, _value in {"RAY_AIR_NEW_OUTPUT": "0", "RAY_USAGE_STATS_ENABLED": "0",
                     "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1"}.items():
    os.environ.setdefault(_key, _value)

OBJECTIVE = "objective"
NO_CHECKPOINTS = 10**9  # checkpoint_every for methods that never restore a trial


# Ray workers do not see the driver's sys.path, and benchmarks/ is no installed package: ship
# this module's functions (the trainable) by value; the trainable puts benchmarks/ on the path.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def knob_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: materialise the knobs, train, report every epoch.

    With ``config["warm"]`` (PBT) a Tune checkpoint is a warm start: weights and optimiser
    moments with *this* config's hyperparameters (PBT's exploit-then-explore), where an exact
    restore would keep the checkpoint's learning rate and undo the mutation.
    """
    import ray.tune
    import torch

    from autofix.harness import run_training

    for path in (str(ZOO_DIR), str(REPO_DIR), str(BENCH_DIR)):  # zoo factories, spaces.py
        if path not in sys.path:
            sys.path.insert(0, path)
    from spaces import materialize

    torch.set_num_threads(1)
    if "knobs" in config:
        training = materialize(config["base"], config["knobs"])
    else:
        training = {k: v for k, v in config.items() if k != "warm"}
    ckpt = ray.tune.get_checkpoint()
    restore = None
    if ckpt is not None and config.get("warm"):
        training["warm_start"] = ckpt.to_directory()
    elif ckpt is not None:
        restore = ckpt.to_directory()

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        loss = metrics.get("val_loss")
        objective = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else 1e9
        checkpoint = ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.tune.report({**metrics, OBJECTIVE: objective}, checkpoint=checkpoint)

    run_training(training, report, restore_dir=restore)


def run_seed(case: Case, seed: int) -> int:
    """The seed of a method's own random draws: the same seed on two cases draws differently."""
    return zlib.crc32(f"{case.name}:{seed}".encode())


def run_experiment(param_space: dict[str, Any] | None, stopper: JudgingStopper, *, num_samples: int,
                   scheduler: Any = None, search_alg: Any = None, max_concurrent: int = 0,
                   keep_checkpoints: int | None = 1) -> tuple[float, int, int]:
    """One ``Tuner.fit()`` in the already initialised Ray; returns ``(wall_s, trials, errors)``.

    The scheduler and searcher carry their own metric and mode (``objective``, min).
    ``keep_checkpoints=None`` keeps every checkpoint (PBT clones a donor's, possibly older one).
    """
    from ray import tune

    storage = tempfile.mkdtemp(prefix="bench-tune-")
    name = lambda trial: trial.trial_id  # noqa: E731  (the default embeds the whole config)
    started = time.monotonic()
    try:
        tuner = tune.Tuner(
            tune.with_resources(knob_trainable, {"cpu": 1}),
            param_space=param_space or {},
            tune_config=tune.TuneConfig(
                scheduler=scheduler, search_alg=search_alg, num_samples=num_samples,
                max_concurrent_trials=max_concurrent or None, reuse_actors=True,
                trial_name_creator=name, trial_dirname_creator=name,
            ),
            run_config=tune.RunConfig(
                name="bench", storage_path=storage, verbose=0, stop=stopper,
                failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=keep_checkpoints),
            ),
        )
        grid = tuner.fit()
        # Trials that ran: the searcher creates ASHA's and PBT's up front, and those still
        # pending when the first healthy report stops the experiment never started.
        crashed = sum(1 for result in grid if result.error is not None and "epoch" not in (result.metrics or {}))
        trials = len(stopper.trials) + crashed
        errors = sum(1 for result in grid if result.error is not None)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return time.monotonic() - started, trials, errors


def method_result(method: str, case: Case, seed: int, space: str, pad_s: float, budget: Budget,
                  stopper: JudgingStopper, user_config: dict[str, Any], ran: tuple[float, int, int],
                  notes: str = "") -> MethodResult:
    """The record of one baseline run from its stopper's bookkeeping and ``run_experiment``'s."""
    wall_s, trials, errors = ran
    found = stopper.found
    keys: list[str] = []
    if found is not None:
        keys = changed_keys(user_config, _training_of(found.config))
    return MethodResult(
        method=method, case=case.name, seed=seed, space=space, pad_s=pad_s,
        healed=found is not None,
        epochs=found.epochs if found else None,
        trial_s=found.trial_s if found else None,
        wall_s=round(wall_s, 3), trials=trials, patch_keys=keys,
        diagnosis=None, detection_reports=None, relaunches=max(0, trials - 1),
        total_epochs=stopper.epochs, warm_restarts=stopper.exploits,
        notes="; ".join(n for n in (notes, _budget_note(stopper, budget),
                                    f"{errors} trial(s) raised" if errors else "") if n),
    )


def _training_of(config: dict[str, Any]) -> dict[str, Any]:
    from spaces import materialize

    if "knobs" in config and "base" in config:
        return materialize(config["base"], config["knobs"])
    return {k: v for k, v in config.items() if k != "warm"}


def _budget_note(stopper: JudgingStopper, budget: Budget) -> str:
    if stopper.found is None and stopper.spent:
        return f"epoch budget spent ({stopper.epochs}/{budget.max_epochs_total})"
    return ""
