"""How far from an optimum do the bootstrap refits stop? Step 1 (chinchilla.refit_loss_many) and single-step
(single_step.refit_many) refits of the default's members on the OLMo ladder, against converged references.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_bootstrap_convergence.py [--samples 200]

The reference of each resample is the lowest objective of: L-BFGS-B (tolerances at machine precision) from
the production refit, from the full fit, and from a few perturbed starts around the production refit. Per
problem (member, form, task): the share of resamples whose production objective is more than 1e-7 (relative)
above the reference, the median and worst relative excess; then per task and target the member's 2.5/97.5
bootstrap percentiles of accuracy from the production refits and from the references, and the ensemble's
reported interval (the bootstrap's united with the conformal band) both ways. Needs ../shared/reference.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "reference"

from ladder.importers import import_olmo  # noqa: E402
from ladder.laws import chinchilla as ch  # noqa: E402
from ladder.laws import single_step as ss  # noqa: E402
from ladder.laws import bootstrap as bootstrap_mod  # noqa: E402
from ladder.laws.bootstrap import _draws  # noqa: E402
from ladder.laws.fitting import key_of, lbfgsb  # noqa: E402
from ladder.laws.predict import predict  # noqa: E402
from ladder.laws.task_results import bootstrap_interval, widen_to_calibration  # noqa: E402
from ladder.results import append_rows, read_table  # noqa: E402

TARGETS = {"7B": (6887575552, 3945065873408), "13B": (13202396160, 5000088518656)}
TOL = 1e-7


def load():
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        append_rows(Path(d) / "olmo.csv", import_olmo(SHARED / "olmo_ladder"))
        return read_table(Path(d) / "olmo.csv", validate=True)


def problems(pred):
    """[(task, member, part, objective factory, bounds, x0 [P], args)]: every step-1 and single-step refit
    problem of the prediction's members."""
    out = []
    for task, fit in pred.fits.items():
        for m, f in fit.members.items():
            data = f.data
            if f.method.single_step == "paper":
                logs = (np.log(data.n), np.log(data.d), np.log(np.maximum(data.acc, ss.ACC_FLOOR)))
                out.append((task, m, "single", lambda w, l=logs: ss._objective(*l, w), ss.BOUNDS, f.single.x,
                            (data.n, data.d, data.acc)))
            elif f.step1 is not None:
                N, D = f._step1_inputs(data.n, data.d, data.fpt)
                logs = (np.log(N), np.log(D), np.log(data.feature))
                out.append((task, m, "step1", lambda w, l=logs, fm=f.form: ch._objective(fm, *l, w, ch.HUBER_DELTA)[0],
                            f.form.bounds, f.step1.x, (N, D, data.feature), f.form))
    return out


def production(prob, W):
    if prob[2] == "single":
        X, f, _ = ss.refit_many(prob[5][None], *(np.asarray(v)[None] for v in prob[6]), W)
    else:
        X, f, _ = ch.refit_loss_many(prob[7], prob[5][None], *(np.asarray(v)[None] for v in prob[6]), W)
    return X[0], f[0]


def reference(prob, W, X, rng, extra_starts=2):
    """Lowest objective per resample over L-BFGS-B runs from the production refit, the full fit, and
    perturbed copies of the production refit (a slow but sure solve)."""
    bounds = list(prob[4])
    Xr, fr = np.empty_like(X), np.empty(len(W))
    for b, w in enumerate(W):
        fun = prob[3](w)
        best = None
        starts = [X[b], prob[5]] + [X[b] + rng.normal(0, 0.05, X.shape[1]) for _ in range(extra_starts)]
        for x0 in starts:
            lo = np.array([-np.inf if l is None else l for l, _ in bounds])
            hi = np.array([np.inf if h is None else h for _, h in bounds])
            x0 = np.clip(x0, lo, hi)
            for _ in range(3):  # restarted with fresh curvature memory until it stops gaining
                r = lbfgsb(fun, x0, bounds, maxiter=20000, gtol=1e-15, ftol=1e-16, maxfun=100000)
                if best is not None and r.fun >= best.fun * (1 - 1e-15) and np.allclose(r.x, x0):
                    break
                if best is None or r.fun < best.fun:
                    best = r
                x0 = r.x
        Xr[b], fr[b] = best.x, best.fun
    return Xr, fr


