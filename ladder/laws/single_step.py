"""The paper's single-step ablation: accuracy straight from (N, D), no intermediate loss.

    Acc(N, D) = p / (1 + exp(-(A / N^alpha + B / D^beta + E))) + q      Bhagia et al. 2024, §5 (eq. in the
                                                                       single-step ablation; OLMo `combined_fit`)

Seven parameters (a = log A, b = log B, alpha, beta, E, p, q): the sigmoid's slope and midpoint are absorbed
into A, B and E. Fitted like the authors' code (scripts/scaling/single_step.py): the SUM over the runs' final
points of Huber(delta = 1e-3) of log Acc-hat - log Acc, L-BFGS-B within their bounds, from their start
(3, 5, 0.2, 0.3, 0, chance - 1, 1). We add a few more starts, descend and settle every start to its
optimum (Levenberg-Marquardt, then Newton: SETTLE) before L-BFGS-B, and keep the lowest objective (the same
objective; the authors' start is settled too, so the answer does not hang on the last bits of the
arithmetic: `_polish`). Formulas and sources: docs/laws.md.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import expit

from ladder.laws.chinchilla import SEARCH_POINTS
from ladder.laws.batched import minimize_batched
from ladder.laws.fitting import FitResult, huber
from ladder.laws.newton import newton_batched
from ladder.laws.polish import minimize_from_grid_many

NAMES = ("a", "b", "alpha", "beta", "E", "p", "q")
BOUNDS = ((0.0, 10.0), (0.0, 10.0), (0.0, 1.0), (0.0, 1.0), (-10.0, 10.0), (-0.9999, 0.0), (0.0, 1.0))
HUBER_DELTA = 1e-3
ACC_FLOOR = 1e-6  # the authors clip Acc-hat at 1e-6 before the log


def accuracy(X: np.ndarray, logN: np.ndarray, logD: np.ndarray, jac: bool = True):
    """Acc-hat [B, n] for parameter rows X [B, 7] and its Jacobian [B, n, 7] (None unless jac)."""
    X = np.atleast_2d(X)
    a, b, alpha, beta, E, p, q = (X[:, i : i + 1] for i in range(7))
    t1, t2 = np.exp(a - alpha * logN), np.exp(b - beta * logD)
    s = expit(t1 + t2 + E)
    y = p * s + q
    if not jac:
        return y, None
    dz = p * s * (1 - s)
    J = np.empty(y.shape + (7,))  # filled column by column: no stacked temporaries (same values)
    J[..., 0], J[..., 1] = dz * t1, dz * t2
    J[..., 2], J[..., 3] = -dz * t1 * logN, -dz * t2 * logD
    J[..., 4], J[..., 5], J[..., 6] = dz, s, 1.0
    return y, J


def _residuals(logN, logD, logA):
    def residual_fn(X, jac=True):
        y, J = accuracy(X, logN, logD, jac)
        yc = np.maximum(y, ACC_FLOOR)
        r = np.log(yc) - logA
        if not jac:
            return r, None
        J *= ((y > ACC_FLOOR) / yc)[..., None]
        return r, J
    return residual_fn


def _trial_value(X, logN, logD, logA):
    """`_residuals`' r at rows X (no Jacobian) and what its Jacobian needs, [B, 4, n] = (t1, t2, s, r), so an
    accepted trial's Jacobian pass (`_trial_jacobian`) takes no exp, expit or log again (minimize_batched's
    `trial`); the same operations in the same order as `accuracy` and `_residuals`, so the same bits."""
    a, b, alpha, beta, E, p, q = (X[:, i : i + 1] for i in range(7))
    t1, t2 = np.exp(a - alpha * logN), np.exp(b - beta * logD)
    s = expit(t1 + t2 + E)
    r = np.log(np.maximum(p * s + q, ACC_FLOOR)) - logA
    return r, np.stack([t1, t2, s, r], 1)


def _trial_jacobian(X, kept, logN, logD, logA):
    """(r, J) of `_residuals` at rows X from `_trial_value`'s intermediates there (bit for bit: tested)."""
    p, q = X[:, 5:6], X[:, 6:7]
    t1, t2, s, r = kept[:, 0], kept[:, 1], kept[:, 2], kept[:, 3]
    y = p * s + q
    dz = p * s * (1 - s)
    J = np.empty(y.shape + (7,))
    J[..., 0], J[..., 1] = dz * t1, dz * t2
    J[..., 2], J[..., 3] = -dz * t1 * logN, -dz * t2 * logD
    J[..., 4], J[..., 5], J[..., 6] = dz, s, 1.0
    J *= ((y > ACC_FLOOR) / np.maximum(y, ACC_FLOOR))[..., None]
    return r, J


