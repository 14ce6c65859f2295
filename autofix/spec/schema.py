"""The run spec: what to train, what to watch, what counts as healed, and the budget.

Validated with pydantic v2 at the boundary: unknown keys are errors, every problem is
reported at once with file, line and field, and factories named as ``"module:callable"`` are
imported and their ``args`` bound before anything starts.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pydantic
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, create_model, field_validator, model_validator

from autofix.actions import has_path
from autofix.errors import InputError, Problem
from autofix.rules.policypaths import Known
from autofix.spec.catalogue import harness_metric_names, harness_reports
from autofix.spec.refs import resolve
from autofix.spec.sources import load_yaml, problems_from_validation, source_from_data
from autofix.spec.training import BUILTIN_DATASETS, SpikeGuardSpec, Strict, TrainingSpec
from autofix.symptoms import SYMPTOMS

__all__ = ["BUILTIN_DATASETS", "Spec", "TrainingSpec", "load_spec"]



class SuccessSpec(Strict):
    """Healed means: the watched metric improved by ``min_drop`` of its first report, no symptom active."""

    min_drop: float = Field(default=0.3, gt=0, le=1)  # share of its first report the watched loss must fall by


class PatienceSpec(Strict):
    """How long a *soft* symptom waits before it may act on an attempt: ``min_steps`` optimizer
    steps, and ``share`` of the planned steps when that is longer (hard symptoms act at once).

    ``share=0.5``: AUTOTRAINER judges after 30% of the epoch budget (Zhang et al., ICSE 2021),
    but deep narrow tanh/ReLU stacks on 2-D data (3 steps per epoch, 300 epochs) measured here
    sit near chance for up to 35% of their planned steps before they learn
    (benchmarks/zoo, the slow_* healthy controls): half the run leaves them room.
    ``min_steps=100`` is our choice: a run planned for fewer steps than ~200 is never stopped on
    soft evidence before it has taken 100 steps.
    """

    min_steps: int = Field(default=100, ge=0, le=10_000_000)  # optimizer steps a soft symptom waits at least
    share: float = Field(default=0.5, ge=0, le=1)  # share of the planned steps it waits when that is longer


class JudgeMetrics(Strict):
    """Your metric names for the roles autofix judges (it reads them as ``val_accuracy``, ...)."""

    accuracy: str | None = Field(default=None, min_length=1)  # your accuracy metric
    macro_f1: str | None = Field(default=None, min_length=1)  # your macro-F1 metric
    balanced_accuracy: str | None = Field(default=None, min_length=1)  # your balanced-accuracy metric


class JudgeSpec(Strict):
    """What a custom trainable's runs are judged on, declared instead of (or besides) reported.

    ``metrics`` names your accuracy / macro-F1 / balanced-accuracy metrics; ``num_classes``
    gives the chance figures that need no labels (balanced accuracy 1/K, macro-F1 <= 1/K, and
    ln K for a ``cross_entropy`` loss: its value at chance and the bar of the loss-at-init
    check); ``chance_accuracy`` / ``chance_macro_f1`` give the exact figures of the best
    constant predictor. ``autofix.judge_inputs`` computes all of them from your labels instead.
    """

    metrics: JudgeMetrics = Field(default_factory=JudgeMetrics)  # your names for the judged scores
    num_classes: int | None = Field(default=None, ge=2, le=1_000_000)  # K: chance figures 1/K and ln K
    cross_entropy: bool = True  # the loss is an unweighted cross-entropy
    chance_accuracy: float | None = Field(default=None, ge=0, le=1)  # the best constant predictor's accuracy
    chance_macro_f1: float | None = Field(default=None, ge=0, le=1)  # the best constant predictor's macro-F1

    def inputs(self) -> Any:
        """The plain-values form the engine reads (:class:`autofix.judge.judging.Inputs`)."""
        from autofix.judge.judging import Inputs

        roles = {k: v for k, v in self.metrics.model_dump().items() if v is not None}
        return Inputs(roles, self.num_classes, self.cross_entropy, self.chance_accuracy, self.chance_macro_f1)


class BudgetSpec(Strict):
    max_attempts: int = Field(default=6, ge=1, le=1000)  # trials launched in all (fixes, races, controls)
    max_concurrent: int = Field(default=1, ge=1, le=1000)  # trials at once; >= 2 races fixes
    max_epochs: int | None = Field(default=None, ge=1)  # epochs of all trials together
    wall_clock_s: float | None = Field(default=1800, gt=0, allow_inf_nan=False)  # the run's wall-clock limit


class DistributedSpec(Strict):
    """Run each attempt as a Ray Train ``TorchTrainer``: DDP over ``workers`` processes.

    Each worker takes ``ray.cpus_per_trial`` CPUs (and one GPU with ``use_gpu``) and trains on
    its shard of the data; rank 0's metrics and checkpoints are the attempt's.
    """

    workers: int = Field(ge=1, le=1024)  # DDP processes per attempt
    backend: Literal["gloo", "nccl"] = "gloo"  # torch.distributed backend
    use_gpu: bool = False  # one GPU per worker

    @model_validator(mode="after")
    def _nccl_on_gpus(self) -> DistributedSpec:
        if self.backend == "nccl" and not self.use_gpu:
            raise ValueError("backend 'nccl' runs on GPUs only: set use_gpu: true or use backend 'gloo'")
        return self


class RaySpec(Strict):
    address: str | None = None  # a cluster to join; none: an embedded Ray on 127.0.0.1
    num_cpus: int | None = Field(default=None, ge=1)  # CPUs of the embedded Ray
    cpus_per_trial: float = Field(default=1, gt=0)  # CPUs per trial (per worker with distributed)
    gpus_per_trial: float = Field(default=0, ge=0)  # GPUs per trial
    max_failures: int = Field(default=0, ge=0, le=100)  # Tune retries of a failed trial
    distributed: DistributedSpec | None = None
    """Each attempt as a Ray Train DDP run (managed ``training`` only); None: one process."""
    storage_path: str | None = Field(default=None, min_length=1)
    """Where Tune keeps the experiment (checkpoints included): a path or URI every node of the
    cluster shares; relative paths are from the spec's folder. Default: ``OUTPUT/tune``."""


