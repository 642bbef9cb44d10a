"""Single-step's bootstrap refits against solvers that converge them (session 9; none adopted:
docs/laws-history.md, "Single-step's bootstrap refits: solvers tried"). Builds the default's single-step refit
problems on the OLMo ladder (its 8 tasks, the full fits as warm starts, `--samples` resamples of whole runs as
bootstrap_many draws them) and runs, all tasks in one call:

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_single_step_solvers.py [--samples 200] [VARIANT ...]

Variants: `production` (single_step.refit_many: IRLS Levenberg-Marquardt, rtol 1e-6); `irls-soc:RTOL` (the
same solver plus a second-order correction, below, stopping at RTOL); `prox-linear:K[:BP]` (Gauss-Newton with
the Huber loss kept exact in the subproblem, K inner iterations, line searches over the BP nearest kinks, default
8); `prox-linear-soc:K[:BP]` (the same plus the correction); `then` (production's refits finished by prox-linear-soc:2:41); `centred:K:BP` (prox-linear-soc:K:BP, default 2:41, in
y = (a, b, alpha, beta, E', p, q), E' = E + e^(a - alpha c_N) + e^(b - beta c_D) as in
bench_single_step_refits.py, a step that would cross E = -10 stopped on it by bisection, and those refits
continued in x with E on its bound). Per variant: CPU seconds, iterations per resample, and per task the share of resamples more than
1e-7 (relative objective) above the lowest objective any variant reached, the stationarity measure
1/2 g^T D^-1 g / f (D the IRLS matrix over the free coordinates: the gain a majorising step could still
promise, relative), and the member's 2.5/97.5 bootstrap percentiles of accuracy at 7B-4T and 13B-5T. First it
prints the valley: each task's full-data objective with E pinned at its bound -10, against the full fit.
Needs ../shared/reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_bootstrap_convergence import TARGETS, load  # noqa: E402
from ladder.laws import single_step as ss  # noqa: E402
from ladder.laws.batched import robust_loss, robust_value  # noqa: E402
from ladder.laws.bootstrap import _draws  # noqa: E402
from ladder.laws.fitting import lbfgsb  # noqa: E402
from ladder.laws.predict import predict  # noqa: E402

DELTA = ss.HUBER_DELTA
LO = np.array([b[0] for b in ss.BOUNDS])
HI = np.array([b[1] for b in ss.BOUNDS])


def residuals(X, jac, logN, logD, logA):
    return ss._residuals(logN, logD, logA)(X, jac)


# --- prox-linear: min_s sum w rho(r + J s) + 1/2 lam s^T M s over the box, solved exactly (convex) ---------

def _newton_direction(J, w, inside, lam_m, g, fixed):
    P = J.shape[2]
    diag = np.arange(P)
    m = (~fixed).astype(np.float64)
    H = np.matmul(np.swapaxes(J * (w * inside)[..., None], 1, 2), J)
    H[:, diag, diag] += lam_m
    H *= m[:, :, None] * m[:, None, :]
    H[:, diag, diag] += np.where(fixed, 1.0, 0.0)
    return -np.linalg.solve(H, (g * m)[..., None])[..., 0]


def model_step(r0, J, w, lam_m, slo, shi, iters, breakpoints=8):
    """The subproblem: Huber of the linearised residuals plus a diagonal damping lam_m, within slo <= s <= shi.
    Convex and piecewise quadratic: projected Newton steps (coordinates on a bound that the gradient or the
    step pushes out are held), each with an exact line search (the derivative along the direction is piecewise
    linear and increasing; its zero is found among the `breakpoints` nearest points where a residual crosses
+-delta, else the step stops at the last of them).
    Returns s and the undamped model's value there."""
    R, n, P = J.shape
    s, rows = np.zeros((R, P)), np.arange(R)
    for _ in range(iters):
        u = r0 + np.einsum("rnp,rp->rn", J, s)
        psi = np.minimum(np.maximum(u, -DELTA), DELTA)
        inside = np.abs(u) <= DELTA
        g = np.einsum("rn,rnp->rp", w * psi, J) + lam_m * s
        atlo, athi = s <= slo, s >= shi
        fixed = (atlo & (g > 0)) | (athi & (g < 0))
        d = _newton_direction(J, w, inside, lam_m, g, fixed)
        out = (atlo & (d < 0)) | (athi & (d > 0))
        redo = np.flatnonzero(out.any(-1))
        if redo.size:
            fixed[redo] |= out[redo]
            d[redo] = _newton_direction(J[redo], w[redo], inside[redo], lam_m[redo], g[redo], fixed[redo])
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(d > 0, (shi - s) / d, np.where(d < 0, (slo - s) / d, np.inf))
            tmax = np.minimum(np.maximum(room.min(-1), 0.0), 1e6)
            v = np.einsum("rnp,rp->rn", J, d)
            bp = np.concatenate([(DELTA - u) / v, (-DELTA - u) / v], -1)
        bp = np.where((bp > 0) & np.isfinite(bp), bp, np.inf)
        if breakpoints < bp.shape[1]:  # the nearest crossings only: past them the next inner iteration goes on
            bp = np.partition(bp, breakpoints - 1, -1)[:, :breakpoints]
        bp = np.minimum(np.sort(np.concatenate([bp, tmax[:, None]], -1), -1), tmax[:, None])
        sd, dd = (lam_m * s * d).sum(-1), (lam_m * d * d).sum(-1)
        ut = u[:, None, :] + bp[..., None] * v[:, None, :]
        slope = (w[:, None] * np.minimum(np.maximum(ut, -DELTA), DELTA) * v[:, None, :]).sum(-1) + sd[:, None] \
            + bp * dd[:, None]
        slope0 = (w * psi * v).sum(-1) + sd
        k = np.argmax(slope >= 0, -1)
        tb, db = bp[rows, k], slope[rows, k]
        ta = np.where(k > 0, bp[rows, np.maximum(k - 1, 0)], 0.0)
        da = np.where(k > 0, slope[rows, np.maximum(k - 1, 0)], slope0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(db > da, ta - da * (tb - ta) / (db - da), tb)
        t = np.where((slope >= 0).any(-1), np.clip(t, ta, tb), bp[:, -1])
        t = np.where(np.isfinite(t) & (slope0 < 0), t, 0.0)
        s = np.clip(s + t[:, None] * d, slo, shi)
    return s, (w * robust_value(r0 + np.einsum("rnp,rp->rn", J, s), DELTA)).sum(-1)


def prox_linear(X0, W, data, *, inner=2, breakpoints=8, soc=False, max_iter=200, rtol=1e-10,
                residuals=residuals, LO=LO, HI=HI, floor=None):
    """Gauss-Newton with the Huber loss exact in the subproblem (a prox-linear method): the L1-like tails
    keep their kinks in the model, so a step lands where the residuals inside the Huber zone change, not where
    a quadratic majoriser of each tail (IRLS) would stop it. Damping lam diag(J^T W J), Levenberg-Marquardt
    updates by the gain ratio. soc: after the trial x + s, the residuals' departure from their linear
    prediction c = r(x + s) - r - J s is added to the subproblem's residuals and it is solved again; the better
    of the two points is kept (SQP's second-order correction: steps follow a curved valley)."""
    x = np.clip(np.array(X0, dtype=np.float64), LO, HI)
    B, P = x.shape
    n = W.shape[-1]
    lam, done, iters = np.full(B, 1e-4), np.zeros(B, dtype=bool), np.zeros(B, dtype=int)
    f = (W * robust_value(residuals(x, False, *data)[0], DELTA)).sum(-1)
    rA, JA, stale = np.empty((B, n)), np.empty((B, n, P)), np.ones(B, dtype=bool)
    hit = np.zeros(B, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(~done)
        if not idx.size:
            break
        st = idx[stale[idx]]
        if st.size:
            rA[st], JA[st] = residuals(x[st], True, *(d[st] for d in data))
        rows = tuple(d[idx] for d in data)
        w, J, r, xi, fi, li = W[idx], JA[idx], rA[idx], x[idx], f[idx], lam[idx]
        lam_m = li[:, None] * (np.einsum("rn,rnp->rp", w, J * J) + 1e-12)
        s, model = model_step(r, J, w, lam_m, LO - xi, HI - xi, inner, breakpoints)
        pred = fi - model
        # a subproblem cut short (few kinks searched) can promise ~nothing away from a stationary point: those
        # rows solve it again in full before the stop test trusts the promise
        again = np.flatnonzero(pred <= rtol * np.maximum(fi, 1e-300))
        if again.size and (breakpoints < 2 * n or inner < 8):
            s[again], model[again] = model_step(r[again], J[again], w[again], lam_m[again], LO - xi[again],
                                                HI - xi[again], 8, 2 * n)
            pred = fi - model
        xn = np.clip(xi + s, LO, HI)
        rn = residuals(xn, False, *rows)[0]
        fn = (w * robust_value(rn, DELTA)).sum(-1)
        # the correction only where the linear model fell short (a trial that kept 3/4 of its promise needs none)
        bad = np.flatnonzero(~(fi - fn >= 0.75 * pred)) if soc else np.empty(0, dtype=int)
        if bad.size:
            c = rn[bad] - r[bad] - np.einsum("rnp,rp->rn", J[bad], xn[bad] - xi[bad])
            s2, _ = model_step(r[bad] + c, J[bad], w[bad], lam_m[bad], LO - xi[bad], HI - xi[bad], inner, breakpoints)
            xn2 = np.clip(xi[bad] + s2, LO, HI)
            fn2 = (w[bad] * robust_value(residuals(xn2, False, *(d[bad] for d in rows))[0], DELTA)).sum(-1)
            better = np.isfinite(fn2) & ~(fn2 >= fn[bad])
            xn[bad], fn[bad] = np.where(better[:, None], xn2, xn[bad]), np.where(better, fn2, fn[bad])
        if floor is not None:  # (E_of(Y, *rows), bound): a step that crosses E's bound stops on it
            E_of, bound = floor
            cross = np.flatnonzero(E_of(xn, *rows) < bound)
            if cross.size:
                lo_t, hi_t = np.zeros(cross.size), np.ones(cross.size)
                sub = tuple(d[cross] for d in rows)
                for _ in range(40):
                    mid = 0.5 * (lo_t + hi_t)
                    below = E_of(xi[cross] + mid[:, None] * (xn[cross] - xi[cross]), *sub) < bound
                    lo_t, hi_t = np.where(below, lo_t, mid), np.where(below, mid, hi_t)
                xn[cross] = xi[cross] + lo_t[:, None] * (xn[cross] - xi[cross])
                fn[cross] = (w[cross] * robust_value(residuals(xn[cross], False, *sub)[0], DELTA)).sum(-1)
                hit[idx[cross]] = True
        accept = (fn < fi) & np.isfinite(fn)
        gain = np.where(accept, fi - fn, 0.0)
        x[idx], f[idx] = np.where(accept[:, None], xn, xi), np.where(accept, fn, fi)
        if floor is not None:
            hit[idx] &= accept
            done[idx[hit[idx]]] = True
        stale[:] = False
        stale[idx] = accept
        ratio = gain / np.maximum(pred, 1e-300)
        lam[idx] = np.clip(np.where(accept, np.where(ratio > 0.75, li / 4, np.where(ratio < 0.25, li * 2, li)),
                                    li * 4), 1e-12, 1e12)
        iters[idx] += 1
        tiny = rtol * np.maximum(fi, 1e-300)
        done[idx] |= (pred <= tiny) | (lam[idx] >= 1e12) | (accept & (gain <= tiny) & (pred <= 10 * tiny))
    return (x, iters) if floor is None else (x, iters, hit)


def irls_soc(X0, W, data, *, rtol=1e-6, max_iter=2000, soc=True):
    """batched.minimize_batched's iteration (IRLS Levenberg-Marquardt, same damping, acceptance and stop; with
    soc=False it is that solver's, the same objectives: checked) plus the second-order correction above: the
    damped system solved again with the majoriser's gradient at r + c."""
    x = np.clip(np.array(X0, dtype=np.float64), LO, HI)
    B, P = x.shape
    n = W.shape[-1]
    lam, done, iters = np.full(B, 1e-3), np.zeros(B, dtype=bool), np.zeros(B, dtype=int)
    f = (W * robust_value(residuals(x, False, *data)[0], DELTA)).sum(-1)
    rA, JA, cA = np.empty((B, n)), np.empty((B, n, P)), np.empty((B, n))
    gA, HA, stale = np.empty((B, P)), np.empty((B, P, P)), np.ones(B, dtype=bool)
    diag = np.arange(P)
    for _ in range(max_iter):
        idx = np.flatnonzero(~done)
        if not idx.size:
            break
        st = idx[stale[idx]]
        if st.size:
            r, J = residuals(x[st], True, *(d[st] for d in data))
            _, d1, c = robust_loss(r, DELTA)
            rA[st], JA[st], cA[st] = r, J, c
            gA[st] = np.einsum("bn,bnp->bp", W[st] * d1, J)
            HA[st] = np.matmul(np.swapaxes(J * (W[st] * c)[..., None], 1, 2), J)
        rows = tuple(d[idx] for d in data)
        xi, w, fi, li, g, H = x[idx], W[idx], f[idx], lam[idx], gA[idx], HA[idx]
        free = ~(((xi <= LO) & (g > 0)) | ((xi >= HI) & (g < 0)))
        m = free.astype(np.float64)
        A = H * (m[:, :, None] * m[:, None, :])
        A[:, diag, diag] = np.where(free, np.diagonal(H, axis1=1, axis2=2) * (1 + li[:, None]) + li[:, None] * 1e-12, 1.0)
        gm = g * m
        step = -np.linalg.solve(A, gm[..., None])[..., 0]
        xn = np.clip(xi + step, LO, HI)
        rn = residuals(xn, False, *rows)[0]
        fn = (w * robust_value(rn, DELTA)).sum(-1)
        if soc:
            c = rn - rA[idx] - np.einsum("rnp,rp->rn", JA[idx], xn - xi)
            g2 = (g + np.einsum("rn,rnp->rp", w * cA[idx] * c, JA[idx])) * m
            xn2 = np.clip(xi - np.linalg.solve(A, g2[..., None])[..., 0], LO, HI)
            fn2 = (w * robust_value(residuals(xn2, False, *rows)[0], DELTA)).sum(-1)
            better = np.isfinite(fn2) & ~(fn2 >= fn)
            xn, fn = np.where(better[:, None], xn2, xn), np.where(better, fn2, fn)
        accept = (fn <= fi) & np.isfinite(fn)
        gain = np.where(accept, fi - fn, 0.0)
        x[idx], f[idx] = np.where(accept[:, None], xn, xi), np.where(accept, fn, fi)
        stale[:] = False
        stale[idx] = accept
        lam[idx] = np.clip(np.where(accept, li / 3.0, li * 4.0), 1e-12, 1e12)
        iters[idx] += 1
        tiny = rtol * np.maximum(fi, 1e-300)
        done[idx] = (accept & (gain <= tiny)) | (-np.einsum("bp,bp->b", gm, step) <= tiny) | (lam[idx] >= 1e12)
    return x, iters


def stationarity(X, W, data):
    """(objective, 1/2 g^T D^-1 g / objective) per row, D the IRLS matrix over the free coordinates."""
    r, J = residuals(X, True, *data)
    v, d, c = robust_loss(r, DELTA)
    g = np.einsum("bn,bnp->bp", W * d, J)
    free = ~(((X <= LO) & (g > 0)) | ((X >= HI) & (g < 0)))
    m = free.astype(np.float64)
    D = np.matmul(np.swapaxes(J * (W * c)[..., None], 1, 2), J) * (m[:, :, None] * m[:, None, :])
    diag = np.arange(X.shape[1])
    D[:, diag, diag] += np.where(free, 1e-12 * (1 + np.abs(D[:, diag, diag])), 1.0)
    gm = g * m
    f = (W * v).sum(-1)
    return f, 0.5 * np.einsum("bp,bp->b", gm, np.linalg.solve(D, gm[..., None])[..., 0]) / f


def valley(fits):
    """Each task's full-data objective with E pinned at -10 (L-BFGS-B from the full fit moved there) against
    the full fit's, and the two points' accuracy at the targets."""
    print("valley: full-data objective with E pinned at -10 / the full fit's; 7B and 13B accuracy, full fit -> E = -10")
    for task, f in fits.items():
        d = f.data
        logs = (np.log(d.n), np.log(d.d), np.log(np.maximum(d.acc, ss.ACC_FLOOR)))
        fun = ss._objective(*logs, np.ones(len(d.n)))
        bounds = list(ss.BOUNDS)
        bounds[4] = (-10.0, -10.0)
        x = f.single.x.copy()
        x[4] = -10.0
        for _ in range(2):
            x = lbfgsb(fun, x, bounds, maxiter=20000, gtol=1e-15, ftol=1e-16, maxfun=100000).x
        acc = [100 * ss.accuracy(np.stack([f.single.x, x]), np.log([N]), np.log([D]), False)[0][:, 0]
               for N, D in TARGETS.values()]
        print(f"  {task:<14} {fun(x)[0] / fun(f.single.x)[0]:9.4f}   7B {acc[0][0]:6.2f} -> {acc[0][1]:6.2f}   "
              f"13B {acc[1][0]:6.2f} -> {acc[1][1]:6.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("variants", nargs="*", default=["production", "irls-soc:1e-6", "irls-soc:1e-10", "prox-linear:2:41",
                                                    "prox-linear-soc:2:41", "then", "centred:2:41", "centred:2:8"])
    args = ap.parse_args()
    cols = load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = predict(cols, TARGETS, method="single-step", n_bootstrap=0, workers=1).fits
    valley(fits)
    tasks = list(fits)
    x0s = np.array([fits[t].single.x for t in tasks])
    N, D, A = (np.array([getattr(fits[t].data, k) for t in tasks]) for k in ("n", "d", "acc"))
    W1 = _draws(N.shape[1], args.samples, 0)
    U, B = len(tasks), len(W1)
    data = tuple(np.repeat(np.log(np.maximum(v, ss.ACC_FLOOR)), B, 0) for v in (N, D, A))
    W, X0 = np.tile(W1, (U, 1)), np.repeat(x0s, B, 0)
    ends = {}
    for variant in args.variants:
        name, _, arg = variant.partition(":")
        t = time.process_time()
        iters = None
        with np.errstate(all="ignore"):
            if name == "production":
                X = ss.refit_many(x0s, N, D, A, W1)[0].reshape(U * B, -1)
            elif name == "then":  # production's refits finished by prox-linear-soc:2:41
                X = ss.refit_many(x0s, N, D, A, W1)[0].reshape(U * B, -1)
                X, iters = prox_linear(X, W, data, inner=2, breakpoints=41, soc=True)
            elif name == "centred":  # prox-linear-soc:K:BP in y = (a, b, alpha, beta, E', p, q), E unbounded
                k, _, bp = arg.partition(":")
                k, bp = int(k or 2), int(bp or 41)
                from bench_single_step_refits import _to_x, residual_y
                lo, hi = LO.copy(), HI.copy()
                lo[4], hi[4] = -np.inf, np.inf
                def E_of(Y, logN, logD, logA):
                    return _to_x(Y, logN, logD)[:, 4]

                Y, iters, hit = prox_linear(_to_x(X0, data[0], data[1], +1.0), W, data, inner=k, breakpoints=bp,
                                            soc=True, residuals=residual_y, LO=lo, HI=hi, floor=(E_of, -10.0))
                X = _to_x(Y, data[0], data[1])
                X[:, 4] = np.clip(X[:, 4], -10, 10)
                # the refits that reached E = -10 go on in x with E on its bound
                on = np.flatnonzero(hit)
                X[on], it2 = prox_linear(X[on], W[on], tuple(d[on] for d in data), inner=k, breakpoints=bp, soc=True)
                iters[on] += it2
                print(f"centred: {hit.mean():.1%} of refits reached E = -10 and went on in x")
            elif name == "irls-soc":
                X, iters = irls_soc(X0, W, data, rtol=float(arg or 1e-6))
            else:
                k, _, bp = arg.partition(":")
                X, iters = prox_linear(X0, W, data, inner=int(k or 2), breakpoints=int(bp or 8),
                                       soc=name == "prox-linear-soc")
        ends[variant] = (X, time.process_time() - t, iters)
    scores = {v: stationarity(X, W, data) for v, (X, _, _) in ends.items()}
    best = np.min([f for f, _ in scores.values()], 0)
    for v, (X, dt, iters) in ends.items():
        f, left = scores[v]
        ex = ((f - best) / best).reshape(U, B)
        its = "" if iters is None else f", iterations median {np.median(iters):.0f}, p90 {np.percentile(iters, 90):.0f}, max {iters.max()}"
        print(f"\n{v}: {dt:.2f} CPU-s ({U} x {B} refits{its}); stationarity median {np.median(left):.1e}, "
              f"p99 {np.percentile(left, 99):.1e}")
        Xt = X.reshape(U, B, -1)
        for u, task in enumerate(tasks):
            pct = []
            for N_, D_ in TARGETS.values():
                a = 100 * ss.accuracy(Xt[u], np.log([N_]), np.log([D_]), False)[0][:, 0]
                pct.append(f"[{np.percentile(a, 2.5):5.1f}, {np.percentile(a, 97.5):5.1f}]")
            print(f"  {task:<14} >1e-7 above best {np.mean(ex[u] > 1e-7):6.1%}  worst {ex[u].max():8.2e}  "
                  f"7B {pct[0]}  13B {pct[1]}")


if __name__ == "__main__":
    main()
