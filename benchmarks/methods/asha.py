"""Baseline: Ray Tune random search with ASHA early stopping over a knob space.

Random search draws ``budget.max_trials`` assignments of :mod:`spaces` (seeded);
ASHA (Li et al. 2020, arXiv:1810.05934) stops the worse trials at epochs 1, 3, 9, ... and
promotes the rest, on ``objective`` (``val_loss``, non-finite as 1e9). The experiment ends at
the first independently healthy report (:class:`JudgingStopper`) or at the epoch budget.
"""

from __future__ import annotations

from common import Budget, Case, MethodResult, training_config
from methods.judging import JudgingStopper, case_judge
from methods.tuning import NO_CHECKPOINTS, OBJECTIVE, method_result, run_experiment, run_seed
from spaces import SPACES

__all__ = ["REDUCTION_FACTOR", "run_asha"]

REDUCTION_FACTOR = 3  # Tune's ASHA default is 4; 3 gives rungs at 1, 3, 9 epochs on short runs


def run_asha(case: Case, seed: int, space: str, pad_s: float, budget: Budget, *,
             reference: float | None = None) -> MethodResult:
    """Random search + ASHA on ``case`` with ``seed``; ``reference`` skips retraining it."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    user = training_config(case, seed, pad_s)
    knobs = SPACES[space]({**user, "checkpoint_every": NO_CHECKPOINTS})  # never restored
    stopper = JudgingStopper(case_judge(case, seed, reference), budget)
    epochs = int(user["epochs"])
    scheduler = ASHAScheduler(time_attr="epoch", metric=OBJECTIVE, mode="min", max_t=epochs,
                              grace_period=1, reduction_factor=REDUCTION_FACTOR)
    ran = run_experiment(
        knobs.param_space(), stopper, num_samples=budget.max_trials, scheduler=scheduler,
        search_alg=BasicVariantGenerator(random_state=run_seed(case, seed)),
    )
    return method_result("asha", case, seed, space, pad_s, budget, stopper, user, ran,
                         notes=f"{len(knobs.knobs)} knobs")
