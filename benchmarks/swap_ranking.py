"""Which activation swap to try first: each candidate, with its matching initialisation, trained on
deep narrow Keras-style MLPs that vanish, die or overflow (the shipped policies' order comes from here).

    python benchmarks/swap_ranking.py [--seeds 100,101] [--jobs 2] [--out benchmarks/results/swap_ranking]

Models (``benchmarks/zoo/ported.py:keras_mlp``, Keras initialisers, 2-D toy data left as
``make_blobs`` / ``make_circles`` give it, 700 training rows, batch 256, 300 epochs, Adam 1e-3
with Keras' epsilon 1e-7): three families of six, widths 3-10 and 5-17 layers, on seeds that the
ported-models bench does not use (100, 101). Each candidate is the patch the policies launch:
``architecture.activation`` plus ``init`` with the matching scheme (each model uses one kind of
activation, so the ``nonfinite`` scope would swap the same modules). A candidate *heals* a model
when its final val_loss is <= 0.7 x its epoch-0 value and its final val_accuracy is within 0.05 of
the best any candidate reached on that model and seed (the bench judge's rule, with the best
candidate as the reference). Candidates are ranked by runs healed over all families, then by mean
final accuracy (a NaN counts as 0).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_DIR, ZOO_DIR, train_series

sys.path.insert(0, str(ZOO_DIR))  # the models' factory module (ported.py) is validated here

CANDIDATES = {"selu+lecun_normal": ("selu", "lecun_normal"), "tanh+xavier": ("tanh", "xavier"),
              "relu+kaiming": ("relu", "kaiming"), "leaky_relu+kaiming": ("leaky_relu", "kaiming")}
FAMILIES = {
    "vanishing": [  # sigmoid-like stacks: the first layers get no gradient
        ("sigmoid", [5] * 10, "blobs", "glorot_uniform"), ("sigmoid", [4] * 14, "circles", "glorot_uniform"),
        ("hard_sigmoid", [6] * 9, "blobs", "random_uniform"), ("sigmoid", [8] * 12, "circles", "random_normal"),
        ("softsign", [3] * 16, "blobs", "glorot_uniform"), ("sigmoid", [10] * 17, "blobs", "he_normal"),
    ],
    "dead": [  # ReLU stacks too deep and narrow for He's argument: most paths die
        ("relu", [5] * 12, "blobs", "he_normal"), ("relu", [4] * 10, "circles", "he_normal"),
        ("relu", [3] * 8, "blobs", "he_uniform"), ("relu", [5] * 16, "circles", "glorot_uniform"),
        ("relu", [6] * 14, "blobs", "he_normal"), ("relu", [8] * 17, "circles", "he_normal"),
    ],
    "nonfinite": [  # exponential activations: exp(exp(...)) overflows float32 before any step
        ("exponential", [5] * 8, "blobs", "glorot_uniform"), ("exponential", [4] * 6, "circles", "he_normal"),
        ("exponential", [6] * 10, "blobs", "lecun_normal"), ("exponential", [3] * 12, "circles", "glorot_uniform"),
        ("exponential", [8] * 7, "blobs", "he_uniform"), ("exponential", [10] * 5, "blobs", "he_normal"),
    ],
}


def config(model: tuple, seed: int, candidate: str | None) -> dict:
    """The managed training config of one model, patched with ``candidate`` (None: as built)."""
    from autofix.spec.training import TrainingSpec

    act, widths, data, kernel = model
    classes = 3 if data == "blobs" else 2
    cfg = {"model": {"factory": "ported:keras_mlp",
                     "args": {"in_features": 2, "num_classes": classes, "widths": widths, "activation": act,
                              "kernel_initializer": kernel}},
           "data": {"factory": data, "args": {"n_samples": 1000}, "val_fraction": 0.3},
           "optimizer": {"name": "adam", "lr": 1e-3, "kwargs": {"eps": 1e-7}},
           "batch_size": 256, "epochs": 300, "seed": seed}
    if candidate is not None:
        to, scheme = CANDIDATES[candidate]
        cfg["architecture"] = {"activation": to}  # every hidden activation: the models use one kind
        cfg["init"] = {"scheme": scheme}
    return TrainingSpec.model_validate(cfg).model_dump(mode="json")


def _train(job: tuple) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    family, index, seed, candidate = job
    series = train_series(config(FAMILIES[family][index], seed, candidate))
    first, last = series[0], series[-1]
    return {"family": family, "model": index, "seed": seed, "candidate": candidate,
            "first_loss": first["val_loss"], "final_loss": last["val_loss"],
            "final_accuracy": last.get("val_accuracy"),
            "best_accuracy": max((r.get("val_accuracy") or 0.0) for r in series
                                 if r.get("val_accuracy") == r.get("val_accuracy"))}


def _healed(rows: list[dict]) -> None:
    """Mark each row healed against the best candidate on the same model and seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["model"], r["seed"]), []).append(r)
    for group in groups.values():
        best = max(r["best_accuracy"] for r in group)
        for r in group:
            acc = r["final_accuracy"]
            r["healed"] = bool(acc == acc and acc is not None and r["final_loss"] <= 0.7 * r["first_loss"]
                               and acc >= best - 0.05)