def timing(cols, n_samples: int, seed: int) -> None:
    """CPU seconds of each part of the default's bootstrap (bootstrap_many's jobs, run serially here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(cols, TARGETS, method="ensemble", n_bootstrap=0, workers=1)
    fits = [f for fit in pred.fits.values() for f in fit.members.values()]
    calls = []
    real = bootstrap_mod.map_jobs

    def record(fn, jobs, state, workers):
        out = []
        for job in jobs:
            t = time.process_time()
            out.append(fn(state, *job))
            calls.append((job[0] + (" " + job[1] if job[0] == "step1" else ""), time.process_time() - t))
        return out

    bootstrap_mod.map_jobs = record
    try:
        bootstrap_mod.bootstrap_many(fits, n_samples, seed, workers=1)
    finally:
        bootstrap_mod.map_jobs = real
    parts: dict = {}
    for k, dt in calls:
        parts[k] = parts.get(k, 0.0) + dt
    print(f"bootstrap, {n_samples} resamples, serial CPU-s: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
          + f"; total {sum(parts.values()):.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the problems, production and reference refits to this pickle")
    ap.add_argument("--timing", type=int, metavar="B", help="only time the bootstrap's parts (CPU-s, serial) "
                                                             "with B resamples, as bench_fit's ensemble runs them")
    args = ap.parse_args()
    cols = load()
    if args.timing:
        return timing(cols, args.timing, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(cols, TARGETS, method="ensemble", n_bootstrap=args.samples, seed=args.seed, workers=1)
    rng = np.random.default_rng(1)
    probs = problems(pred)
    print(f"{len(probs)} refit problems, {args.samples} resamples each")
    print(f"{'task':<16} {'member':<13} {'part':<6} {'>1e-7':>6} {'median':>9} {'worst':>9}  prod CPU-s")
    ref_rows, saved, seen = {}, {}, {}
    for k, prob in enumerate(probs):
        task, m, part = prob[:3]
        W = _draws(len(prob[6][0]), args.samples, args.seed)
        key = key_of([np.asarray(prob[5]), *map(np.asarray, prob[6]), part, getattr(prob[-1], "name", "")])
        if key not in seen:  # equal problems (lm-loss's step 1 of every task) solved once
            t = time.process_time()
            X, f = production(prob, W)
            dt = time.process_time() - t
            Xr, fr = reference(prob, W, X, rng)
            Xr = np.where((fr < f)[:, None], Xr, X)  # the reference is never worse than production
            seen[key] = X, f, np.minimum(fr, f), Xr, dt
        X, f, fr, Xr, dt = seen[key]
        ex = (f - fr) / np.maximum(fr, 1e-300)
        print(f"{task:<16} {m:<13} {part:<6} {np.mean(ex > TOL):6.1%} {np.median(ex):9.2e} {ex.max():9.2e}  {dt:.2f}")
        ref_rows.setdefault(task, {})[m] = {part: Xr}
        if key not in saved:
            saved[key] = {"W": W, "X": X, "Xr": Xr, "fr": fr, "x0": prob[5], "data": prob[6], "part": part,
                          "form": getattr(prob[-1], "name", ""), "name": f"{task} {m}"}
    if args.save:
        with open(args.save, "wb") as fh:
            pickle.dump(list(saved.values()), fh)
    print("\naccuracy intervals (points): member production [lo, hi] -> converged [lo, hi]")
    for task, fit in pred.fits.items():
        samples = pred.samples[task]
        conv = {m: {**samples[m], **ref_rows[task].get(m, {})} for m in samples}
        for name, (N, D) in TARGETS.items():
            for m, f in fit.members.items():
                if m not in ref_rows[task]:
                    continue
                _, acc = f.predict(N, D)
                a = bootstrap_interval(f.predict(N, D, None, samples[m])[1], acc)
                b = bootstrap_interval(f.predict(N, D, None, conv[m])[1], acc)
                print(f"{task:<16} {name:<4} {m:<13} [{100 * a[0]:6.2f}, {100 * a[1]:6.2f}] -> "
                      f"[{100 * b[0]:6.2f}, {100 * b[1]:6.2f}]  (moved {100 * (b[0] - a[0]):+.2f}, {100 * (b[1] - a[1]):+.2f})")
            r0 = pred.results[name][task]
            _, acc = fit.predict(N, D)
            lo, hi = bootstrap_interval(fit.predict(N, D, None, conv)[1], acc)
            r = {"acc": float(acc), "acc_lo": lo, "acc_hi": hi, "loss": np.nan, "distance": r0["distance"]}
            widen_to_calibration(r, pred.calibration)
            print(f"{task:<16} {name:<4} ENSEMBLE      [{100 * r0['acc_lo']:6.2f}, {100 * r0['acc_hi']:6.2f}] -> "
                  f"[{100 * r['acc_lo']:6.2f}, {100 * r['acc_hi']:6.2f}]")


if __name__ == "__main__":
    main()
