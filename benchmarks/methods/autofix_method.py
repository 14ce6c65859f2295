"""autofix as a benchmark method: one ``autofix.run`` of the case's spec, judged independently.

autofix's own success check only decides when it stops; whether and when it healed is decided
by :class:`benchmarks.common.Judge` on every report it produced, in the order they arrived
(an observer on the engine sees each judged report once, so a warm restart's inherited
reports are not counted twice). autofix's knob set is its policy library whatever the search
space, so its result does not depend on ``space``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    LEFT_ALONE,
    ZOO_DIR,
    Budget,
    Case,
    MethodResult,
    case_config,
    changed_keys,
    claim_ok,
    finite,
    is_custom,
    judge_for,
    left_alone,
    load_case_spec,
)

__all__ = ["run_autofix"]


@dataclass
class _Event:
    attempt: str
    iteration: int
    row: dict[str, Any]
    control: bool = False  # a report of the run left alone, continued to compare with: no fix


@dataclass
class _Log:
    """Every judged report, in arrival order, and each attempt's pre-training val_loss."""

    events: list[_Event] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)

    def __call__(self, attempt: Any) -> None:
        row = dict(attempt.history.rows()[attempt.history.last_iteration])
        if attempt.id not in self.baselines:
            # A warm restart continues its parent's curve: judged against the lineage's epoch 0.
            if str(attempt.start).startswith("warm") and attempt.parent in self.baselines:
                self.baselines[attempt.id] = self.baselines[attempt.parent]
            else:
                self.baselines[attempt.id] = float(row.get("val_loss", math.nan))
        self.events.append(_Event(attempt.id, int(attempt.history.last_iteration), row,
                                  getattr(attempt, "role", "") == "control"))


def _spec(case: Case, seed: int, pad_s: float, budget: Budget) -> dict[str, Any]:
    spec = load_case_spec(case)
    spec["config" if is_custom(case) else "training"] = case_config(case, seed, pad_s)
    spec["ledger"] = False  # every run starts from the shipped policies alone
    spec["python_path"] = [str(ZOO_DIR)]  # a dict spec resolves factories from the cwd otherwise
    spec["budget"] = {**(spec.get("budget") or {}), "max_attempts": budget.max_trials,
                      "max_concurrent": 1, "wall_clock_s": 900}
    return spec


def _epoch(row: dict[str, Any]) -> float:
    value = row.get("epoch")
    return float(value) if value is not None else math.nan


def _first_healthy(case: Case, seed: int, log: _Log) -> tuple[int, int, float] | None:
    """(event index, training epochs, trial-seconds) at the first independently healthy report of
    an attempt autofix launched (the run left alone, continued to compare with, is no fix)."""
    judge = judge_for(case, seed)
    epochs, trial_s = 0, 0.0
    for index, event in enumerate(log.events):
        epochs += _epoch(event.row) >= 1
        trial_s += float(event.row.get("time_this_iter_s") or 0.0)
        if not event.control and judge.healthy(event.row, log.baselines[event.attempt]):
            return index, epochs, trial_s
    return None


def _diagnosis(case: Case, first: Any) -> tuple[str | None, int | None]:
    """(symptom autofix acted on first, reports from the fault's onset to a correct finding)."""
    from autofix.symptoms import SYMPTOMS

    def advisory(name: str) -> bool:
        return bool(getattr(SYMPTOMS.get(name), "advisory", False))

    acted = (first.decision or {}).get("finding", {}).get("symptom") if first.decision else None
    flagged = [f for f in first.findings if not advisory(f["symptom"])]
    diagnosis = acted or (flagged[0]["symptom"] if flagged else None)
    correct = [f for f in first.findings if f["symptom"] in case.expect]
    return diagnosis, (int(correct[0]["iteration"]) if correct else None)


def _judge_claim(case: Case, seed: int, report: Any, result: MethodResult) -> None:
    """autofix's verdict against the same run left alone: the kept model must not be worse."""
    key = (case.name, int(seed))
    if key not in LEFT_ALONE:
        LEFT_ALONE[key] = left_alone(case, seed)
    alone = LEFT_ALONE[key]
    kept = next((a for a in report.attempts if a.id == report.keep), None) if report.keep else None
    result.status = report.status
    result.kept_score = finite(kept.last_metrics.get(case.judge_metric)) if kept is not None else None
    result.left_alone = alone["score"]
    result.claim_ok = claim_ok(report.status, result.kept_score, alone)


def _skipped_remedies(journal: Path, result: MethodResult) -> None:
    """Remedies skipped because no knob maps their path (decisions and exhausted policies), and
    how many of them name the path to map (autofix.rules.decisions.knob_hint)."""
    skipped: list[str] = []
    for line in journal.read_text().splitlines() if journal.exists() else []:
        record = json.loads(line)
        if record.get("event") in ("decision", "policy_exhausted"):
            skipped += [s for s in record.get("skipped") or [] if "the config has no" in s]
    result.skipped_remedies = len(skipped)
    result.skipped_hinted = sum("in `knobs` to let autofix" in s for s in skipped)
    result.knob_hints = sorted({s.split("map `", 1)[1].split("`", 1)[0] for s in skipped if "map `" in s})


_LR_PATHS = ("optimizer.lr", "scheduler")


def _built(config: dict[str, Any]) -> Any:
    """The model a trial of ``config`` starts from (its seed; the trial's first batch where the
    harness can take one). Also runs against autofix versions without ``preview_model``."""
    import torch

    try:
        from autofix.harness.assemble import preview_model
    except ImportError:  # an autofix without it (the baseline): the factory, then the config's surgery
        from autofix.harness.builders import build_model, normalize_config

        cfg = normalize_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            return build_model(cfg["model"], cfg.get("architecture"), cfg.get("init"))
    return preview_model(config)


