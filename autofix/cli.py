"""``autofix`` command line: a thin layer over the Python API.

Exit codes: 0 healthy or fixed, 1 unfixed or unverified, 2 bad input (one line per problem, no
traceback, nothing started), 3 a failure outside the user's training (Ray, the cluster, autofix
itself: one line and the file holding the traceback; ``-v`` prints the traceback), 130
interrupted (SIGINT or SIGTERM; ``autofix resume DIR`` continues the run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from autofix.errors import InputError, RunFailed

__all__ = ["EXIT_FAILED", "main"]

EXIT_FAILED = 3  # Ray, the cluster or autofix failed under the run (not the user's training)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autofix", description="Heal training runs whose loss is not decreasing.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a spec, relaunching sick attempts with patched configs")
    run.add_argument("spec", help="path to the run spec (YAML)")
    run.add_argument("--output", "-o", help="run directory (default: runs/NAME-TIMESTAMP)")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded local Ray)")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --output directory")
    run.add_argument("-v", "--verbose", action="store_true", help="show Ray and Tune logs")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    run.add_argument("--plain", action="store_true", help="one line per event, no live table (default off a terminal)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR after its driver died")
    res = sub.add_parser("resume", help="continue a run whose driver died")
    res.add_argument("dir", help="the run directory (--output of the run)")
    res.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded local Ray)")
    res.add_argument("-v", "--verbose", action="store_true", help="show Ray and Tune logs")
    pol = sub.add_parser("policies", help="check or list policy files")
    pol_sub = pol.add_subparsers(dest="policies_command", required=True)
    check = pol_sub.add_parser("check", help="validate policy files; every problem at once")
    check.add_argument("paths", nargs="+")
    check.add_argument("--spec", help="check each where path against this spec's training config or knobs")
    lst = pol_sub.add_parser("list", help="list the policies that would apply")
    lst.add_argument("paths", nargs="*", default=["builtin"])
    test = pol_sub.add_parser("test", help="run policy unit tests (*.test.yaml): series in, decision out")
    test.add_argument("paths", nargs="+")
    explain = pol_sub.add_parser("explain", help="what a policy answers and does")
    explain.add_argument("name")
    explain.add_argument("--policies", nargs="*", default=["builtin"], help="policy files to look in")
    d = sub.add_parser("diagnose", help="run the detectors and policies on an existing run's logs (no relaunch)")
    d.add_argument("path", help="autofix run dir, Ray Tune experiment dir, trial dir, or CSV of per-epoch metrics")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--policies", nargs="*", default=None, help="policy files (default: the spec's, else builtin)")
    d.add_argument("--metric", default=None, help="loss metric (default: val_loss, else loss, else train_loss)")
    d.add_argument("--spec", default=None, help="spec for the config, knobs and symptom overrides")
    schema = sub.add_parser("schema", help="print the JSON Schema of a spec or a policy file")
    schema.add_argument("kind", choices=["spec", "policy"])
    what = sub.add_parser("explain", help="what a symptom, action or policy means, with its defaults")
    what.add_argument("name")
    what.add_argument("--policies", nargs="*", default=["builtin"], help="policy files to look in")
    ledger = sub.add_parser("ledger", help="print the policy-effectiveness ledger")
    ledger.add_argument("--path", help="ledger file (default: $AUTOFIX_HOME/ledger.jsonl, ~/.autofix)")
    return parser


def _resume(args: argparse.Namespace, directory: str) -> int:
    from autofix.reports.progress import Progress
    from autofix.tune.resume import resume

    report = resume(directory, address=args.address, verbose=args.verbose,
                    echo=Progress(metric="", live=False).event)
    print(report.summary())
    return _exit_code(report.status)


def _exit_code(status: str) -> int:
    from autofix.tune.interrupt import EXIT_INTERRUPTED

    return {"healthy": 0, "fixed": 0, "interrupted": EXIT_INTERRUPTED}.get(status, 1)


def _run(args: argparse.Namespace) -> int:
    from autofix.reports.progress import Progress
    from autofix.tune.runner import run

    if args.resume:
        return _resume(args, args.resume)
    if args.quiet:
        report = run(args.spec, args.output, address=args.address, overwrite=args.overwrite, verbose=args.verbose)
    else:
        progress = Progress(metric="", live=False if args.plain else None)
        with progress:
            report = run(args.spec, args.output, address=args.address, overwrite=args.overwrite,
                         verbose=args.verbose, echo=progress.event, observer=progress.report,
                         on_spec=lambda spec: setattr(progress, "metric", spec.metric))
    print(report.summary())
    return _exit_code(report.status)


def _policies(args: argparse.Namespace) -> int:
    from autofix.rules.policy import load_policies
    from autofix.spec.schema import load_spec

    if args.policies_command == "test":
        from autofix.rules.policytest import run_policy_tests

        count, failed, failures = run_policy_tests(args.paths)
        for line in failures:
            print(f"FAIL {line}")
        print(f"{count - failed}/{count} policy tests passed")
        return 1 if failures or count == 0 else 0
    if args.policies_command == "explain":
        return _explain(args.name, args.policies, prefer="policy")
    spec = getattr(args, "spec", None)
    policies = load_policies(args.paths, known=load_spec(spec).known_paths() if spec else None)
    if args.policies_command == "check":
        for problem in policies.warnings:
            print(f"autofix: warning: {problem}", file=sys.stderr)
        print(f"ok: {len(policies)} enabled policies in {len(policies.sources)} file(s)"
              + (f", {len(policies.warnings)} warning(s)" if policies.warnings else ""))
        return 0
    for p in policies:
        actions = " | ".join(a.describe() for a in p.then)
        print(f"{p.name:28} {p.when.symptom:22} for {p.for_steps}  then {actions}")
    return 0


def _explain(name: str, policy_paths: list[str], prefer: str = "symptom") -> int:
    from autofix.reports.explain import explain
    from autofix.rules.policy import load_policies

    policies = load_policies(policy_paths)
    text = explain(name, policies, prefer=prefer)
    if text is None:
        from autofix.actions import ACTIONS
        from autofix.symptoms import SYMPTOMS

        print(f"autofix: error: nothing is called '{name}'; available symptoms: {', '.join(sorted(SYMPTOMS))}; "
              f"actions: {', '.join(sorted(ACTIONS))}; policies: {', '.join(p.name for p in policies)}",
              file=sys.stderr)
        return 2
    print(text)
    return 0


def _ledger(args: argparse.Namespace) -> int:
    from autofix.rules.ledger import Ledger

    print(Ledger(args.path).table())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autofix`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "resume":
            return _resume(args, args.dir)
        if args.command == "ledger":
            return _ledger(args)
        if args.command == "explain":
            return _explain(args.name, args.policies)
        if args.command == "diagnose":
            from autofix.reports.diagnose import diagnose, format_diagnosis

            result = diagnose(args.path, spec=args.spec, policies=args.policies, metric=args.metric)
            print(format_diagnosis(result, args.json))
            return 0
        if args.command == "schema":
            from autofix.reports.explain import json_schema

            print(json_schema(args.kind))
            return 0
        return _policies(args)
    except InputError as err:
        for problem in err.problems:
            print(f"autofix: error: {problem}", file=sys.stderr)
        return 2
    except RunFailed as err:
        where = f"; full traceback: {err.log}" if err.log else ""
        print(f"autofix: error: {err}{where}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("autofix: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `autofix schema spec | head`: the reader left, that is fine
        sys.stderr.close()
        return 0
    except Exception as exc:  # autofix's own bug: one line, the traceback in a file
        if getattr(args, "verbose", False):
            raise
        print(f"autofix: error: {type(exc).__name__}: {exc}; full traceback: {_dump(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _dump(exc: BaseException) -> str:
    """Write the traceback of ``exc`` to a new file in the temp folder; its path."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="autofix-error-", suffix=".log", delete=False) as f:
        f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return f.name


if __name__ == "__main__":
    sys.exit(main())