def _curvature(X, r, J, v, logN, logD, logA):
    """sum_i v[b, i] d2r_i/dx2 [B, 7, 7] of the log residuals r = log(p s + q) - log Acc at rows X (r, J from
    `_residuals`; v = w rho'(r)), for ladder.laws.newton's exact Hessian: d2r = d2y / y - J J^T, where y's
    second derivatives come from s'' = s'(1 - 2s) along z = t1 + t2 + E, from z's own (t1 and t2 are
    exponentials of a - alpha log N and b - beta log D), and from p's s'. Zero below ACC_FLOOR (as J)."""
    a, b, alpha, beta, E, p, q = (X[:, i : i + 1] for i in range(7))
    t1, t2 = np.exp(a - alpha * logN), np.exp(b - beta * logD)
    s = expit(t1 + t2 + E)
    y = p * s + q
    u = v * (y > ACC_FLOOR) / np.maximum(y, ACC_FLOOR)      # v / y where the residual is alive
    ds = s * (1 - s)
    dz = np.stack([t1, t2, -t1 * logN, -t2 * logD, np.ones_like(t1)], -1)   # dz/d(a, b, alpha, beta, E)
    out = -np.matmul(np.swapaxes(J * v[..., None], 1, 2), J)
    out[:, :5, :5] += np.matmul(np.swapaxes(dz * (u * p * ds * (1 - 2 * s))[..., None], 1, 2), dz)
    k = u * p * ds                                          # times z's second derivatives
    c1, c2 = np.einsum("bn,bn->b", k, t1), np.einsum("bn,bn->b", k, t2)
    n1 = np.einsum("bn,bn->b", k, t1 * logN)
    n2 = np.einsum("bn,bn->b", k, t2 * logD)
    out[:, 0, 0] += c1
    out[:, 1, 1] += c2
    out[:, 0, 2] -= n1
    out[:, 2, 0] -= n1
    out[:, 1, 3] -= n2
    out[:, 3, 1] -= n2
    out[:, 2, 2] += np.einsum("bn,bn->b", k, t1 * logN * logN)
    out[:, 3, 3] += np.einsum("bn,bn->b", k, t2 * logD * logD)
    cross = np.einsum("bn,bnp->bp", u * ds, dz)             # d2y/dp dz-params = s' dz
    out[:, 5, :5] += cross
    out[:, :5, 5] += cross
    return out


def _huber_terms(x, logN, logD, logA):
    """The Huber values and derivatives of the log residuals and the Jacobian of the accuracy (zero below
    ACC_FLOOR), at one parameter row (scalars; points [n]) or a column per parameter ([m, 1]; points [m, n]):
    the same elementwise operations either way, so both objectives below give the same bits."""
    a, b, alpha, beta, E, p, q = x
    t1, t2 = np.exp(a - alpha * logN), np.exp(b - beta * logD)
    s = expit(t1 + t2 + E)
    y = p * s + q
    yc = np.maximum(y, ACC_FLOOR)
    r = np.log(yc) - logA
    dz = p * s * (1 - s)
    J = np.empty(np.shape(s) + (7,))
    J[..., 0], J[..., 1] = dz * t1, dz * t2
    J[..., 2], J[..., 3] = -dz * t1 * logN, -dz * t2 * logD
    J[..., 4], J[..., 5], J[..., 6] = dz, s, 1.0
    J *= ((y > ACC_FLOOR) / yc)[..., None]
    v, d = huber(r, HUBER_DELTA)
    return v, d, J


def _objective(logN, logD, logA, w):
    """fun_and_grad(x) -> (sum w Huber(r), gradient) of one fit, for L-BFGS-B: `accuracy` and `_residuals`
    for a single parameter row, the same operations in the same order (so the same digits: tested), without
    the batch axis. The polishes call it ~40,000 times per ensemble fit, where the batch axis's bookkeeping
    cost more than the arithmetic on 16 points."""

    def fun_and_grad(x):
        v, d, J = _huber_terms(x, logN, logD, logA)
        return float(w @ v), J.T @ (w * d)

    return fun_and_grad


