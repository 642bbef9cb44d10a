"""Read and fit a large results table: 10^6 rows over 62,500 runs (16 rows per run: 2 tasks x 8 checkpoints).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_results_scale.py [--runs 62500] [--bootstrap 0]
        [--method paper|ensemble|...]

Writes a synthetic table (Chinchilla-shaped task loss, sigmoid accuracy, 2% noise) to a temporary file,
then times ladder.results.read_table(validate=True) and ladder.laws.predict.predict(method=...) on it, in wall
seconds and in CPU seconds of this process and its fit workers (the fair figure on a shared machine), with the load average.
Before the per-run grouping was vectorised (issue 18) the fit compared every run name against every row
(62,500 x 10^6 string comparisons) and was still running after 10 minutes. Figures: docs/results.md;
the default method's, sessions 5 and 6: docs/laws-history.md ("Speed"). Session 6's default figure was taken with
LADDER_FIT_WORKERS=1 (one process) and --method ensemble: 18.4 CPU-s, from 39.7 back to back.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder.laws.predict import predict  # noqa: E402
from ladder.results import read_table  # noqa: E402

TASKS, STEPS = ("task_a", "task_b"), 8


def write_table(path: Path, runs: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e6), np.log(1e9), runs))
    final_d = n * np.exp(rng.uniform(np.log(5), np.log(40), runs))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "n", "d", "step", "task", "loss", "acc"])
        rows = 0
        for r in range(runs):
            for k in range(1, STEPS + 1):
                d = final_d[r] * k / STEPS
                for t, task in enumerate(TASKS):
                    loss = (0.5 + t * 0.1) + 400 / n[r] ** 0.34 + 2000 / d ** 0.28
                    loss *= 1 + 0.02 * rng.standard_normal()
                    acc = 0.25 + 0.7 / (1 + np.exp(6 * (loss - 1.2)))
                    w.writerow([f"run{r}", f"{n[r]:.6g}", f"{d:.6g}", k * 100, task, f"{loss:.6g}", f"{acc:.6g}"])
                    rows += 1
    return rows


def cpu() -> float:
    """CPU seconds of this process and of its finished children (the fit's worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=62_500)
    ap.add_argument("--bootstrap", type=int, default=0)
    ap.add_argument("--method", default="paper", help="paper (default here) or any `ladder predict --method`")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.csv"
        t = time.perf_counter()
        rows = write_table(path, args.runs)
        print(f"wrote {rows:,} rows over {args.runs:,} runs ({path.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s")
        t, c = time.perf_counter(), cpu()
        cols = read_table(path, validate=True)
        print(f"read_table(validate=True): {time.perf_counter() - t:.2f} s wall, {cpu() - c:.2f} s CPU")
        t, c = time.perf_counter(), cpu()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = predict(cols, {"target": (7e9, 1.4e11)}, method=args.method, n_bootstrap=args.bootstrap)
        print(f"predict(method={args.method}, bootstrap={args.bootstrap}) over {len(pred.runs):,} runs, "
              f"{len(TASKS)} tasks: {time.perf_counter() - t:.2f} s wall, {cpu() - c:.2f} s CPU")
        print(f"load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} on "
              f"{os.cpu_count()} cores")
        for task, r in pred.results["target"].items():
            print(f"  {task}: loss {r['loss']:.4f}, acc {r['acc']:.4f}")


if __name__ == "__main__":
    main()
