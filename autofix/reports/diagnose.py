"""``autofix diagnose PATH``: run the symptom detectors and policies on what a run already logged.

No relaunch and no Ray: the per-epoch metrics are read back from files and replayed report by
report through the real :class:`~autofix.rules.engine.Engine` (its detectors, policies, patience,
cooldowns and ledger order), so what it prints is what ``autofix run`` would have done.
``PATH`` is an autofix run directory (``report.json`` + ``tune/``), a Ray Tune experiment
directory (trial folders with ``result.json`` and/or ``progress.csv``), one trial folder, or a
CSV of per-epoch metrics (a header row of metric names).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from autofix.errors import InputError, Problem
from autofix.judge.history import STEP_REPORT, as_float
from autofix.reports.journal import jsonable
from autofix.rules.ledger import Ledger
from autofix.rules.lineage import Outcome
from autofix.rules.policy import PolicySet, load_policies
from autofix.symptoms import Finding, build_detectors

__all__ = ["DiagnosisResult", "PolicyHit", "TrialDiagnosis", "attempt_rows", "diagnose", "format_diagnosis",
           "read_metrics_file", "read_trial_rows"]

DEFAULT_METRICS = ("val_loss", "loss", "train_loss")
RESULT_FILES = ("result.json", "progress.csv")
Rows = dict[int, dict[str, float]]
Kind = Literal["autofix-run", "tune-experiment", "trial", "csv"]
TrialVerdict = Literal["healthy", "sick", "unhealthy"]


class PolicyHit(BaseModel):
    """Where the engine would have acted: the policy that fired, on which finding, at which
    report, and the candidate action it would have launched."""

    policy: str
    symptom: str
    iteration: int
    for_steps: int
    at_end: bool  # pending when the log ended; the engine fires such a policy on an unhealthy finish
    action: str | None


class TrialDiagnosis(BaseModel):
    """The diagnosis of one logged series."""

    name: str
    source: str
    metric: str
    metric_note: str
    reports: int
    first: float | None
    last: float | None
    improvement: float | None
    verdict: TrialVerdict
    findings: list[Finding]  # the first finding of each symptom, as the engine records them
    policies: list[PolicyHit]
    notes: list[str] = []  # policies that matched but could not act, and why (no config: pass --spec)
    alerts: list[dict[str, Any]] = []  # each policy's transitions (pending, firing, resolved), in order


class DiagnosisResult(BaseModel):
    """What :func:`diagnose` found, trial by trial."""

    path: str
    kind: Kind
    policies: list[str]
    policy_count: int
    min_drop: float
    trials: list[TrialDiagnosis]
    isolation: dict[str, Any] = {}  # an autofix run directory's isolation ladder (report.json), if one ran


def diagnose(path: str, spec: str | None = None, policies: list[str] | None = None,
             metric: str | None = None) -> DiagnosisResult:
    """Diagnose a logged run without relaunching it.

    ``spec`` (optional) supplies detector overrides, knob aliases, the loss metric, the success
    bar and the config policies' ``where`` clauses read when the logs carry none. ``policies``
    defaults to the spec's, else ``["builtin"]``. ``metric`` is the loss stream to judge; by
    default ``val_loss``, else ``loss``, else ``train_loss``. Raises :class:`InputError` on bad
    input (missing path, empty or non-numeric CSV, a folder without results).
    """
    from autofix.spec.schema import load_spec

    loaded = load_spec(spec) if spec else None
    metric = metric or (loaded.watched_loss if loaded else None)
    policy_paths = policies or (loaded.policy_paths() if loaded else ["builtin"])
    policy_set = load_policies(policy_paths)
    kind, trials = _discover(Path(path))
    base = loaded.base_config() if loaded else {}
    ctx: dict[str, Any] = {"overrides": loaded.symptom_params() if loaded else {},
                           "aliases": dict(loaded.knobs) if loaded else {},
                           "min_drop": loaded.success.min_drop if loaded else 0.3, "spec": loaded}
    problems: list[Problem] = []
    results = []
    for name, source, rows, config in trials:
        chosen, note = _choose_metric(rows, metric, source, problems)
        if chosen is not None:
            results.append(_diagnose_trial(name, source, rows, config or base, chosen, note, policy_set, ctx))
    if problems:
        raise InputError(problems)
    return DiagnosisResult(path=str(path), kind=kind, policies=[str(p) for p in policy_paths],
                           policy_count=len(policy_set), min_drop=ctx["min_drop"], trials=results,
                           isolation=_recorded_ladder(Path(path)) if kind == "autofix-run" else {})


def _recorded_ladder(run: Path) -> dict[str, Any]:
    """The isolation ladder an autofix run recorded in its report.json (``{}`` when none ran)."""
    try:
        return dict(json.loads((run / "report.json").read_text()).get("isolation") or {})
    except (OSError, ValueError):
        return {}


# -- reading logs --------------------------------------------------------------------------
Trial = tuple[str, str, Rows, dict[str, Any]]


def _discover(path: Path) -> tuple[Kind, list[Trial]]:
    if not path.exists():
        raise InputError([Problem(str(path), None, "PATH", "no such file or directory")])
    if path.is_file():
        return "csv", [(path.stem, str(path), read_metrics_file(path), {})]
    if (path / "report.json").is_file():
        return "autofix-run", _autofix_trials(path)
    if any((path / f).is_file() for f in RESULT_FILES):
        return "trial", [_tune_trial(path)]
    folders = [d for d in sorted(path.iterdir()) if d.is_dir() and _results_file(d)]
    if not folders and (path / "tune").is_dir():
        return _discover(path / "tune")
    if not folders:
        raise InputError([Problem(str(path), None, "PATH", "no result.json or progress.csv here nor in any subfolder;"
                                  " expected an autofix run, a Ray Tune experiment, a trial folder or a CSV")])
    return "tune-experiment", [_tune_trial(d) for d in folders]


def _tune_trial(folder: Path) -> Trial:
    """A trial folder: its reports, and its config from ``params.json`` (for ``where`` clauses)."""
    try:
        config = json.loads((folder / "params.json").read_text())
    except (OSError, ValueError):
        config = {}
    config = {k: v for k, v in config.items() if k != "__autofix__"} if isinstance(config, dict) else {}
    return folder.name, str(folder), read_trial_rows(folder, required=True), config


def _autofix_trials(run: Path) -> list[Trial]:
    from autofix.reports.reporting import Report

    try:
        report = Report.model_validate_json((run / "report.json").read_text())
    except ValueError as err:
        raise InputError([Problem(str(run / "report.json"), None, "", f"not an autofix report: {err}")]) from None
    trials = []
    for a in (a for a in report.attempts if a.trial_id is not None and a.role != "isolation"):  # rungs: no series
        rows, source = attempt_rows(report, run / "tune", a.id), str(run / "tune" / f"{a.id}-{a.trial_id}")
        if not rows:  # no Tune files: the report's own series of the watched metric
            rows = {int(i): {report.metric: float(v)} for i, v in a.series}
            source = f"{run / 'report.json'} (series of {report.metric} only)"
        trials.extend([(a.id, source, rows, a.config)] if rows else [])  # an attempt that never reported
    if not trials:
        raise InputError([Problem(str(run / "report.json"), None, "attempts", "no attempt reported anything")])
    return trials


def attempt_rows(report: Any, tune_dir: str | Path, attempt_id: str) -> Rows:
    """An autofix attempt's per-epoch metrics from Tune's files; a warm restart's parent epochs first.

    ``{}`` when the files are missing or unreadable (callers fall back to the report's series).
    """
    rows: Rows = {}
    attempt = report.attempt(attempt_id)
    while attempt is not None:
        folder = Path(tune_dir) / f"{attempt.id}-{attempt.trial_id}"
        try:
            own = read_trial_rows(folder) if attempt.trial_id else {}
        except InputError:
            own = {}
        cut = min(rows) if rows else math.inf
        rows.update({i: r for i, r in own.items() if i < cut})
        attempt = report.attempt(attempt.parent) if attempt.start == "warm" and attempt.parent else None
    return dict(sorted(rows.items()))


def _results_file(folder: Path) -> Path | None:
    return next((folder / f for f in RESULT_FILES if (folder / f).is_file() and (folder / f).stat().st_size), None)


def read_trial_rows(folder: str | Path, required: bool = False) -> Rows:
    """A Tune trial folder's reports by epoch (else ``training_iteration``): result.json, else progress.csv."""
    file = _results_file(Path(folder))
    if file is None and required:
        raise InputError([Problem(str(folder), None, "", "no non-empty result.json or progress.csv")])
    return read_metrics_file(file) if file else {}


def read_metrics_file(file: Path) -> Rows:
    """Numeric metrics per iteration from JSON lines (``.json``, ``.jsonl``) or a CSV with a header row."""
    records = _json_lines(file) if file.suffix in (".json", ".jsonl") else _csv_records(file)
    rows: Rows = {}
    # reports between epochs (training.step_reports) are no epoch's: charted, never judged
    records = [r for r in records if not _number(r.get(STEP_REPORT))]
    for index, record in enumerate(records):
        row = {k: f for k, v in record.items() if (f := _number(v)) is not None}
        rows[_iteration(row, index)] = row
    if not rows:
        raise InputError([Problem(str(file), None, "", "no reports in the file")])
    if not any(k not in ("epoch", "training_iteration") for r in rows.values() for k in r):
        names = sorted({k for r in records for k in r})
        raise InputError([Problem(str(file), None, "", f"no numeric metric column; columns: {', '.join(names)}")])
    return dict(sorted(rows.items()))


def _json_lines(file: Path) -> list[dict[str, Any]]:
    records = []
    for n, line in enumerate(file.read_text().splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else {}
        except ValueError as err:
            record = str(err)
        if not isinstance(record, dict):
            raise InputError([Problem(str(file), n, "", f"expected one JSON object per line ({record})")])
        records.extend([record] if record else [])
    return records


def _csv_records(file: Path) -> list[dict[str, Any]]:
    with file.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise InputError([Problem(str(file), 1, "", "empty CSV: expected a header row of metric names")])
        return [{k: v for k, v in r.items() if k is not None} for r in reader]


def _number(value: Any) -> float | None:
    try:  # strings too: "nan", "inf", "NaN", "Infinity"
        return float(value) if isinstance(value, str) else as_float(value)
    except ValueError:
        return None


def _iteration(row: dict[str, float], index: int) -> int:
    for key in ("epoch", "training_iteration"):
        if key in row and math.isfinite(row[key]):
            return int(row[key])
    return index


def _choose_metric(rows: Rows, metric: str | None, source: str, problems: list[Problem]) -> tuple[str | None, str]:
    present = {k for r in rows.values() for k in r}
    if metric is not None:
        if metric in present:
            return metric, f"{metric} (as asked)"
    else:
        for name in DEFAULT_METRICS:
            if name in present:
                fallback = "" if name == DEFAULT_METRICS[0] else f"; no {DEFAULT_METRICS[0]} logged"
                return name, f"{name} (default{fallback})"
    wanted = metric or " / ".join(DEFAULT_METRICS)
    problems.append(Problem(source, None, "--metric", f"no '{wanted}' logged; metrics: {', '.join(sorted(present))}"))
    return None, ""


# -- replay --------------------------------------------------------------------------------
def _diagnose_trial(name: str, source: str, rows: Rows, config: dict[str, Any], metric: str, note: str,
                    policies: PolicySet, ctx: dict[str, Any]) -> TrialDiagnosis:
    attempt, fired_at, at_end = _replay(rows, config, metric, policies, ctx)
    values = [v for _, v in attempt.history.series(metric)]
    verdicts: dict[str, TrialVerdict] = {Outcome.HEALTHY: "healthy", Outcome.SICK: "sick"}
    verdict = verdicts.get(attempt.outcome, "unhealthy")
    hits = []
    if attempt.decision is not None:
        d = attempt.decision
        policy = policies.get(d.policy)
        hits.append(PolicyHit(policy=d.policy, symptom=d.finding.symptom, iteration=fired_at,
                              for_steps=policy.for_steps if policy else 0, at_end=at_end, action=d.action))
    return TrialDiagnosis(
        name=name, source=source, metric=metric, metric_note=note, reports=len(values),
        first=values[0] if values else None, last=values[-1] if values else None,
        improvement=_improvement(values), verdict=verdict, policies=hits,
        findings=sorted(attempt.findings, key=lambda f: f.iteration), notes=list(dict.fromkeys(ctx["notes"])),
        alerts=ctx["alerts"],
    )


def _replay(rows: Rows, config: dict[str, Any], metric: str, policies: PolicySet, ctx: dict[str, Any]) -> tuple:
    """Drive the real engine with the logged reports, one attempt: ``(attempt, iteration of its
    last judged report, whether a decision came only when it ended)``."""
    from autofix.rules.engine import Engine, Plan

    spec = ctx["spec"]
    plan = Plan(config=config, metric=metric, loss_metric=metric, min_drop=ctx["min_drop"],
                max_attempts=spec.budget.max_attempts if spec else Plan.max_attempts, aliases=ctx["aliases"],
                soft_min_steps=spec.patience.min_steps if spec else Plan.soft_min_steps,
                soft_share=spec.patience.share if spec else Plan.soft_share)
    ledger = spec.ledger_path() if spec else None
    ranker = Ledger(ledger).ranker() if ledger else None
    notes: list[str] = []
    alerts: list[dict[str, Any]] = []

    def journal(event: str, **data: Any) -> None:  # what the engine could not do, and each policy's state
        if event == "policy_exhausted":
            notes.append(f"{data['policy']}: " + "; ".join(data.get("skipped", [])))
        elif event.startswith("policy_"):
            alerts.append({k: v for k, v in data.items() if k != "attempt"})

    # Slow progress is judged on the run's success bar, as in a run (autofix.tune.runner.assemble).
    overrides = {**ctx["overrides"], "slow_progress": {"min_drop": ctx["min_drop"],
                                                       **ctx["overrides"].get("slow_progress", {})}}
    engine = Engine(plan, build_detectors(metric, overrides), policies, journal=journal, ranker=ranker)
    ctx["notes"], ctx["alerts"] = notes, alerts
    attempt = engine.suggest("diagnosed")
    for iteration, row in rows.items():
        if metric not in row:
            continue  # no report of the watched loss at this iteration
        if engine.observe("diagnosed", iteration, row).stop:
            return attempt, iteration, False
    engine.complete("diagnosed")
    assert attempt is not None  # a0, suggested above
    return attempt, attempt.history.last_iteration, attempt.decision is not None


def _improvement(values: list[float]) -> float | None:
    if len(values) < 2 or not (math.isfinite(values[0]) and math.isfinite(values[-1])):
        return None
    return (values[0] - values[-1]) / (abs(values[0]) or 1.0)


# -- output --------------------------------------------------------------------------------
def format_diagnosis(result: DiagnosisResult, as_json: bool = False) -> str:
    """The diagnosis as readable text, or as JSON (non-finite numbers as "NaN"/"Infinity" strings)."""
    if as_json:
        return json.dumps(jsonable(result.model_dump()), indent=2, allow_nan=False)
    lines = [f"autofix diagnose: {result.path} ({result.kind}); {len(result.trials)} series; "
             f"healthy = loss fell >= {result.min_drop:.0%}, not at chance, no symptom active; "
             f"{result.policy_count} policies from {', '.join(result.policies)}"]
    for t in result.trials:
        gain = f", fell {t.improvement:.1%}" if t.improvement is not None else ""
        lines += [f"\n{t.name}: {t.verdict.upper()}  metric {t.metric_note}, {t.reports} reports, "
                  f"{_g(t.first)} -> {_g(t.last)}{gain}", f"  source: {t.source}"]
        lines += [f"  epoch {f.iteration:>4}  {f.symptom:<22} {f.reason}" for f in t.findings] or ["  no symptom found"]
        for h in t.policies:
            when = "when it ended unhealthy" if h.at_end else f"at epoch {h.iteration}"
            lines.append(f"  autofix would act {when}: {h.policy} (on {h.symptom}, for {h.for_steps} steps): "
                         f"{h.action}")
        lines += [f"  could not act: {n}" for n in t.notes]
        lines += [f"  policy {a['policy']}: {a['from']} -> {a['to']} at step {a['step']:g}" for a in t.alerts]
    lines += _isolation_lines(result.isolation)
    counts = {v: sum(t.verdict == v for t in result.trials) for v in ("sick", "unhealthy", "healthy")}
    lines.append("\n" + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)


def _isolation_lines(ladder: dict[str, Any]) -> list[str]:
    """The run's isolation ladder as its report recorded it (diagnose replays no rung: no Ray)."""
    if not ladder.get("attempt"):
        return []
    if ladder.get("not_applicable"):
        return [f"\nisolation: {ladder['not_applicable']}"]
    cost = ladder.get("cost") or {}
    share = f" = {cost['share']:.1%} of one attempt" if cost.get("share") is not None else ""
    lines = [f"\nisolation ladder on {ladder['attempt']}: {ladder.get('conclusion') or 'not concluded'}"]
    lines += [f"  {r.get('attempt')} {r.get('rung')}: {r.get('conclusion')}" for r in ladder.get("rungs") or []]
    return lines + [f"  cost: {_g(cost.get('examples'))} examples{share}"]


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
