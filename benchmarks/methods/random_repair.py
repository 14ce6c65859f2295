"""Baseline: random repair, autofix's own action library without the diagnosis.

Sequential attempts, each trained from scratch for the case's full epochs. After an attempt
that the independent judge did not find healthy, one action is drawn uniformly from the
distinct actions (with their parameters) named in the ``then:`` lists of the shipped
``autofix/policies/*.yaml`` that can change the current config, stay inside the knob space and give a
config the schema and the model accept; it is applied on top of the previous patches (a
lineage, like autofix's). Same budget: ``max_trials`` attempts and the epoch budget.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from autofix.actions import Action, NotApplicable

from common import Budget, Case, MethodResult, training_config
from methods.judging import JudgingStopper, case_judge
from methods.tuning import NO_CHECKPOINTS, OBJECTIVE, method_result, run_experiment, run_seed
from spaces import SPACES

__all__ = ["KNOB_OF_PATH", "policy_actions", "random_step", "run_random_repair"]

# Which knob of spaces.py a change (by the path an action records) belongs to.
KNOB_OF_PATH = {
    "optimizer.lr": "lr", "optimizer": "optimizer", "optimizer.kwargs": "weight_decay",
    "scheduler": "scheduler", "init": "init", "loss.class_weights": "class_weights",
    "data.sampler": "sampler", "data.normalize": "normalize", "grad_clip": "grad_clip",
    "architecture.activation": "activation", "architecture.batch_norm": "batch_norm",
    "architecture.dropout": "dropout", "data.augment": "augment",
}


def policy_actions() -> list[Action]:
    """The distinct non-terminal actions of the shipped policies, in file order."""
    from autofix.rules.policy import BUILTIN, load_policies

    seen: set[str] = set()
    actions: list[Action] = []
    for policy in load_policies([BUILTIN]):
        for action in policy.then:
            key = repr(sorted(action.model_dump(exclude={"times", "start"}).items()))
            if action.terminal or key in seen:
                continue
            seen.add(key)
            actions.append(action)
    return actions


def config_problem(config: dict[str, Any]) -> str | None:
    """Why the harness would reject ``config`` (schema, or a model that cannot take the patch)."""
    import pydantic

    from autofix.spec.training import TrainingSpec

    try:
        TrainingSpec.model_validate(config)
    except pydantic.ValidationError as err:
        return str(err.errors(include_url=False)[0]["msg"])
    from autofix.harness.builders import build_model

    try:
        build_model(config["model"], config.get("architecture"), config.get("init"))
    except (ValueError, TypeError, RuntimeError) as exc:
        return str(exc)
    return None


def random_step(config: dict[str, Any], rng: random.Random, knobs: set[str], actions: list[Action],
                check: Callable[[dict[str, Any]], str | None] = config_problem) -> tuple[dict[str, Any], Action] | None:
    """One uniformly drawn applicable action applied to ``config``; None when none applies."""
    options: list[tuple[dict[str, Any], Action]] = []
    for action in actions:
        try:
            patched, changes = action.apply(config)
        except NotApplicable:
            continue
        if any(KNOB_OF_PATH.get(change.path) not in knobs for change in changes):
            continue
        if check(patched) is None:
            options.append((patched, action))
    return rng.choice(options) if options else None


def _searcher(first: dict[str, Any], step: Callable[[dict[str, Any]], dict[str, Any] | None],
              stopper: JudgingStopper, max_trials: int) -> Any:
    """A Tune searcher running one attempt at a time, repairing after each failed one."""
    from ray.tune.search import Searcher

    class RandomRepairSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric=OBJECTIVE, mode="min")
            self.current: dict[str, Any] | None = first
            self.running: str | None = None
            self.launched = 0

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if stopper.stop_all() or self.current is None or self.launched >= max_trials:
                return Searcher.FINISHED if self.running is None else None
            if self.running is not None:
                return None  # sequential: the next attempt depends on this one's outcome
            self.running, self.launched = trial_id, self.launched + 1
            return copy.deepcopy(self.current)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id != self.running:
                return
            self.running = None
            more = self.launched < max_trials and not stopper.stop_all()
            if more and self.current is not None:
                self.current = step(self.current)

    return RandomRepairSearcher()


def run_random_repair(case: Case, seed: int, space: str, pad_s: float, budget: Budget, *,
                      reference: float | None = None) -> MethodResult:
    """Random repair on ``case`` with ``seed``; ``reference`` skips retraining the reference."""
    user = training_config(case, seed, pad_s)
    first = {**user, "checkpoint_every": NO_CHECKPOINTS}  # cold restarts only
    knobs = set(SPACES[space](user).names)
    actions = policy_actions()
    rng = random.Random(run_seed(case, seed))
    applied: list[str] = []

    def step(config: dict[str, Any]) -> dict[str, Any] | None:
        drawn = random_step(config, rng, knobs, actions)
        if drawn is None:
            applied.append("no applicable action left")
            return None
        applied.append(drawn[1].describe())
        return drawn[0]

    stopper = JudgingStopper(case_judge(case, seed, reference), budget)
    searcher = _searcher(first, step, stopper, budget.max_trials)
    ran = run_experiment(None, stopper, num_samples=-1, search_alg=searcher, max_concurrent=1)
    return method_result("random_repair", case, seed, space, pad_s, budget, stopper, user, ran,
                         notes="actions: " + (", ".join(applied) or "none"))
