"""The policy-effectiveness ledger: which action healed which symptom, measured across runs.

Every attempt launched to answer a finding is recorded when it ends (healthy or not), in an
append-only JSON-lines file that outlives runs (default ``$AUTOFIX_HOME/ledger.jsonl``,
``~/.autofix`` when unset). When a policy has several candidate actions left, the engine tries
them in the order of their smoothed success rate for that symptom, (healed + 1) / (tried + 2),
counted once a candidate has 5 local outcomes: until then it scores 1/2 and the policy's own
(measured) order decides.

Only verdicts that compare like with like are learnt (:func:`autofix.rules.settle.ledger_outcomes`):
a fix *healed* when it was healthy and beat its parent at the same step count. Rows carry the
ledger :data:`VERSION`; rows written under the old verdicts (a relative rise from an untrained
epoch 0 counted as healed) have none and are ignored.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["MIN_OUTCOMES", "VERSION", "Ledger", "default_ledger_path"]

VERSION = 2
MIN_OUTCOMES = 5
"""Local outcomes a candidate needs before its measured rate may reorder a policy's candidates:
the shipped order was measured on many runs (benchmarks/swap_ranking.py), one or two local
outcomes are noise next to it (our choice)."""


def default_ledger_path() -> Path:
    home = os.environ.get("AUTOFIX_HOME")
    return Path(home) if home else Path.home() / ".autofix"


class Ledger:
    """Append outcomes; rank candidate actions; print the table."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_ledger_path() / "ledger.jsonl"

    def record(self, run: str, attempt: str, symptom: str, policy: str, action: str, healed: bool) -> None:
        """One answered finding and whether the attempt that carried the answer became healthy."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"v": VERSION, "ts": round(time.time(), 3), "run": run, "attempt": attempt, "symptom": symptom,
               "policy": policy, "action": action, "healed": bool(healed)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict[str, Any]]:
        """The rows of this ledger version (older verdicts are ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a killed writer
            if isinstance(row, dict) and row.get("v") == VERSION and {"symptom", "action", "healed"} <= set(row):
                out.append(row)
        return out

    def stats(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """``(symptom, policy, action) -> (tried, healed)``.

        Keyed by policy too: a policy's ``where`` conditions are the context an action was
        tried in (lowering the LR cures dead ReLUs under Adam at 0.1, not under a -6 bias).
        """
        counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for row in self.rows():
            c = counts[(row["symptom"], row.get("policy", ""), row["action"])]
            c[0] += 1
            c[1] += bool(row["healed"])
        return {k: (v[0], v[1]) for k, v in counts.items()}

    def ranker(self):
        """A ``(symptom, policy, [(index, action)]) -> [index]`` function over a snapshot of the stats.

        A candidate's measured rate counts once it has :data:`MIN_OUTCOMES` outcomes here; until
        then it scores the neutral 1/2, so the policy's shipped (measured) order holds.
        """
        stats = self.stats()

        def rank(symptom: str, policy: str, candidates: list) -> list[int]:
            def score(item) -> float:
                tried, healed = stats.get((symptom, policy, item[1].describe()), (0, 0))
                return (healed + 1) / (tried + 2) if tried >= MIN_OUTCOMES else 0.5

            return [i for i, _ in sorted(candidates, key=lambda c: -score(c))]  # stable: policy order on ties

        return rank

    def table(self) -> str:
        stats = self.stats()
        if not stats:
            return f"ledger {self.path}: no outcomes recorded yet"
        lines = [f"ledger {self.path}",
                 f"{'symptom':<22} {'policy':<28} {'tried':>5} {'healed':>6} {'rate':>6}  action"]
        for (symptom, policy, action), (tried, healed) in sorted(
                stats.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1][1] / kv[1][0])):
            lines.append(f"{symptom:<22} {policy:<28} {tried:>5} {healed:>6} {healed / tried:>6.0%}  {action}")
        return "\n".join(lines)