def _objective_rows(problems):
    """fun_and_grad_rows(X [m, 7], which [m]) for ladder.laws.polish: row i is `_objective(*problems[which[i]])`
    at X[i], bit for bit (the same elementwise operations in the same order on rows of equally many points,
    the sums by the same BLAS call per row). problems: (logN, logD, logA, w), one per fit."""
    sizes = np.array([len(p[2]) for p in problems])
    groups = {}  # points -> (problem indices, stacked data [U, n] x 4)
    for n in np.unique(sizes):
        us = np.flatnonzero(sizes == n)
        groups[int(n)] = (us, tuple(np.stack([problems[u][k] for u in us]) for k in range(4)))
    slot = np.empty(len(problems), dtype=np.int64)
    for us, _ in groups.values():
        slot[us] = np.arange(len(us))

    def fun_and_grad_rows(X, which):
        F, G = np.empty(len(X)), np.empty(X.shape)
        for n, (us, data) in groups.items():
            sel = np.flatnonzero(sizes[which] == n)
            if not sel.size:
                continue
            logN, logD, logA, w = (d[slot[which[sel]]] for d in data)
            v, d, J = _huber_terms([X[sel, i : i + 1] for i in range(7)], logN, logD, logA)
            # per row the BLAS calls of the one-row objective's w @ v and J.T @ (w d): the stacked matmul
            # makes the same call for each row (checked bit for bit, tests/test_laws.py)
            F[sel] = np.matmul(w[:, None, :], v[:, :, None])[:, 0, 0]
            G[sel] = np.matmul(J.transpose(0, 2, 1), (w * d)[:, :, None])[..., 0]
        return F, G

    return fun_and_grad_rows


def starts(chance: float | None) -> np.ndarray:
    """The authors' start first, then a small grid around it (exponents, E, floor)."""
    p0 = (chance if chance is not None else 0.25) - 1.0
    first = [[3.0, 5.0, 0.2, 0.3, 0.0, p0, 1.0]]
    grid = [[a, b, al, be, e, p0, 1.0] for a, b, al, be, e in
            itertools.product((2.0, 5.0), (3.0, 7.0), (0.1, 0.3), (0.1, 0.3), (-2.0, 0.0))]
    return np.array(first + grid, dtype=np.float64)


def fit_single_step(N, D, acc, chance: float | None, *, weights=None, top_k: int = 4) -> FitResult:
    """Fit the 7-parameter single-step law to final points (N, D, acc)."""
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[None]
    return fit_single_step_many(N, D, acc, chance, w, top_k=top_k)[0]


def fit_single_step_many(N, D, acc, chance: float | None, weights=None, *, top_k: int = 4) -> list[FitResult]:
    """`fit_single_step` for S weightings of the same points (weights [S, n]; 0 leaves a run out): the
    descents of all splits share numpy passes, each is polished alone (as chinchilla.fit_loss_many). One
    problem of `fit_single_step_tasks`."""
    return fit_single_step_tasks([(N, D, acc, chance, weights)], top_k=top_k)[0]


