"""Solvers tried for single-step's bootstrap refits, against converged references (none kept:
docs/laws-history.md, "Single-step's bootstrap refits: solvers tried"). Reads the problems
`bench_bootstrap_convergence.py --save FILE` writes (their references are L-BFGS-B to machine precision from four
starts) and prints, per task, the share of resamples more than 1e-7 (relative objective) above the reference
and the CPU seconds of each variant (all tasks in one call, as bootstrap_many runs them):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_bootstrap_convergence.py --save /tmp/p.pkl
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_single_step_refits.py /tmp/p.pkl [VARIANT ...]

Variants: `production` (single_step.refit_many: batched.minimize_batched, rtol 1e-6); `irls-tight` (the same
solver, rtol 1e-14, 5,000 iterations); `newton` (ladder.laws.newton on the exact Hessian, 300 iterations, rtol
1e-12, after production's refit); `newton-smooth` (Newton at Huber delta 1e-2, 100 iterations, then at 1e-3,
300); `newton-centred` (Newton in y = (a, b, alpha, beta, E', p, q), E' = E + e^(a - alpha c_N) + e^(b - beta
c_D), the sigmoid's argument at the ladder's mean log N, log D: the valley of E against the scale terms made
straight; E's bound -10 is not a box in y and is left out, so it reports how many refits end below it; 300
iterations, or `newton-centred:ITERS`).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder.laws import batched  # noqa: E402
from ladder.laws import single_step as ss  # noqa: E402
from ladder.laws.newton import newton_batched  # noqa: E402


def curvature(X, J, v, logN, logD):
    """sum_i v[b, i] d2r_i/dx2 [B, 7, 7] of r = log Acc-hat - log Acc: d2r = d2y / y - grad r grad r^T with
    z = t1 + t2 + E, y = p s(z) + q, d2y = s'(e_p dz^T + dz e_p^T) + p s'' dz dz^T + p s' (t1 tau1 tau1^T +
    t2 tau2 tau2^T), tau1 = (1, -log N) on (a, alpha), tau2 = (1, -log D) on (b, beta)."""
    a, b, alpha, beta, E, p, q = (X[:, i: i + 1] for i in range(7))
    t1, t2 = np.exp(a - alpha * logN), np.exp(b - beta * logD)
    s = expit(t1 + t2 + E)
    y = p * s + q
    d1 = s * (1 - s)
    u = np.where(y > ss.ACC_FLOOR, v / np.maximum(y, ss.ACC_FLOOR), 0.0)
    G = np.stack([t1, t2, -t1 * logN, -t2 * logD, np.ones_like(t1)], -1)
    out = -np.matmul(np.swapaxes(J * v[..., None], 1, 2), J)
    out[:, :5, :5] += np.matmul(np.swapaxes(G * (u * p * d1 * (1 - 2 * s))[..., None], 1, 2), G)
    cross = np.einsum("bn,bnk->bk", u * d1, G)
    out[:, 5, :5] += cross
    out[:, :5, 5] += cross
    for (i, j), k, l in (((0, 2), u * p * d1 * t1, logN), ((1, 3), u * p * d1 * t2, logD)):
        out[:, i, i] += k.sum(-1)
        out[:, i, j] -= (k * l).sum(-1)
        out[:, j, i] -= (k * l).sum(-1)
        out[:, j, j] += (k * l * l).sum(-1)
    return out


def residual_x(X, jac, logN, logD, logA):
    return ss._residuals(logN, logD, logA)(X, jac)


def curvature_x(X, r, J, v, logN, logD, logA):
    return curvature(X, J, v, logN, logD)


def newton(X0, W, data, delta=ss.HUBER_DELTA, max_iter=300):
    return newton_batched(residual_x, curvature_x, X0, W, delta=delta, bounds=ss.BOUNDS, max_iter=max_iter,
                          rtol=1e-12, data=data)


def _scales(Y, logN, logD):
    cN, cD = logN.mean(-1), logD.mean(-1)
    return np.exp(Y[:, 0] - Y[:, 2] * cN), np.exp(Y[:, 1] - Y[:, 3] * cD), cN, cD


def _to_x(Y, logN, logD, sign=-1.0):
    c1, c2, _, _ = _scales(Y, logN, logD)
    X = Y.copy()
    X[:, 4] = Y[:, 4] + sign * (c1 + c2)
    return X


def _dx_dy(Y, logN, logD):
    c1, c2, cN, cD = _scales(Y, logN, logD)
    G = np.tile(np.eye(7), (len(Y), 1, 1))
    G[:, 4, 0], G[:, 4, 1], G[:, 4, 2], G[:, 4, 3] = -c1, -c2, c1 * cN, c2 * cD
    return G


def residual_y(Y, jac, logN, logD, logA):
    r, J = residual_x(_to_x(Y, logN, logD), jac, logN, logD, logA)
    return (r, None) if not jac else (r, np.matmul(J, _dx_dy(Y, logN, logD)))


def curvature_y(Y, r, Jy, v, logN, logD, logA):
    """G^T S_x G + (dF/dE) d2E/dy2: E = E' - c1 - c2 is the only coordinate of x curved in y."""
    X, G = _to_x(Y, logN, logD), _dx_dy(Y, logN, logD)
    _, Jx = residual_x(X, True, logN, logD, logA)
    S = np.matmul(np.swapaxes(G, 1, 2), np.matmul(curvature(X, Jx, v, logN, logD), G))
    gE = np.einsum("bn,bn->b", v, Jx[..., 4])
    c1, c2, cN, cD = _scales(Y, logN, logD)
    for (i, j), k, c in (((0, 2), -gE * c1, cN), ((1, 3), -gE * c2, cD)):
        S[:, i, i] += k
        S[:, i, j] -= k * c
        S[:, j, i] -= k * c
        S[:, j, j] += k * c * c
    return S