# One optional field per registered detector, typed by its own Params: errors get exact
# locations (symptoms.plateau.window) and an unknown symptom lists the known ones.
if TYPE_CHECKING:  # fields made from the registry at import time, which a type checker cannot see
    SymptomsSpec = pydantic.BaseModel
else:
    SymptomsSpec = create_model(
        "SymptomsSpec", __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **{name: (cls.Params | None, None) for name, cls in sorted(SYMPTOMS.items())},
    )


class Spec(Strict):
    """A whole run. Exactly one of ``training`` (managed) or ``trainable`` (custom) is given."""

    version: Literal[1] = 1  # the spec format
    name: str = Field(default="autofix-run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
    training: TrainingSpec | None = None  # managed training: autofix owns the loop
    trainable: str | None = None  # or a Ray Tune function trainable, 'module:function'
    config: dict[str, Any] = Field(default_factory=dict)  # the custom trainable's config
    knobs: dict[str, str] = Field(default_factory=dict)  # policy path -> your config key
    spike_guard: SpikeGuardSpec | None = None  # a custom trainable's spike guard (autofix.spike_guard)
    judge: JudgeSpec | None = None
    """What a custom trainable is judged on (``autofix.judge.judging``); the managed harness reports it all."""
    metric: str = "val_loss"  # what success is judged on
    mode: Literal["min", "max"] = "min"  # max needs loss_metric
    loss_metric: str | None = None  # the loss the detectors read (default: metric)
    success: SuccessSpec = Field(default_factory=SuccessSpec)  # what healthy means
    patience: PatienceSpec = Field(default_factory=PatienceSpec)  # how long soft symptoms wait
    symptoms: SymptomsSpec = Field(default_factory=lambda: SymptomsSpec())  # detector parameters, by symptom
    policies: list[str] = Field(default_factory=lambda: ["builtin"])  # policy files/dirs in order; builtin = shipped
    budget: BudgetSpec = Field(default_factory=BudgetSpec)  # attempts, concurrency, epochs, time
    ray: RaySpec = Field(default_factory=RaySpec)  # where and how trials run
    python_path: list[str] = Field(default_factory=list)  # folders (from the spec's) to import from
    ledger: bool | str = True
    """Policy-effectiveness ledger: True = $AUTOFIX_HOME/ledger.jsonl (~/.autofix), a path, or False."""
    _base_dir: str = PrivateAttr(default=".")
    _source: Any = PrivateAttr(default=None)  # the parsed file: where each field was written

    def where(self, *loc: str) -> tuple[str, int | None]:
        """The file and line a field was written at (``where("training", "model", "factory")``)."""
        if self._source is None:
            return "<spec>", None
        return self._source.path, self._source.line_of(tuple(loc))

    @property
    def base_dir(self) -> str:
        """The folder relative paths in the spec are resolved against (the spec file's)."""
        return self._base_dir

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str | None) -> str | None:
        if value is not None:
            resolve(value)
        return value

    @field_validator("config")
    @classmethod
    def _string_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Ray Tune, the journal (JSON) and the lineage's config keys take string keys only; YAML
        # reads `0:` as a number, and a mapping mixing both cannot even be ordered.
        bad = _non_string_key(value, "config")
        if bad is not None:
            raise ValueError(f"{bad[0]}: keys must be strings, got {bad[1]!r} ({type(bad[1]).__name__}); quote it")
        return value

    @field_validator("knobs")
    @classmethod
    def _knobs_exist(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # A knob whose target is not in the trainable's config could never be patched: every
        # policy answering through it would be skipped at run time ("the config has no ...").
        config = info.data.get("config")
        if not value or not isinstance(config, dict):
            return value
        missing = [f"'{path}' -> '{target}'" for path, target in value.items() if not has_path(config, target)]
        if missing:
            keys = ", ".join(_leaf_paths(config)) or "none"
            raise ValueError(f"{', '.join(missing)}: not a key of the trainable's 'config'; its keys are: {keys}")
        return value

    @field_validator("metric", "loss_metric")
    @classmethod
    def _reported(cls, value: str | None, info: ValidationInfo) -> str | None:
        training = info.data.get("training")
        if value is None or training is None or harness_reports(value, training.probes.enabled):
            return value
        names = harness_metric_names(training.probes.enabled)
        close = difflib.get_close_matches(value, names.split(", "), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{value!r} is not a metric the managed harness reports{hint}; it reports: {names}")

    @field_validator("judge")
    @classmethod
    def _judge_is_custom(cls, value: JudgeSpec | None, info: ValidationInfo) -> JudgeSpec | None:
        if value is not None and info.data.get("training") is not None:
            raise ValueError("'judge' declares what a custom 'trainable' reports; the managed 'training' "
                             "reports every judgement input itself (remove 'judge')")
        return value

    @field_validator("ray")
    @classmethod
    def _distributed_is_managed(cls, value: RaySpec, info: ValidationInfo) -> RaySpec:
        # Checked here, not in _shape, so the error points at the spec's `ray:` line.
        if value.distributed is not None and info.data.get("trainable") is not None:
            raise ValueError("ray.distributed runs autofix's managed harness on each Ray Train worker: "
                             "it needs 'training', not a custom 'trainable' (remove ray.distributed)")
        return value

    @field_validator("python_path", "ledger")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        # A NUL passed validation and crashed Path.resolve() once Ray had started.
        for path in value if isinstance(value, list) else [value]:
            if isinstance(path, str) and "\0" in path:
                raise ValueError(f"a path cannot contain a NUL character, got {path!r}")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Spec:
        if (self.training is None) == (self.trainable is None):
            raise ValueError("give exactly one of 'training' (managed) or 'trainable' (custom function)")
        if self.training is not None and (self.config or self.knobs or self.spike_guard is not None):
            raise ValueError("'config', 'knobs' and 'spike_guard' belong to a custom 'trainable', not to 'training' "
                             "(a managed run sets training.spike_guard)")
        if self.mode == "max" and self.loss_metric is None:
            raise ValueError("mode 'max' needs 'loss_metric': the loss stream the symptom detectors read")
        return self

    def symptom_params(self) -> dict[str, dict[str, Any]]:
        """The detector parameters the spec overrides, by symptom name."""
        return {k: v.model_dump(exclude_unset=True) for k, v in self.symptoms if v is not None}

    @property
    def watched_loss(self) -> str:
        return self.loss_metric or self.metric

    def base_config(self) -> dict[str, Any]:
        """The config that attempt a0 runs and that policies patch."""
        if self.training is not None:
            return self.training.model_dump(mode="json")
        return dict(self.config)

    def ledger_path(self) -> str | None:
        """Where outcomes are recorded (None: not recorded); relative paths are from the spec."""
        if self.ledger is False:
            return None
        if self.ledger is True:
            from autofix.rules.ledger import default_ledger_path

            return str(default_ledger_path() / "ledger.jsonl")
        return str(Path(self.base_dir, self.ledger).expanduser())

    def policy_paths(self) -> list[str]:
        return [p if p == "builtin" else str(Path(self.base_dir, p)) for p in self.policies]

    def known_paths(self) -> Known:
        """What this run supplies to a policy's ``where`` (:mod:`autofix.rules.policypaths`)."""
        return Known(managed=self.training is not None, config=self.config, aliases=self.knobs)

    def search_path(self) -> list[str]:
        """Directories to import user factories from: the spec's own folder and ``python_path``."""
        return [str(Path(self.base_dir, p).resolve()) for p in ["."] + self.python_path]


def _leaf_paths(config: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of a config's values (``optimizer.lr``), in the config's order."""
    out: list[str] = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        out.extend(_leaf_paths(value, path + ".") if isinstance(value, dict) and value else [path])
    return out


def _check_policy_files(spec: Spec, source: Any) -> None:
    """A policy file the spec names must exist: said here with the spec's file, line and field
    (loading it later could only name the missing path, not where the spec asked for it)."""
    missing = [Problem(source.path, source.line_of(("policies", i)), f"policies[{i}]",
                       f"no such policy file or directory: {path}")
               for i, path in enumerate(spec.policy_paths()) if path != "builtin" and not Path(path).exists()]
    if missing:
        raise InputError(missing)


def load_spec(spec: str | os.PathLike | dict | Spec, base_dir: str | os.PathLike | None = None,
              name: str = "<dict>") -> Spec:
    """A spec from a YAML path, a dict or a Spec; InputError naming file, line and field otherwise.

    A dict's relative paths and modules are looked up from ``base_dir`` (default: the working
    directory); ``name`` is the file its problems are reported under (``autofix resume`` passes
    the run directory's copy). A YAML file's own folder is its base.
    """
    if isinstance(spec, Spec):
        return spec
    spec_input = spec
    if isinstance(spec, dict):
        source, base = source_from_data(spec, name), Path(base_dir).resolve() if base_dir else Path.cwd()
    else:
        source, base = load_yaml(Path(spec)), Path(spec).resolve().parent
    if not isinstance(source.data, dict):
        raise InputError([Problem(source.path, 1, "",
                                  f"expected a mapping of spec fields, got {type(source.data).__name__}")])
    extra = source.data.get("python_path", [])
    # Only well-formed entries here: anything else is reported by validation below (file,
    # line, field) instead of crashing in Path() before it (python_path: [1] raised TypeError).
    folders = [Path(base, p) for p in extra if isinstance(p, str) and "\0" not in p] if isinstance(extra, list) else []
    for path in [base] + folders:
        if str(Path(path).resolve()) not in sys.path:
            sys.path.insert(0, str(Path(path).resolve()))
    try:
        spec = Spec.model_validate(source.data)
        spec._base_dir = str(base)
        spec._source = source
        if not isinstance(spec_input, dict):
            _check_policy_files(spec, source)
        return spec
    except pydantic.ValidationError as err:
        problems = problems_from_validation(err, source, Spec)
        raise InputError(sorted(problems, key=lambda p: p.line or 0)) from None


def _non_string_key(value: Any, path: str) -> tuple[str, Any] | None:
    """``(path, key)`` of the first mapping key below ``value`` that is not a string."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, key
            found = _non_string_key(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_string_key(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