def fit_single_step_tasks(problems, *, top_k: int = 4) -> list[list[FitResult]]:
    """`fit_single_step_many` for U problems (N, D, acc, chance, weights) at once, e.g. one per task: the
    batched descents of all problems with equally many points share one solver call (each row carries its
    problem's points), and each problem's fits are those of its own fit_single_step_many, bit for bit
    (tested), as chinchilla.fit_loss_tasks."""
    prepared = []
    for N, D, acc, chance, weights in problems:
        logN, logD, logA = np.log(N), np.log(D), np.log(np.maximum(acc, ACC_FLOOR))
        W = np.ones((1, logA.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
        # The batched start search sees at most SEARCH_POINTS evenly spaced points (as fit_loss's, which says
        # why); L-BFGS-B below fits all of them. Fits of up to SEARCH_POINTS points are unchanged.
        pick = (np.linspace(0, len(logA) - 1, SEARCH_POINTS).round().astype(int) if len(logA) > SEARCH_POINTS
                else slice(None))
        S = starts(chance)
        prepared.append({"logs": (logN, logD, logA), "W": W, "S": S, "search": (logN[pick], logD[pick], logA[pick]),
                         "X0": np.tile(S, (len(W), 1)), "W0": np.repeat(W[:, pick], len(S), 0)})
    by_size: dict[int, list] = {}
    for u, p in enumerate(prepared):
        by_size.setdefault(p["search"][2].size, []).append(u)

    for us in by_size.values():  # one solver call per point count (the rows of `data` must be of one length)
        data = tuple(np.concatenate([np.broadcast_to(prepared[u]["search"][i], (len(prepared[u]["X0"]),
                                                                                 prepared[u]["search"][i].size))
                                     for u in us]) for i in range(3))
        X, f = _descend(np.concatenate([prepared[u]["X0"] for u in us]), np.concatenate([prepared[u]["W0"] for u in us]),
                        data)
        at = 0
        for u in us:
            n = len(prepared[u]["X0"])
            prepared[u]["X"], prepared[u]["f"] = X[at: at + n], f[at: at + n]
            at += n
    return _polish(prepared, top_k)


def _search_residuals(X, jac, logN, logD, logA):
    """`_residuals` as the batched solvers call it: residual_fn(X, jac, *the rows' data)."""
    return _residuals(logN, logD, logA)(X, jac)


# Every descended start is then settled by Newton's method on the exact Hessian (ladder.laws.newton with
# `_curvature`) to a tight stationarity test, before the best starts are chosen for L-BFGS-B. Stopped after the
# 300 Levenberg-Marquardt steps alone, starts sat mid-valley (the IRLS majoriser creeps: one OLMo fit needs
# ~20,000 of its steps, Newton ~400) at points that depended on the last bits of exp and log, so which start
# was polished, and into which optimum, did too: numpy's AVX-512 and AVX2 exp/log moved OLMo back-test cells
# by up to 15 points and the default's weights by 0.06 (docs/laws.md "Same numbers on every CPU").
SETTLE = {"max_iter": 1000, "rtol": 1e-12}


def _descend(X0: np.ndarray, W0: np.ndarray, data: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Every start (rows of X0) descended by the batched Levenberg-Marquardt, then settled (SETTLE): (X, f)."""
    X, f, _ = minimize_batched(_search_residuals, X0, W0, delta=HUBER_DELTA, bounds=BOUNDS, max_iter=300, data=data)
    rows = np.flatnonzero(np.isfinite(f))
    if rows.size:
        X[rows], f[rows], _ = newton_batched(_search_residuals, _curvature, X[rows], W0[rows], delta=HUBER_DELTA,
                                             bounds=BOUNDS, data=tuple(d[rows] for d in data), **SETTLE)
    return X, f


def _polish(prepared: list[dict], top_k: int) -> list[list[FitResult]]:
    """Each problem's weightings' `top_k` best descended starts and the authors' start, finished by L-BFGS-B:
    every fit's runs go through one lockstep call (ladder.laws.polish), each fit its own
    minimize_from_grid's bit for bit. The authors' start runs from its settled point, not its raw values:
    that one long L-BFGS-B path into an optimum hung on the last bits too (on the accuracy-only OLMo table,
    hellaswag's far split, it found an optimum 0.8% lower than every settled start under AVX-512 and the
    settled one under AVX2, moving two cells by 1 point; over the 112 back-test fits of both OLMo tables it was
    otherwise lower than every settled start once, by 3e-7 relative)."""
    problems, objectives = [], []
    for p in prepared:
        (logN, logD, logA), S, X, f = p["logs"], p["S"], p["X"], p["f"]
        for s, w in enumerate(p["W"]):
            keep = w > 0
            res = _residuals(logN[keep], logD[keep], logA[keep])
            data = (logN[keep], logD[keep], logA[keep], w[keep])
            Xs, fs = X[s * len(S): (s + 1) * len(S)], f[s * len(S): (s + 1) * len(S)]
            # the authors' start (row 0), settled like the others, always runs through L-BFGS-B; then the top_k
            # best other starts
            order = [i for i in np.argsort(np.where(np.isfinite(fs), fs, np.inf), kind="stable") if i != 0]
            Xs = Xs[[0] + order[:top_k]]
            problems.append((_objective(*data), Xs, lambda x, res=res: res(x[None], False)[0][0]))
            objectives.append(data)
    fits = iter(minimize_from_grid_many(_objective_rows(objectives), problems, NAMES, list(BOUNDS)))
    return [[next(fits) for _ in p["W"]] for p in prepared]


def refit_many(x0s, N, D, acc, weights, *, rtol: float = 1e-6, max_iter: int = 2000):
    """Bootstrap refits of U problems at once (x0s [U, 7], each warm-started from its full fit; N, D, acc [U, n],
    e.g. one per task) under the same B weightings, in one solver call (as chinchilla.refit_loss_many). Returns
    X [U, B, 7], objective and converged [U, B]."""
    x0s = np.atleast_2d(np.asarray(x0s, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    U, B = len(x0s), len(weights)
    logs = (np.log(np.atleast_2d(N)), np.log(np.atleast_2d(D)), np.log(np.maximum(np.atleast_2d(acc), ACC_FLOOR)))

    def residual_fn(X, jac, logN, logD, logA):
        return _residuals(logN, logD, logA)(X, jac)

    X, f, c = minimize_batched(residual_fn, np.repeat(x0s, B, 0), np.tile(weights, (U, 1)), delta=HUBER_DELTA,
                               bounds=BOUNDS, max_iter=max_iter, rtol=rtol,
                               data=tuple(np.repeat(v.astype(np.float64), B, 0) for v in logs),
                               trial=(_trial_value, _trial_jacobian))
    return X.reshape(U, B, -1), f.reshape(U, B), c.reshape(U, B)