def run(variant, x0s, N, D, A, W):
    U, B = len(x0s), len(W)
    data = tuple(np.repeat(np.log(np.maximum(v, ss.ACC_FLOOR)), B, 0) for v in (N, D, A))
    WW, X0 = np.tile(W, (U, 1)), np.repeat(x0s, B, 0)
    below = None
    if variant == "production":
        _, f, _ = ss.refit_many(x0s, N, D, A, W)
    elif variant == "irls-tight":
        _, f, _ = batched.minimize_batched(residual_x, X0, WW, delta=ss.HUBER_DELTA, bounds=ss.BOUNDS,
                                           max_iter=5000, rtol=1e-14, data=data)
    elif variant == "newton":
        X, _, _ = ss.refit_many(x0s, N, D, A, W)
        _, f, _ = newton(X.reshape(U * B, 7), WW, data)
    elif variant == "newton-smooth":
        X, _, _ = newton(X0, WW, data, delta=1e-2, max_iter=100)
        _, f, _ = newton(X, WW, data)
    else:  # newton-centred[:iterations]
        bounds = list(ss.BOUNDS)
        bounds[4] = (None, None)
        Y, f, _ = newton_batched(residual_y, curvature_y, _to_x(X0, data[0], data[1], +1.0), WW,
                                 delta=ss.HUBER_DELTA, bounds=bounds, rtol=1e-12, data=data,
                                 max_iter=int(variant.partition(":")[2] or 300))
        below = (_to_x(Y, data[0], data[1])[:, 4] < ss.BOUNDS[4][0]).reshape(U, B)
    return f.reshape(U, B), below


def main():
    probs = [p for p in pickle.load(open(sys.argv[1], "rb")) if p["part"] == "single"]
    x0s = np.array([p["x0"] for p in probs])
    N, D, A = (np.array([p["data"][k] for p in probs]) for k in range(3))
    W = probs[0]["W"]
    for variant in sys.argv[2:] or ("production", "irls-tight", "newton", "newton-smooth", "newton-centred"):
        t = time.process_time()
        f, below = run(variant, x0s, N, D, A, W)
        dt = time.process_time() - t
        print(f"{variant}: {dt:.2f} CPU-s")
        for u, p in enumerate(probs):
            ex = (f[u] - p["fr"]) / p["fr"]
            extra = "" if below is None else (f"  E < -10: {below[u].mean():5.1%} (reference on E's bound: "
                                              f"{np.mean(p['Xr'][:, 4] <= ss.BOUNDS[4][0] + 1e-6):5.1%}); "
                                              f">1e-7 of the others {np.mean(ex[~below[u]] > 1e-7):5.1%}")
            print(f"  {p['name']:<26} >1e-7 {np.mean(ex > 1e-7):6.1%}  median {np.median(ex):9.2e}  "
                  f"worst {ex.max():9.2e}{extra}")


if __name__ == "__main__":
    main()
