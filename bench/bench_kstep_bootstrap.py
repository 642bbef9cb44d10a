"""A k-step bootstrap (Andrews 2002; Davidson & MacKinnon 1999) against today's refits, on the OLMo default.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_kstep_bootstrap.py [--ks 1,2,3,4] [--parts step2,nd,c,single]
        [--show single-step]   (also print that member's 7B-4T percentiles per task, each row)

Each resample's refit takes at most k iterations of its production solver from the full-sample optimum (the
solver's own damped steps, each one trial pass: step 1 `nd` and `c` Newton, `newton.newton_batched`; single-step
IRLS Levenberg-Marquardt, `batched.minimize_batched`; step 2 variable projection, `sigmoid.fit_sigmoid_batched`)
instead of running to its stopping rule. One part is capped at a time, the others as in production. Printed per
part and k: that part's serial CPU-s, and the largest move, over tasks and both targets (7B-4T, 13B-5T), of the
2.5/97.5 bootstrap percentiles of every member and of the ensemble (accuracy points; loss, relative %), and of
the reported intervals (the ensemble's, united with the calibrated band) and their flags. Needs ../shared.

Decision rule (session 10, the brief's, committed before any candidate is adopted; the k = 1..4 measurements
below were seen before it was written down, and it is the brief's rule, not one fitted to them): a change that
moves any printed number is adopted only if
  1. every 7B/13B point estimate (accuracy and loss, all 8 tasks) is bit-identical;
  2. every interval endpoint moves by <= 0.3 accuracy points and <= 1% relative loss, where "every endpoint"
     is each one a user can print: the default's reported interval, and each member's bootstrap percentile
     interval (it is what `--method MEMBER` prints: a single method's interval is its bootstrap alone); the
     ensemble's own bootstrap percentiles are reported too, as the interval the default prints wherever
     the calibrated band is narrower than the bootstrap's;
  3. every flag is unchanged;
  4. bench/backtest_olmo.py still reproduces docs/laws.md's OLMo tables (the back-tests use no bootstrap).
A change that keeps every byte identical needs no rule.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_bootstrap_convergence import TARGETS, load  # noqa: E402

from ladder.laws import bootstrap as bootstrap_mod  # noqa: E402
from ladder.laws import chinchilla as ch  # noqa: E402
from ladder.laws import sigmoid as sg  # noqa: E402
from ladder.laws import single_step as ss  # noqa: E402
from ladder.laws.predict import FittedLadder, _bootstrap_all, predict  # noqa: E402
from ladder.laws.task_results import task_results  # noqa: E402

PARTS = ("step2", "nd", "c", "single")
CAP: dict = {}  # part -> k for the run in progress (none: production)
CPU: dict = {}  # part -> serial CPU-s of its refits in the run in progress


def _capped_solvers():
    """bootstrap.py's three refit entry points, capped at CAP[part] iterations and timed per part."""
    loss, single, sigmoid = ch.refit_loss_many, ss.refit_many, sg.fit_sigmoid_batched

    def timed(part, fn, *a, **k):
        t = time.process_time()
        out = fn(*a, **k)
        CPU[part] = CPU.get(part, 0.0) + time.process_time() - t
        return out

    def refit_loss_many(form, *a, **k):
        if CAP.get(form.name):
            k.update(max_iter=CAP[form.name], more=0)
        return timed(form.name, loss, form, *a, **k)

    def refit_many(*a, **k):
        return timed("single", single, *a, **({**k, "max_iter": CAP["single"]} if CAP.get("single") else k))

    def fit_sigmoid_batched(*a, **k):
        return timed("step2", sigmoid, *a, **({**k, "max_iter": CAP["step2"]} if CAP.get("step2") else k))

    return refit_loss_many, refit_many, fit_sigmoid_batched


def run(pred, cols, ladder, cap: dict, n_samples: int) -> dict:
    """One bootstrap with `cap`: CPU per part, every member's and the ensemble's percentile ends, the report."""
    CAP.clear(), CAP.update(cap), CPU.clear()
    pred.samples = samples = _bootstrap_all(pred.fits, n_samples, 0, 1)
    ends = {}
    for task, fit in pred.fits.items():
        for name, (N, D) in TARGETS.items():
            for m, f in [("ensemble", fit), *fit.members.items()]:
                Lb, ab = f.predict(N, D, None, samples[task] if m == "ensemble" else samples[task][m])
                ends[name, task, m] = (np.percentile(ab, (2.5, 97.5)),
                                       np.percentile(Lb, (2.5, 97.5)) if np.isfinite(Lb).all() else None)
    pred.results = {t: {} for t in TARGETS}
    for task in pred.fits:
        task_results(pred, cols, task, ladder, [], {})
    return {"cpu": dict(CPU), "ends": ends, "reported": copy.deepcopy(pred.results)}


