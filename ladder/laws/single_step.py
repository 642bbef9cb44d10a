"""The paper's single-step ablation: accuracy straight from (N, D), no intermediate loss.

    Acc(N, D) = p / (1 + exp(-(A / N^alpha + B / D^beta + E))) + q      Bhagia et al. 2024, §5 (eq. in the
                                                                       single-step ablation; OLMo `combined_fit`)

Seven parameters (a = log A, b = log B, alpha, beta, E, p, q): the sigmoid's slope and midpoint are absorbed
into A, B and E. Fitted like the authors' code (scripts/scaling/single_step.py): the SUM over the runs' final
points of Huber(delta = 1e-3) of log Acc-hat - log Acc, L-BFGS-B within their bounds, from their start
(3, 5, 0.2, 0.3, 0, chance - 1, 1). We add a few more starts and keep the lowest objective (same objective,
never a worse optimum). Formulas and sources: docs/laws.md.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import expit

from ladder.laws.chinchilla import SEARCH_POINTS
from ladder.laws.fitting import FitResult, minimize_batched, minimize_from_grid, robust_loss

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
    J = np.stack([dz * t1, dz * t2, -dz * t1 * logN, -dz * t2 * logD, dz * np.ones_like(t1), s,
                  np.ones_like(s)], -1)
    return y, J


def _residuals(logN, logD, logA):
    def residual_fn(X, jac=True):
        y, J = accuracy(X, logN, logD, jac)
        yc = np.maximum(y, ACC_FLOOR)
        r = np.log(yc) - logA
        if not jac:
            return r, None
        return r, J * ((y > ACC_FLOOR) / yc)[..., None]
    return residual_fn


def starts(chance: float | None) -> np.ndarray:
    """The authors' start first, then a small grid around it (exponents, E, floor)."""
    p0 = (chance if chance is not None else 0.25) - 1.0
    first = [[3.0, 5.0, 0.2, 0.3, 0.0, p0, 1.0]]
    grid = [[a, b, al, be, e, p0, 1.0] for a, b, al, be, e in
            itertools.product((2.0, 5.0), (3.0, 7.0), (0.1, 0.3), (0.1, 0.3), (-2.0, 0.0))]
    return np.array(first + grid, dtype=np.float64)


def fit_single_step(N, D, acc, chance: float | None, *, weights=None, top_k: int = 4) -> FitResult:
    """Fit the 7-parameter single-step law to final points (N, D, acc)."""
    logN, logD, logA = np.log(N), np.log(D), np.log(np.maximum(acc, ACC_FLOOR))
    w = np.ones_like(logA) if weights is None else np.asarray(weights, dtype=np.float64)
    res = _residuals(logN, logD, logA)

    def fun_and_grad(x):
        r, J = res(x[None])
        v, d, _ = robust_loss(r[0], HUBER_DELTA)
        return float(w @ v), J[0].T @ (w * d)

    S = starts(chance)
    # The batched start search sees at most SEARCH_POINTS evenly spaced points (as fit_loss's, which says
    # why); L-BFGS-B below fits all of them. Fits of up to SEARCH_POINTS points are unchanged.
    pick = (np.linspace(0, len(logA) - 1, SEARCH_POINTS).round().astype(int) if len(logA) > SEARCH_POINTS
            else slice(None))
    X, f, _ = minimize_batched(_residuals(logN[pick], logD[pick], logA[pick]), S, w[pick], delta=HUBER_DELTA,
                               bounds=BOUNDS, max_iter=300)
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    X = np.vstack([S[:1], X[order[:top_k]]])  # the authors' own start always runs through L-BFGS-B
    return minimize_from_grid(fun_and_grad, X, NAMES, list(BOUNDS), residual_fn=lambda x: res(x[None], False)[0][0])


def refit_batched(x0, N, D, acc, weights, *, rtol: float = 1e-6):
    """Bootstrap refits (weights [B, n]) warm-started from x0; returns (X, objective, converged)."""
    logN, logD, logA = np.log(N), np.log(D), np.log(np.maximum(acc, ACC_FLOOR))
    weights = np.atleast_2d(weights)
    X0 = np.broadcast_to(np.asarray(x0, dtype=np.float64), (len(weights), len(NAMES)))
    return minimize_batched(_residuals(logN, logD, logA), X0, weights, delta=HUBER_DELTA, bounds=BOUNDS,
                            max_iter=2000, rtol=rtol)
