"""Shared pieces of the sick-zoo benchmark: cases, configs, the independent judge, results.

The judge never uses autofix's detectors: a report is healthy iff its ``val_loss`` fell to at
most 70% of the value before training (epoch 0; the lineage's epoch 0 for a warm restart) and
its judged metric (``val_accuracy``, or ``val_macro_f1`` for imbalanced cases) is within 0.05
of the best score of the case's reference healthy config on the same data and seed.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from patches import apply_overrides, changed_keys, patch_size

__all__ = [
    "BENCH_DIR",
    "LEFT_ALONE",
    "REFERENCE_SCORES",
    "ZOO_DIR",
    "Budget",
    "Case",
    "Judge",
    "MethodResult",
    "apply_overrides",
    "bench_trainable",
    "case_config",
    "case_series",
    "changed_keys",
    "claim_ok",
    "finite",
    "is_custom",
    "judge_for",
    "left_alone",
    "load_case_spec",
    "load_cases",
    "patch_size",
    "preload_worker",
    "ray_runtime_env",
    "reference_config",
    "reference_score",
    "train_series",
    "training_config",
]

BENCH_DIR = Path(__file__).resolve().parent
ZOO_DIR = BENCH_DIR / "zoo"
REPO_DIR = BENCH_DIR.parent
LOSS_DROP = 0.3  # healed: val_loss <= (1 - LOSS_DROP) x val_loss before training
SCORE_SLACK = 0.05  # healed: judged metric >= reference best - SCORE_SLACK
KINDS = ("config", "data_bug", "healthy", "late_onset", "loop_bug")


@dataclass(frozen=True)
class Case:
    """One zoo entry: a broken (or healthy) spec and its ground truth."""

    name: str
    spec: str
    fault: str
    kind: str
    expect: tuple[str, ...] = ()
    judge_metric: str = "val_accuracy"
    reference: dict[str, Any] = field(default_factory=dict)
    onset_epoch: int | None = None
    """late_onset: first epoch of the failure (detection latency counts reports from here)."""
    judge_at: str = "first"
    """'first': any report may be the healthy one; 'final': only a report at the case's last
    epoch counts (late-onset and overfitting cases are healthy early by construction, so only
    finishing healthy is a fix)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides on the spec file's ``training`` (a custom trainable's: its ``config``);
    several cases share one spec file."""
    block: str = "zoo"
    """'zoo': the sick zoo every method runs; 'do-no-harm': autofix against the run left alone;
    'custom-loops': a user's own Tune trainable (spec ``trainable``), autofix only."""
    part: str | None = None
    """Block 'isolation': the part at fault (training_step, model or data; None for a control)."""

    @property
    def spec_path(self) -> Path:
        return ZOO_DIR / self.spec

    @property
    def fixable(self) -> bool:
        """Config-fixable: the cases a repair method should heal."""
        return self.kind in ("config", "late_onset")


def load_cases(names: list[str] | None = None) -> list[Case]:
    """The cases of ``benchmarks/zoo/cases.yaml`` (all, or those named, in file order)."""
    rows = yaml.safe_load((ZOO_DIR / "cases.yaml").read_text())
    cases = []
    for row in rows:
        row = dict(row)
        row["expect"] = tuple(row.get("expect") or ())
        row["reference"] = dict(row.get("reference") or {})
        row["overrides"] = dict(row.get("overrides") or {})
        if row["kind"] not in KINDS:
            raise ValueError(f"cases.yaml: case {row['name']!r}: kind {row['kind']!r} not in {KINDS}")
        cases.append(Case(**row))
    if names:
        known = {c.name for c in cases}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown case(s) {unknown}; known: {sorted(known)}")
        cases = [c for c in cases if c.name in names]
    return cases


