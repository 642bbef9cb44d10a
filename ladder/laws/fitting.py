"""Generic robust fitting: Huber loss and L-BFGS-B from a grid of starts (numpy/scipy only).

Scaling-law objectives are non-convex with flat valleys, so the published recipe (Hoffmann et al. 2022,
Besiroglu et al. 2024) is to run L-BFGS from every point of a grid of starts and keep the best. Every law
module in `ladder.laws` builds on `minimize_from_grid` rather than calling scipy itself, so convergence
and bound reporting look the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import minimize


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals `r` and its derivative d/dr, elementwise.

    0.5 r^2 inside |r| <= delta, delta (|r| - delta/2) outside: quadratic near zero, linear in the tails,
    so a few outlying runs cannot dominate the fit.
    """
    r = np.asarray(r, dtype=np.float64)
    a = np.abs(r)
    inside = a <= delta
    values = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    derivatives = np.where(inside, r, delta * np.sign(r))
    return values, derivatives


@dataclass
class FitResult:
    """The best of a multi-start fit.

    `x` are the parameters in `names` order; `objective` the minimised value; `converged` whether the best
    start's L-BFGS-B reported success; `at_bound` the names of parameters sitting on a bound (the data did
    not pin them down); `residuals` whatever `residual_fn(x)` returns (empty when none was given).
    """

    names: list[str]
    x: np.ndarray
    objective: float
    converged: bool
    at_bound: list[str] = field(default_factory=list)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_starts: int = 1
    message: str = ""

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.names, self.x)}


def params_at_bound(x: np.ndarray, names: Sequence[str], bounds, rtol: float = 1e-6) -> list[str]:
    """Names of parameters within rtol (relative to the bound's scale, at least 1e-8 absolute) of a bound."""
    if bounds is None:
        return []
    hits = []
    for name, v, (lo, hi) in zip(names, x, bounds):
        for b in (lo, hi):
            if b is not None and np.isfinite(b) and abs(v - b) <= rtol * max(1.0, abs(b)) + 1e-8:
                hits.append(name)
                break
    return hits


def minimize_from_grid(
    fun_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    starts: np.ndarray,
    names: Sequence[str],
    bounds: Sequence[tuple[float | None, float | None]] | None = None,
    residual_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    maxiter: int = 1000,
    gtol: float = 1e-10,
    ftol: float = 1e-14,
) -> FitResult:
    """Run scipy L-BFGS-B from every row of `starts` [S, P] with the analytic gradient; keep the lowest.

    `fun_and_grad(x) -> (f, g)` must return the objective and its gradient. Starts whose objective is not
    finite are skipped. The tolerances are tight because scaling-law objectives are tiny (~1e-3) and flat.
    """
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    names = list(names)
    if starts.shape[1] != len(names):
        raise ValueError(f"starts have {starts.shape[1]} columns but {len(names)} parameter names {names}")
    best = None
    for x0 in starts:
        f0, _ = fun_and_grad(x0)
        if not np.isfinite(f0):
            continue
        res = minimize(
            fun_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": maxiter, "gtol": gtol, "ftol": ftol},
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise ValueError(f"no start of {len(starts)} gave a finite objective for parameters {names}")
    x = np.asarray(best.x, dtype=np.float64)
    # L-BFGS-B stops with ABNORMAL when the line search cannot improve at machine precision; at a tiny
    # objective that is convergence in practice, so it counts as converged when the gradient is small.
    _, g = fun_and_grad(x)
    small_grad = float(np.max(np.abs(g))) <= 1e-6 * max(1.0, abs(float(best.fun)))
    converged = bool(best.success) or small_grad
    return FitResult(
        names=names,
        x=x,
        objective=float(best.fun),
        converged=converged,
        at_bound=params_at_bound(x, names, bounds),
        residuals=np.asarray(residual_fn(x)) if residual_fn is not None else np.zeros(0),
        n_starts=len(starts),
        message=str(best.message),
    )
