"""One-command benchmark summary: trainer CPU MFU, the smoke ladder's wall time per stage, predictor fit time.

Each figure is a ratio measured within this run where a ratio means something (MFU over the matmul peak
measured in the same process; each stage's share of the whole run; the fit against the `chinchilla` package
on the same points), because these machines are noisy. Runs the three benchmarks as subprocesses:

    .venv/bin/python bench/summary.py [--smoke quick|full] [--out runs/bench-smoke]

`--smoke full` runs `ladder run configs/smoke.py` (the README's main job); `quick` its few-minute variant.
A smoke run directory that already finished is read, not re-run (delete it to time again).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> str:
    print(f"$ {' '.join(argv)}", flush=True)
    t = time.perf_counter()
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    text = out.stdout + out.stderr
    if out.returncode:
        print(text[-3000:])
        raise SystemExit(f"failed ({out.returncode}) after {time.perf_counter() - t:.0f} s")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", choices=("quick", "full"), default="full")
    ap.add_argument("--out", default="runs/bench-smoke")
    args = ap.parse_args()
    py = sys.executable

    mfu = run([py, "bench/bench_train_mfu.py", "--only", "d560"])
    print("\n".join(line for line in mfu.splitlines() if line.startswith("|") or "GFLOP/s" in line))

    config = "configs/smoke.py" + (":quick" if args.smoke == "quick" else "")
    t = time.perf_counter()
    run([py, "-m", "ladder", "run", config, "--out", args.out])
    wall = time.perf_counter() - t
    stages = json.loads((Path(ROOT, args.out) / "stages.json").read_text())
    total = sum(s["seconds"] for s in stages.values())
    print(f"\nsmoke ladder ({config}), {total / 60:.1f} min of stage time ({wall / 60:.1f} min this call):")
    print("| stage | seconds | share |\n|---|---|---|")
    for name, s in stages.items():
        print(f"| {name} | {s['seconds']:.0f} | {s['seconds'] / total:.0%} |")

    fit = run([py, "bench/bench_fit.py"])
    print("\n" + "\n".join(line for line in fit.splitlines() if line.strip()))


if __name__ == "__main__":
    main()
