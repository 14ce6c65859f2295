"""Bad-input fuzzing of ``autofix run`` and ``autofix policies check`` (a script, not a test).

Generates ``--cases`` inputs with hypothesis (strategies in ``benchmarks/fuzzcases.py``:
mutations of the shipped specs and policy files, empty files, binary junk, invalid UTF-8, YAML
syntax errors, alias bombs, duplicate keys, tabs, deep nesting), runs the CLI in-process on
each and checks the property: exit 2, every message line names the file, no traceback, the
``--output`` directory neither created nor overwritten, no Ray started -- or, for a mutation
that is still valid, exit 0 (``autofix policies check``) or a run that got as far as starting
Ray (stubbed out here; counted as ``accepted``). Every other case running the CLI on an
existing non-empty ``--output`` with ``--overwrite`` checks that a rejected input leaves it
intact. Failures are shrunk by hypothesis to a minimal failing input.

    .venv/bin/python benchmarks/fuzz.py --cases 1000 [--seed N]   # writes benchmarks/results/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hypothesis import HealthCheck, given, seed, settings

import fuzzcases

__all__ = ["fuzz", "main"]

ROOT = Path(__file__).resolve().parent.parent


def _settings(cases: int) -> settings:
    return settings(max_examples=cases, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=False)


def fuzz(cases: int, seed_value: int, workdir: Path) -> dict[str, Any]:
    """Run ``cases`` generated inputs; return the counts and every failing case."""
    counts: Counter = Counter()
    by_category: dict[str, Counter] = defaultdict(Counter)
    failures: list[dict[str, Any]] = []
    slowest: list[tuple[float, str]] = []
    n = 0

    @seed(seed_value)
    @_settings(cases)
    @given(fuzzcases.cases())
    def one(case: fuzzcases.Case) -> None:
        nonlocal n
        n += 1
        outcome = fuzzcases.run_case(case, workdir / f"c{n}", existing_output=n % 2 == 0)
        key = f"{case.kind}/{case.category}"
        verdict = "failed" if outcome.failures else ("accepted" if outcome.started or outcome.exit_code == 0
                                                     else "rejected")
        counts[verdict] += 1
        by_category[key][verdict] += 1
        if verdict == "rejected" and outcome.line_and_field is not None and case.category == "mutated":
            by_category[key]["with file:line: field" if outcome.line_and_field else "without line or field"] += 1
        slowest.append((outcome.seconds, f"{key} {case.note[:80]}"))
        if outcome.failures:
            failures.append({"case": repr(case), "failures": outcome.failures, "exit_code": outcome.exit_code,
                             "stderr": outcome.stderr[-2000:]})

    one()
    slowest.sort(reverse=True)
    return {"cases": n, "counts": dict(counts), "by_category": {k: dict(v) for k, v in sorted(by_category.items())},
            "failures": failures, "slowest_s": [[round(s, 3), what] for s, what in slowest[:5]]}


def shrink(seed_value: int, cases: int, workdir: Path) -> str | None:
    """Search again with failures raised, so hypothesis reports a minimal failing input."""
    count = 0

    @seed(seed_value)
    @_settings(cases)
    @given(fuzzcases.cases())
    def prop(case: fuzzcases.Case) -> None:
        nonlocal count
        count += 1
        outcome = fuzzcases.run_case(case, workdir / f"s{count}")
        assert not outcome.failures, outcome.failures

    try:
        prop()
    except BaseException as exc:  # noqa: BLE001 - hypothesis raises the (shrunk) failure
        notes = "\n".join(getattr(exc, "__notes__", []))
        return f"{type(exc).__name__}: {exc}\n{notes}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/fuzz.py",
                                                 *(argv if argv is not None else sys.argv[1:])])
    os.environ.setdefault("AUTOFIX_HOME", tempfile.mkdtemp(prefix="autofix-fuzz-home-"))  # no user ledger
    import autofix.harness  # noqa: F401 - torch, imported by the first builtin-data spec: not a case's time

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autofix-fuzz-") as tmp:
        result = fuzz(args.cases, args.seed, Path(tmp))
        minimal = shrink(args.seed, args.cases, Path(tmp)) if result["failures"] else None
    seconds = time.perf_counter() - started
    summary = {"command": command, "seed": args.seed, "cpu_count": os.cpu_count(), "seconds": round(seconds, 1),
               **result, "minimal_failure": minimal}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"command: {command}")
    print(f"{result['cases']} cases in {seconds:.1f} s: {result['counts']}")
    for key, count in summary["by_category"].items():
        print(f"  {key:22} {dict(count)}")
    print(f"slowest: {summary['slowest_s'][:3]}")
    for failure in result["failures"][:10]:
        print(f"FAIL {failure['failures']}: {failure['case'][:300]}")
    if minimal:
        print(f"minimal failing input:\n{minimal}")
    print(f"{len(result['failures'])} failure(s); wrote {args.output}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