def load_case_spec(case: Case) -> dict[str, Any]:
    """The case's spec file as a plain dict (validated by ``autofix.spec.schema.load_spec``)."""
    from autofix.spec.schema import load_spec

    _zoo_on_path()
    load_spec(case.spec_path)  # validates; raises InputError naming file/line/field
    spec = yaml.safe_load(case.spec_path.read_text())
    if case.overrides:  # a shared spec file: each case names itself
        section = "config" if "trainable" in spec else "training"
        spec[section] = apply_overrides(spec[section], case.overrides)
        spec["name"] = case.name.replace("_", "-")
        load_spec(spec, base_dir=ZOO_DIR, name=f"{case.spec_path} (case {case.name})")
    return spec


def training_config(case: Case, seed: int, pad_s: float = 0.0) -> dict[str, Any]:
    """The case's managed training config with ``seed`` and epoch padding set (validated)."""
    from autofix.spec.training import TrainingSpec

    spec = load_case_spec(case)
    if "training" not in spec:
        raise ValueError(f"case {case.name!r}: spec {case.spec} has no managed 'training'")
    raw = {**spec["training"], "seed": int(seed), "min_epoch_s": float(pad_s) if pad_s else None}
    return TrainingSpec.model_validate(raw).model_dump(mode="json")


def is_custom(case: Case) -> bool:
    """The case runs a user's own Tune trainable (spec ``trainable``), not the managed harness."""
    return "trainable" in yaml.safe_load(case.spec_path.read_text())


def case_config(case: Case, seed: int, pad_s: float = 0.0) -> dict[str, Any]:
    """The config attempt a0 runs: the managed ``training`` (:func:`training_config`) or the
    custom trainable's ``config``, with ``seed`` set (a custom loop has no epoch padding)."""
    if not is_custom(case):
        return training_config(case, seed, pad_s)
    return {**load_case_spec(case)["config"], "seed": int(seed)}


