"""Smoke-run the Ray Tune baselines on one zoo case and print one JSON record per method.

    .venv/bin/python benchmarks/methods/smoke.py --case adam_lr_high [--space small|large]
        [--pad-s 0.25] [--seed 0] [--methods asha,pbt,random_repair]

Starts its own Ray the way the bench driver does; the records are
:class:`common.MethodResult` dicts (the bench driver runs the same functions).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: common, spaces, methods

__all__ = ["METHODS", "main"]

METHODS = ("asha", "pbt", "random_repair")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="adam_lr_high")
    parser.add_argument("--space", default="small", choices=("small", "large"))
    parser.add_argument("--pad-s", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    import importlib

    import ray

    from common import Budget, load_cases
    from methods.judging import case_judge

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             logging_level=logging.ERROR)
    try:
        case = load_cases([args.case])[0]
        budget = Budget.for_case(case)
        started = time.monotonic()
        reference = case_judge(case, args.seed).reference_score
        print(json.dumps({"case": case.name, "seed": args.seed, "reference": reference,
                          "reference_s": round(time.monotonic() - started, 1), "budget": vars(budget)}))
        for method in args.methods.split(","):
            run = getattr(importlib.import_module(f"methods.{method}"), f"run_{method}")
            result = run(case, args.seed, args.space, args.pad_s, budget, reference=reference)
            print(json.dumps(result.to_dict()), flush=True)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
