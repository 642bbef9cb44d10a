"""Time the whole 8-task two-step fit with a 1000-sample bootstrap on the published OLMo ladder, and the
Chinchilla step-1 fit by ladder.laws next to the `chinchilla` package from PyPI (0.2.0), in one run.

    OPENBLAS_NUM_THREADS=1 taskset -c 0,1 .venv/bin/python bench/bench_fit.py [--package-grid coarse|full]

Needs ../shared/reference (skips what is missing). The package (extra `bench`) is optional; without it
only our timings are printed. It minimises the MEAN of its loss over starts with BFGS in long double from
a multiprocessing pool; we give it the same Huber(1e-3) on log residuals and the same Besiroglu grid
(`full`, 4,500 starts) or every other grid value (`coarse`, 3^5 = 243 starts, default: minutes otherwise).
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

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: BLAS threads only contend on 2 cores

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "reference"

from ladder.importers import import_olmo  # noqa: E402
from ladder.laws import parallel  # noqa: E402
from ladder.laws.chinchilla import LOSS_ND, fit_loss  # noqa: E402
from ladder.laws.predict import predict  # noqa: E402
from ladder.results import append_rows, read_table  # noqa: E402


def chinchilla_points():
    with open(SHARED / "chinchilla/chinchilla_fig4_points.csv") as f:
        rows = list(csv.DictReader(f))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(L)[:240]
    return N[keep], C[keep] / (6 * N[keep]), L[keep]


def package_fit(N, D, L, grid: str):
    try:
        from chinchilla import Chinchilla
    except ImportError:
        return None
    step = 2 if grid == "coarse" else 1
    param_grid = {"e": np.arange(-1, 1.5, 0.5)[::step], "a": np.arange(0, 30, 5)[::step],
                  "b": np.arange(0, 30, 5)[::step], "alpha": np.arange(0, 2.5, 0.5)[::step],
                  "beta": np.arange(0, 2.5, 0.5)[::step]}

    def log_huber(y_true, y_pred):
        r = np.log(y_true) - np.log(np.clip(y_pred, 1e-30, None))
        a = np.abs(r)
        return np.where(a <= 1e-3, 0.5 * r * r, 1e-3 * (a - 5e-4))

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "df.csv"), "w") as f:
            f.write("C,N,D,loss\n" + "".join(f"{6 * n * t},{n},{t},{l}\n" for n, t, l in zip(N, D, L)))
        cc = Chinchilla(d, param_grid=param_grid, loss_fn=log_huber, log_level=40)
        t = time.perf_counter()
        cc.fit(parallel=True)
        dt = time.perf_counter() - t
    p = cc.params
    pred = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    r = np.log(pred) - np.log(L)
    obj = float(np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 5e-4)).sum())
    n_starts = int(np.prod([len(v) for v in param_grid.values()]))
    return dt, obj, {k: float(v) for k, v in p.items()}, n_starts


JOBS_LOG: list = []  # [path, ladder.laws.parallel's own _run] while record_jobs is on


def _logged_run(fn, job):
    """parallel._run, logging the job's CPU-s and process (module level: the pool pickles it by name)."""
    t = time.process_time()
    out = JOBS_LOG[1](fn, job)
    with open(JOBS_LOG[0], "a") as f:
        f.write(f"{fn.__name__} {os.getpid()} {time.process_time() - t}\n")
    return out


def record_jobs(path: Path) -> None:
    """Log every fitting job's CPU-s and process to `path` (the forked workers inherit the patched
    ladder.laws.parallel._run): what each worker was busy with, whatever the load on the machine."""
    JOBS_LOG[:] = [path, parallel._run]
    parallel._run = _logged_run


def idle_projection(path: Path, parent_cpu: float) -> str:
    """The wall time on idle cores, from CPU-s: the parent's own CPU plus, per stage (one pool: the back-test
    suite and full fits, then the bootstrap), its busiest worker's. Fork and pickling are left out; loaded
    cores take more CPU-s than idle ones, so under load this overestimates."""
    busy: dict = {}
    for line in path.read_text().splitlines():
        stage, pid, c = line.split()
        busy.setdefault(stage, {}).setdefault(pid, 0.0)
        busy[stage][pid] += float(c)
    stages = {k: sorted(v.values(), reverse=True) for k, v in busy.items()}
    total = parent_cpu + sum(v[0] for v in stages.values())
    return (f"idle-core projection {total:.2f} s = parent {parent_cpu:.2f} + busiest worker per stage ("
            + ", ".join(f"{k}: {' / '.join(f'{x:.2f}' for x in v)} per worker" for k, v in stages.items()) + ")")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package-grid", choices=["coarse", "full"], default="coarse")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--methods", default="paper,ensemble", help="predict methods to time (comma list)")
    ap.add_argument("--workers", type=int, help="processes for predict (default: the cores available)")
    ap.add_argument("--package", action="store_true", help="also time the chinchilla package (a process pool)")
    args = ap.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}")

    if (SHARED / "olmo_ladder").is_dir():
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            append_rows(Path(d) / "olmo.csv", import_olmo(SHARED / "olmo_ladder"))
            cols = read_table(Path(d) / "olmo.csv", validate=True)
        targets = {"7B": (6887575552, 3945065873408), "13B": (13202396160, 5000088518656)}
        # CPU seconds of this process next to wall seconds: on a shared machine the wall clock measures the
        # neighbours; numpy here is single-threaded, so CPU time is what an idle 2-core machine would take.
        # CPU: this process and its finished worker processes (predict spreads tasks over --workers processes)
        def cpu():
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system

        jobs_log = Path(tempfile.mkdtemp()) / "jobs.txt"
        record_jobs(jobs_log)
        for method in args.methods.split(","):
            jobs_log.write_text("")
            t, c, own = time.perf_counter(), cpu(), sum(os.times()[:2])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predict(cols, targets, method=method, n_bootstrap=args.bootstrap, workers=args.workers)
            own = sum(os.times()[:2]) - own
            print(f"OLMo ladder, 8 tasks, {method}, {args.bootstrap}-sample bootstrap, {args.workers or 'all'} "
                  f"worker(s): {time.perf_counter() - t:.2f} s wall, {cpu() - c:.2f} s CPU"
                  + (" (back-test suite included)" if method == "ensemble" else "")
                  + f"; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
            print(f"  {idle_projection(jobs_log, own)}")

    if (SHARED / "chinchilla").is_dir():
        N, D, L = chinchilla_points()
        t = time.perf_counter()
        fit = fit_loss(LOSS_ND, N, D, L)
        ours = time.perf_counter() - t
        print(f"Chinchilla 240 points, ladder.laws (4,500-start grid scored, best 64 descended, L-BFGS polish): "
              f"{ours:.3f} s, objective {fit.objective:.7f}, {LOSS_ND.readable(fit.params)}")
        got = package_fit(N, D, L, args.package_grid) if args.package else None
        if got is None:
            print("chinchilla package: skipped (pass --package; needs pip install '.[bench]')")
        else:
            dt, obj, params, n = got
            print(f"chinchilla==0.2.0 ({n} starts, BFGS, long double, pool of {os.cpu_count()}): {dt:.2f} s, "
                  f"objective (sum of Huber) {obj:.7f}, {params}")
            print(f"ratio package / ladder.laws: {dt / ours:.1f}x"
                  + (f" (package on {n} of 4,500 starts; full grid ~{dt * 4500 / n / ours:.0f}x)" if n < 4500 else ""))


if __name__ == "__main__":
    main()