def case_series(case: Case, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every report of ``config`` trained in-process (no Ray): the managed harness, or the custom
    trainable's module's ``run_loop(config, report)`` (the bench's convention for zoo loops)."""
    if not is_custom(case):
        return train_series(config)
    import importlib

    _zoo_on_path()
    module = importlib.import_module(load_case_spec(case)["trainable"].split(":")[0])
    series: list[dict[str, Any]] = []
    module.run_loop(config, lambda metrics, _ckpt=None, **position: series.append({**metrics, **position}))
    return series


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, non-numeric, NaN or infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Judge:
    """Independent healthiness check of a metric series (no autofix detector involved)."""

    def __init__(self, case: Case, reference_score: float, baseline: float | None = None,
                 final_epoch: int | None = None) -> None:
        self.metric = case.judge_metric
        self.reference_score = float(reference_score)
        self.baseline = baseline
        """val_loss before training; None: taken from series[0] (override for warm restarts)."""
        self.final_epoch = final_epoch
        """With ``case.judge_at == 'final'``: only a report with this ``epoch`` can be healthy
        (None: the case spec's ``training.epochs``)."""
        if case.judge_at == "final" and final_epoch is None:
            self.final_epoch = int(case_config(case, 0).get("epochs", 15))
        elif case.judge_at != "final":
            self.final_epoch = None

    def healthy(self, report: dict[str, Any], baseline: float) -> bool:
        """One report against a known pre-training val_loss."""
        loss, score = finite(report.get("val_loss")), finite(report.get(self.metric))
        if self.final_epoch is not None and finite(report.get("epoch")) != self.final_epoch:
            return False
        if loss is None or score is None or not math.isfinite(baseline):
            return False
        return loss <= (1 - LOSS_DROP) * baseline and score >= self.reference_score - SCORE_SLACK

    def first_healthy(self, series: list[dict[str, Any]], baseline: float | None = None) -> int | None:
        """Index of the first healthy report; ``series[0]`` is the epoch-0 report."""
        if not series:
            return None
        base = baseline if baseline is not None else self.baseline
        if base is None:
            base = finite(series[0].get("val_loss"))
        if base is None:
            return None
        for index, report in enumerate(series):
            if self.healthy(report, base):
                return index
        return None


@dataclass(frozen=True)
class Budget:
    """The same for every method on a case: trials and total training epochs."""

    max_trials: int
    max_epochs_total: int

    @classmethod
    def for_case(cls, case: Case) -> Budget:
        """autofix's ``budget.max_attempts`` x the case's epochs."""
        spec = load_case_spec(case)
        attempts = int((spec.get("budget") or {}).get("max_attempts", 6))
        epochs = int(case_config(case, 0).get("epochs", 15))
        return cls(max_trials=attempts, max_epochs_total=attempts * epochs)


@dataclass
class MethodResult:
    """What one method did on one case, seed, knob space and padding."""

    method: str
    case: str
    seed: int
    space: str
    pad_s: float
    healed: bool = False
    epochs: int | None = None
    """Training epochs (all trials, epoch 0 excluded) until the first healthy report."""
    trial_s: float | None = None
    """Trial-seconds (sum over trials' reports) until the first healthy report."""
    wall_s: float = 0.0
    trials: int = 0
    patch_keys: list[str] = field(default_factory=list)
    """Changed config keys of the first healthy trial (vs the user's config)."""
    diagnosis: str | None = None
    detection_reports: int | None = None
    relaunches: int = 0
    total_epochs: int = 0
    notes: str = ""
    warm_restarts: int = 0
    false_alarm: bool | None = None
    """Healthy controls only: autofix touched the run (stopped it, or relaunched), None elsewhere."""
    status: str | None = None
    """autofix's verdict (healthy / fixed / unverified / unfixed)."""
    kept_score: float | None = None
    """The judged metric of the model autofix says to keep, at its last report."""
    left_alone: float | None = None
    """The judged metric of the same run left alone, at its planned end."""
    claim_ok: bool | None = None
    """A healthy/fixed claim holds (not below the run left alone - 0.02, not at chance); None: no claim."""
    skipped: bool = False
    """Not run (the bench's time budget ran out before it): excluded from every figure."""
    first_named: bool | None = None
    """autofix: a0's own decision named one of the case's expected symptoms and launched nothing."""
    skipped_remedies: int = 0
    """autofix: remedies skipped because no knob maps their path ..."""
    skipped_hinted: int = 0
    """... and how many of those name the path to map (a knob hint)."""
    knob_hints: list[str] = field(default_factory=list)
    """autofix: the paths its knob hints asked to map."""
    missing_inputs: int | None = None
    """autofix: judgement inputs the trainable did not report (lines told at the first report)."""
    head_changed: list[str] | None = None
    """autofix attempts whose model's output head differs from the user's (module kinds or initial
    weights) although no output action (``architecture.output_activation``) is in their config."""
    lr_at_init: int | None = None
    """Decisions that answered a loss non-finite since before any step with a learning-rate patch."""
    part: str | None = None
    """autofix, block 'isolation': the part it named (its ladder's, else its first attempt's symptom's)."""
    part_attempts: int | None = None
    """... and the user attempts (isolation rungs not counted) until it named it."""
    ladder_rungs: int = 0
    """autofix: isolation rungs run."""
    ladder_share: float | None = None
    """autofix: the ladder's examples processed / one attempt's (planned steps x batch size)."""
    ladder_seconds_share: float | None = None
    """autofix: the rungs' measured seconds / one attempt's trial seconds (scaled to its plan)."""
    lr_init_relaunches: int = 0
    """autofix: launched attempts whose patch changes the learning rate, its schedule or the init."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _zoo_on_path() -> None:
    for path in (str(ZOO_DIR), str(REPO_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)


def bench_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable for the baselines: the managed harness, one torch thread."""
    _zoo_on_path()  # zoo model factories import in the worker too
    import torch

    from autofix.tune.trial import managed_trainable

    torch.set_num_threads(1)
    managed_trainable(config)


def train_series(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the managed harness in-process (no Ray) and return every epoch's report."""
    _zoo_on_path()
    from autofix.harness import run_training

    series: list[dict[str, Any]] = []
    run_training(config, lambda metrics, _ckpt: series.append(dict(metrics)))
    return series


def reference_config(case: Case, seed: int, pad_s: float = 0.0) -> dict[str, Any]:
    """The case's healthy reference config: its config with ``reference`` applied."""
    from autofix.spec.training import TrainingSpec

    config = apply_overrides(case_config(case, seed, pad_s), case.reference)
    return config if is_custom(case) else TrainingSpec.model_validate(config).model_dump(mode="json")


def reference_score(case: Case, seed: int) -> float:
    """Best judged metric of the reference run; raises if the reference fails the judge itself."""
    series = case_series(case, reference_config(case, seed))
    scores = [s for s in (finite(r.get(case.judge_metric)) for r in series[1:]) if s is not None]
    if not scores:
        raise RuntimeError(f"reference of case {case.name!r} (seed {seed}) reported no finite {case.judge_metric}")
    best = max(scores)
    if Judge(case, best).first_healthy(series) is None:
        raise RuntimeError(
            f"reference of case {case.name!r} (seed {seed}) fails the judge: val_loss "
            f"{[round(r['val_loss'], 3) for r in series]}, best {case.judge_metric} {best:.3f}")
    return best


REFERENCE_SCORES: dict[tuple[str, int], float] = {}
"""(case name, seed) -> reference score; the driver fills it once, every method reads it."""

LEFT_ALONE: dict[tuple[str, int], dict[str, float | None]] = {}
"""(case name, seed) -> the same run left alone, at its last epoch: ``score`` (the judged metric)
and ``chance`` (that metric's best-constant-predictor value); the driver fills it once."""

CHANCE_KEY = {"val_accuracy": "chance_accuracy", "val_macro_f1": "chance_macro_f1"}
CLAIM_SLACK = 0.02  # a healthy/fixed claim may not keep a model below the run left alone - this


def left_alone(case: Case, seed: int) -> dict[str, float | None]:
    """The case's own config trained untouched to its planned end: what autofix must not make worse."""
    try:
        last = case_series(case, case_config(case, seed))[-1]
    except RuntimeError:  # a training step that raises (isolation zoo: frozen parameters): nothing to keep
        return {"score": None, "chance": None}
    return {"score": finite(last.get(case.judge_metric)), "chance": finite(last.get(CHANCE_KEY[case.judge_metric]))}


def claim_ok(status: str, kept: float | None, alone: dict[str, float | None]) -> bool | None:
    """Whether a healthy/fixed claim holds: the model kept is not below the run left alone (less
    ``CLAIM_SLACK``) and not at chance (within ``CLAIM_SLACK`` of the constant predictor). None
    when no such claim was made."""
    if status not in ("healthy", "fixed"):
        return None
    if kept is None:
        return False
    floor = alone.get("score")
    chance = alone.get("chance")
    return (floor is None or kept >= floor - CLAIM_SLACK) and (chance is None or kept > chance + CLAIM_SLACK)


def judge_for(case: Case, seed: int) -> Judge:
    """The judge of ``case`` at ``seed`` (trains the reference once per process if needed)."""
    key = (case.name, int(seed))
    if key not in REFERENCE_SCORES:
        REFERENCE_SCORES[key] = reference_score(case, seed)
    return Judge(case, REFERENCE_SCORES[key])


def preload_worker() -> None:
    """Ray worker set-up hook: import torch and the harness when a worker process starts, so
    every method's trials skip the same ~2-4 s of imports (measured on the 2-core machine)."""
    _zoo_on_path()
    import torch

    import autofix.harness  # noqa: F401

    torch.set_num_threads(1)


def ray_runtime_env() -> dict[str, Any]:
    """The runtime env of the bench's Ray (the driver's and every bench worker's ray.init)."""
    return {"worker_process_setup_hook": "common.preload_worker",
            "env_vars": {"PYTHONPATH": f"{BENCH_DIR}:{REPO_DIR}"}}
