"""Baseline: Ray Tune Population Based Training with mutations over the same knob space.

A population of ``budget.max_trials`` trials starts from random assignments; every
``perturbation_interval`` reports the bottom quarter clones a top-quarter trial's checkpoint
and perturbs its knobs (Jaderberg et al. 2017, arXiv:1711.09846; Tune's defaults: resample
with probability 0.25, else floats x0.8/x1.2 and choices shifted one step), clipped back into
the space. A clone starts warm from the donor's checkpoint with its own knobs (a change of the
model's structure, such as a new init or activation, trains from scratch: the old weights do
not fit). Ends at the first independently healthy report or at the epoch budget.
"""

from __future__ import annotations

from typing import Any

from common import Budget, Case, MethodResult, training_config
from methods.judging import JudgingStopper, case_judge
from methods.tuning import OBJECTIVE, method_result, run_experiment, run_seed
from spaces import SPACES

__all__ = ["perturbation_interval", "run_pbt"]


def perturbation_interval(epochs: int) -> int:
    """Reports between perturbations: about four per run, at least two."""
    return max(2, epochs // 4)


def _judged_pbt(stopper: JudgingStopper, **kwargs: Any) -> Any:
    """PBT whose clones take over their donor's lineage baseline in the judge."""
    from ray.tune.schedulers import PopulationBasedTraining

    class JudgedPBT(PopulationBasedTraining):
        def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
            stopper.inherit(trial.trial_id, trial_to_clone.trial_id)
            super()._exploit(tune_controller, trial, trial_to_clone)

    return JudgedPBT(**kwargs)


def run_pbt(case: Case, seed: int, space: str, pad_s: float, budget: Budget, *,
            reference: float | None = None) -> MethodResult:
    """PBT on ``case`` with ``seed``; ``reference`` skips retraining the reference."""
    import random

    from ray.tune.search import BasicVariantGenerator

    user = training_config(case, seed, pad_s)
    knobs = SPACES[space](user)
    stopper = JudgingStopper(case_judge(case, seed, reference), budget)
    random.seed(run_seed(case, seed))  # PBT's explore draws from the global random module
    scheduler = _judged_pbt(
        stopper, time_attr="training_iteration", metric=OBJECTIVE, mode="min",
        perturbation_interval=perturbation_interval(int(user["epochs"])),
        hyperparam_mutations=knobs.mutations(), custom_explore_fn=knobs.clip_config,
        quantile_fraction=0.25, resample_probability=0.25, synch=False,
    )
    param_space = {**knobs.param_space(), "warm": True}
    ran = run_experiment(
        param_space, stopper, num_samples=budget.max_trials, scheduler=scheduler,
        search_alg=BasicVariantGenerator(random_state=run_seed(case, seed)), keep_checkpoints=None,
    )
    return method_result("pbt", case, seed, space, pad_s, budget, stopper, user, ran,
                         notes=f"{len(knobs.knobs)} knobs, population {budget.max_trials}")