def summarize(rows: list[dict]) -> dict:
    """Heal counts and median accuracy per candidate, per family and overall, and the ranking."""
    out: dict = {}
    for family in [*FAMILIES, "all"]:
        part = [r for r in rows if family in ("all", r["family"])]
        out[family] = {}
        for c in CANDIDATES:
            acc = [r["final_accuracy"] or 0.0 for r in part if r["candidate"] == c]
            out[family][c] = {"healed": sum(r["healed"] for r in part if r["candidate"] == c), "runs": len(acc),
                              "median_accuracy": round(statistics.median(acc), 3),
                              "mean_accuracy": round(statistics.mean(acc), 4)}
    out["ranking"] = sorted(CANDIDATES, key=lambda c: (-out["all"][c]["healed"], -out["all"][c]["mean_accuracy"]))
    return out


def markdown(data: dict) -> str:
    s = data["summary"]
    lines = [f"# Swap candidates ranked ({data['date_utc']}, commit {data['commit']})", "",
             f"`{data['command']}`, {data['wall_s']:.0f} s. Healed / runs (median, mean final val_accuracy).", "",
             *([f"Rows trained by `{data['trained']['command']}` at commit {data['trained']['commit']}, "
                f"{data['trained']['date_utc']}, load average {data['trained']['load_avg']}.", ""]
               if data.get("trained") else []),
             "| candidate | " + " | ".join([*FAMILIES, "all"]) + " |", "|---|" + "---|" * (len(FAMILIES) + 1)]
    for c in s["ranking"]:
        cells = [f"{s[f][c]['healed']}/{s[f][c]['runs']} ({s[f][c]['median_accuracy']}, {s[f][c]['mean_accuracy']})"
                 for f in [*FAMILIES, "all"]]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "Ranking: " + " > ".join(s["ranking"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100,101")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(REPO_DIR / "benchmarks/results/swap_ranking"))
    parser.add_argument("--rows", help="summarise the rows of an earlier run's JSON instead of training again")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(f, i, s, c) for f, models in FAMILIES.items() for i in range(len(models)) for s in seeds
            for c in CANDIDATES]
    started = time.time()
    trained = None
    if args.rows:
        earlier = json.loads(Path(args.rows).read_text())
        rows, started = earlier["rows"], time.time() - earlier["wall_s"]
        trained = earlier.get("trained") or {k: earlier[k] for k in ("date_utc", "commit", "command", "load_avg")}
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(_train, jobs))
    _healed(rows)
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                            text=True).stdout.strip()
    data = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "command": "python benchmarks/swap_ranking.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "wall_s": round(time.time() - started, 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "rows": rows, "summary": summarize(rows)}
    if trained:
        data["trained"] = trained  # the rows come from this earlier run
    Path(args.out + ".json").write_text(json.dumps(data, indent=1))
    Path(args.out + ".md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