def _head(config: dict[str, Any]) -> list[tuple[str, list]]:
    """The output head of the model ``config`` builds: the last leaf module holding a weight
    matrix and every leaf registered after it (the zoo's models run their leaves in registration
    order), each as its kind and initial parameters."""
    leaves = [m for m in _built(config).modules() if next(m.children(), None) is None]
    last = max((i for i, m in enumerate(leaves) if any(p.dim() >= 2 for p in m.parameters())), default=None)
    if last is None:
        return []
    return [(type(m).__name__, [p.detach().clone() for p in m.parameters()]) for m in leaves[last:]
            if type(m).__name__ != "Identity"]


def _same_head(a: list, b: list) -> bool:
    import torch

    return [k for k, _ in a] == [k for k, _ in b] and all(
        len(pa) == len(pb) and all(torch.equal(x, y) for x, y in zip(pa, pb, strict=False))
        for (_, pa), (_, pb) in zip(a, b, strict=False))


def _head_changes(launched: list, by_id: dict) -> list[str]:
    """Attempts whose output head is not the user's while their config carries no output action."""
    user = by_id["a0"].config
    mine = _head(user)
    out = []
    for attempt in launched:
        config = attempt.config
        if attempt.id == "a0" or (config.get("architecture") or {}).get("output_activation") != (
                (user.get("architecture") or {}).get("output_activation")):
            continue
        try:
            changed = not _same_head(_head(config), mine)
        except (ValueError, TypeError, RuntimeError):  # a model that cannot be built never trained either
            continue
        if changed:
            out.append(attempt.id)
    return out


def _lr_at_init(report: Any, log: _Log) -> int:
    """Decisions answering a loss non-finite since the untrained model's report with an LR patch."""
    count = 0
    for attempt in report.attempts:
        decision = attempt.decision or {}
        patches = [decision.get("patch") or []] + [e.get("patch") or [] for e in decision.get("race") or []]
        if not any(c["path"] in _LR_PATHS for patch in patches for c in patch):
            continue
        rows = [e.row for e in log.events if e.attempt == attempt.id
                and e.iteration <= decision["finding"]["iteration"]]
        losses = [finite(r.get("val_loss")) for r in rows]
        at_init = rows and (rows[0].get("step") == 0 or rows[0].get("epoch") == 0)
        count += bool(at_init and all(v is None for v in losses))
    return count


def run_autofix(case: Case, seed: int, space: str, pad_s: float, budget: Budget) -> MethodResult:
    """Run autofix on ``case`` and judge every report it produced (``space`` is not used)."""
    import autofix

    result = MethodResult(method="autofix", case=case.name, seed=seed, space=space, pad_s=pad_s)
    user_config = case_config(case, seed, pad_s)
    log, out = _Log(), tempfile.mkdtemp(prefix="afb-")
    started = time.monotonic()
    try:
        report = autofix.run(_spec(case, seed, pad_s, budget), output=out, overwrite=True, observer=log)
        _skipped_remedies(Path(out, "journal.jsonl"), result)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result.wall_s = round(time.monotonic() - started, 3)
    # Isolation rungs (issue 18) are experiments on the user's config, not attempts: not counted here
    # (benchmarks/bench_isolation.py counts them and their cost).
    launched = [a for a in report.attempts if a.trial_id is not None and getattr(a, "role", "") != "isolation"]
    by_id = {a.id: a for a in report.attempts}
    result.trials = len(launched)
    result.relaunches = max(0, len(launched) - 1)
    result.warm_restarts = sum(1 for a in launched if str(a.start).startswith("warm"))
    result.total_epochs = sum(1 for e in log.events if _epoch(e.row) >= 1)
    found = _first_healthy(case, seed, log)
    if found is not None:
        index, result.epochs, trial_s = found
        result.healed, result.trial_s = True, round(trial_s, 3)
        result.patch_keys = changed_keys(user_config, by_id[log.events[index].attempt].config)
    first = by_id["a0"]
    result.diagnosis, found_at = _diagnosis(case, first)
    if found_at is not None:
        # Reports counted from the fault's onset (epoch 1, or the late-onset epoch) inclusive.
        epochs = {e.iteration: _epoch(e.row) for e in log.events if e.attempt == "a0"}
        at_epoch = epochs.get(found_at, float(found_at))
        result.detection_reports = max(1, int(at_epoch - (case.onset_epoch or 1) + 1))
    result.first_named = first.decision is not None and result.diagnosis in case.expect and (
        first.decision.get("child") is None)
    result.missing_inputs = len(report.missing_inputs)
    _judge_claim(case, seed, report, result)
    if "model" in by_id["a0"].config:  # the managed harness builds the model; a custom trainable's is its own
        result.head_changed = _head_changes(launched, by_id)
    result.lr_at_init = _lr_at_init(report, log)
    if hasattr(report, "isolation"):  # an autofix with the isolation ladder (issue 18)
        from bench_isolation import measure

        measure(report, result)
    if case.kind == "healthy":
        from autofix.symptoms import SYMPTOMS

        alarms = [f["symptom"] for a in launched for f in a.findings
                  if not getattr(SYMPTOMS.get(f["symptom"]), "advisory", False)]
        # Touched: stopped or relaunched. A finding alone is journaled, not acted on.
        result.false_alarm = first.outcome == "sick" or result.relaunches > 0
        result.notes = f"findings (not acted on unless touched): {sorted(set(alarms))}" if alarms else ""
    ended = report.ended_because.splitlines()[0][:160]  # the no-update advice runs to 20 lines
    result.notes = "; ".join(x for x in (result.notes, f"autofix: {report.status} ({ended})") if x)
    return result