def moves(run_, base) -> dict:
    """The largest moves against production, {who: (acc points, loss %)} (who: a member, the ensemble's
    bootstrap, "reported"), and "same": whether every point estimate and every flag is unchanged."""
    out: dict = {}
    for key, (acc, loss) in run_["ends"].items():
        acc0, loss0 = base["ends"][key]
        da = float(np.max(np.abs(acc - acc0))) * 100
        dl = float(np.max(np.abs(loss / loss0 - 1))) * 100 if loss is not None else 0.0
        a, l_ = out.get(key[2], (0.0, 0.0))
        out[key[2]] = (max(a, da), max(l_, dl))
    ra = rl = 0.0
    points = flags = True
    for t, per in run_["reported"].items():
        for task, r in per.items():
            r0 = base["reported"][t][task]
            ra = max(ra, *(abs(r[k] - r0[k]) * 100 for k in ("acc_lo", "acc_hi")))
            rl = max(rl, *(abs(r[k] / r0[k] - 1) * 100 for k in ("loss_lo", "loss_hi")))
            points &= r["acc"] == r0["acc"] and r["loss"] == r0["loss"]
            flags &= r["flags"] == r0["flags"]
    out["reported"] = (ra, rl)
    out["same"] = f"points {'identical' if points else 'MOVED'}, flags {'identical' if flags else 'changed'}"
    return out


def inside_band(base) -> str:
    """How far inside the reported intervals the ensemble's own bootstrap percentiles lie (the reported one is
    the bootstrap's united with the calibrated band: where the margin is positive, the band decides it)."""
    acc, loss = [], []
    for (t, task, m), (a, L) in base["ends"].items():
        if m == "ensemble":
            r = base["reported"][t][task]
            acc += [(100 * (a[0] - r["acc_lo"]), f"{t} {task} lower"),
                    (100 * (r["acc_hi"] - a[1]), f"{t} {task} upper")]
            loss += [(100 * (L[0] / r["loss_lo"] - 1), f"{t} {task} lower"),
                     (100 * (r["loss_hi"] / L[1] - 1), f"{t} {task} upper")]
    (a, wa), (l_, wl) = min(acc), min(loss)
    return (f"the ensemble's bootstrap percentiles lie inside the reported intervals by at least {a:.2f} accuracy "
            f"points ({wa}) and {l_:.1f}% of the loss ({wl})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="1,2,3,4")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--show", help="also print this member's 7B-4T 2.5/97.5 percentiles per task, each row")
    args = ap.parse_args()
    cols = load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(cols, TARGETS, method="ensemble", n_bootstrap=0, workers=1)
    ladder = FittedLadder.of(cols, pred.runs)
    (bootstrap_mod.refit_loss_many, refit_many, bootstrap_mod.fit_sigmoid_batched) = _capped_solvers()
    bootstrap_mod.ss = type("capped", (), {"refit_many": staticmethod(refit_many)})
    base = run(pred, cols, ladder, {}, args.samples)
    print(f"production, serial CPU-s per part: {', '.join(f'{k} {v:.2f}' for k, v in base['cpu'].items())}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(inside_band(base))
    show = (lambda label, r: print(f"  {args.show} 7B-4T, {label}: " + ", ".join(
        f"{task} {100 * r['ends']['7B', task, args.show][0][0]:.1f}-{100 * r['ends']['7B', task, args.show][0][1]:.1f}"
        for task in pred.fits))) if args.show else (lambda label, r: None)
    show("production", base)
    print("| part | k | its CPU-s (production) | largest end move, acc points / loss %: "
          + " / ".join(("ensemble bootstrap", *next(iter(pred.fits.values())).members, "reported")) + " |")
    for part in args.parts.split(","):
        for k in map(int, args.ks.split(",")):
            r = run(pred, cols, ladder, {part: k}, args.samples)
            mv = moves(r, base)
            members = next(iter(pred.fits.values())).members
            cells = [f"{mv[w][0]:.2f} / {mv[w][1]:.2f}" for w in ("ensemble", *members)]
            print(f"| {part} | {k} | {r['cpu'][part]:.2f} ({base['cpu'][part]:.2f}) | {' | '.join(cells)} | "
                  f"{mv['reported'][0]:.2f} / {mv['reported'][1]:.2f}, {mv['same']} |", flush=True)
            show(f"{part} k={k}", r)


if __name__ == "__main__":
    main()
