"""Generic robust fitting: Huber loss and L-BFGS-B from a grid of starts (numpy/scipy only).

Scaling-law objectives are non-convex with flat valleys, so the published recipe (Hoffmann et al. 2022,
Besiroglu et al. 2024) is to run L-BFGS from every point of a grid of starts and keep the best. Every law
module in `ladder.laws` builds on `minimize_from_grid` rather than calling scipy itself, so convergence
and bound reporting look the same everywhere.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy
from scipy.optimize import minimize

# The C L-BFGS-B that scipy.optimize.minimize itself drives (see `lbfgsb`) is private API: used only on the
# scipy releases whose driver loop `lbfgsb` copies and whose equality with minimize() a test checks (1.15 to
# 1.17); any other release takes minimize() itself, the same answer, slower.
_SCIPY = tuple(int(p) for p in scipy.__version__.split(".")[:2] if p.isdigit())
_SETULB = None
if (1, 15) <= _SCIPY < (1, 18):
    try:
        from scipy.optimize import _lbfgsb
        from scipy.optimize._lbfgsb_py import status_messages as _STATUS, task_messages as _TASK
        _SETULB = _lbfgsb.setulb if "ln_task" in (_lbfgsb.setulb.__doc__ or "") else None
    except ImportError:  # pragma: no cover - a rearranged scipy: minimize() itself
        _SETULB = None


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals `r` and its derivative d/dr, elementwise.

    0.5 r^2 inside |r| <= delta, delta (|r| - delta/2) outside: quadratic near zero, linear in the tails,
    so a few outlying runs cannot dominate the fit.
    """
    r = np.asarray(r, dtype=np.float64)
    a = np.abs(r)
    values = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    # r inside, delta sign(r) outside: np.clip's value, without its dispatch (~15 us a call; the single-step
    # polishes call this ~40,000 times per ensemble fit)
    return values, np.minimum(np.maximum(r, -delta), delta)


def log_sum_exp_huber(terms: np.ndarray, term_grads: Sequence[dict[int, np.ndarray]], log_obs: np.ndarray,
                      delta: float, n_params: int) -> tuple[float, np.ndarray]:
    """Summed Huber of log residuals for a law written as a sum of positive terms, and its gradient.

    A law L = sum_j exp(t_j) (each term's log t_j [P, J], -inf for a term absent at a point) predicts
    log L = LSE_j(t_j); the objective is sum_points Huber(LSE - log_obs, delta) (Besiroglu et al. 2024).
    `term_grads[j]` maps parameter index i to dt_j/dx_i [P] for the parameters entering term j, so
    df/dx_i = sum_points Huber'(res) sum_j softmax(t)_j dt_j/dx_i. The D-CPT and split laws share this.
    """
    m = terms.max(axis=1, keepdims=True)
    w = np.exp(terms - m)
    s = w.sum(axis=1, keepdims=True)
    w /= s
    h, dh = huber((m + np.log(s))[:, 0] - log_obs, delta)
    g = np.zeros(n_params)
    for j, parts in enumerate(term_grads):
        for i, dt in parts.items():
            g[i] += np.sum(dh * w[:, j] * dt)
    return float(h.sum()), g


def key_of(v):
    """A hashable key of `v` by content: arrays by dtype, shape and a hash of their bytes; lists and tuples of
    numbers as such an array, of other things (a fit problem's (N, D, L, weights)) item by item; a law's form
    by its name."""
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest())
    if isinstance(v, (list, tuple)):
        if any(x is None or isinstance(x, (np.ndarray, list, tuple)) for x in v):
            return tuple(key_of(x) for x in v)
        return key_of(np.asarray(v, dtype=np.float64))
    return getattr(v, "name", None) or repr(v)  # a law's form is named by its name (chinchilla.LossForm)


def memo_by_content(fn: Callable, size: int = 256) -> Callable:
    """`fn` remembering its last `size` results, keyed by the bytes of its array arguments and the repr of the
    rest. The same fit recurs with equal data: the `lm-loss` method's step 1 sees the same LM loss for every
    task of a ladder, so its full fit, back-tests and bootstrap are computed once, not once per task."""
    cache: OrderedDict = OrderedDict()

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        key = tuple(key_of(a) for a in args) + tuple((k, key_of(v)) for k, v in sorted(kwargs.items()))
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        out = cache[key] = fn(*args, **kwargs)
        if len(cache) > size:
            cache.popitem(last=False)
        return out

    return wrapped


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


@dataclass
class LbfgsbResult:
    """What `lbfgsb` returns: scipy's OptimizeResult fields that minimize_from_grid reads."""

    x: np.ndarray
    fun: float
    success: bool
    message: str
    nit: int


def lbfgsb(fun_and_grad, x0, bounds=None, *, maxiter: int = 1000, gtol: float = 1e-10, ftol: float = 1e-14,
           maxcor: int = 10, maxls: int = 20, maxfun: int = 15000) -> LbfgsbResult:
    """scipy.optimize.minimize(fun_and_grad, x0, jac=True, method="L-BFGS-B", ...): the same iterates and the
    same result, bit for bit (tested), without scipy's per-evaluation wrappers (memoisation, copies, array-API
    checks), which cost more than our objectives on 16 points: the polishes make ~44,000 evaluations per
    ensemble fit. It drives the C routine scipy's own loop (scipy/optimize/_lbfgsb_py.py) drives, with the
    same arguments; on a scipy release outside the tested ones (see _SETULB) it calls minimize() itself."""
    if _SETULB is None:
        res = minimize(fun_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": maxiter, "gtol": gtol, "ftol": ftol, "maxcor": maxcor, "maxls": maxls,
                                "maxfun": maxfun})
        return LbfgsbResult(np.asarray(res.x, dtype=np.float64), float(res.fun), bool(res.success),
                            str(res.message), int(res.nit))
    steps = lbfgsb_steps(x0, bounds, maxiter=maxiter, gtol=gtol, ftol=ftol, maxcor=maxcor, maxls=maxls,
                         maxfun=maxfun)
    try:
        x = next(steps)
        while True:
            x = steps.send(fun_and_grad(x))
    except StopIteration as done:
        return done.value


def lbfgsb_steps(x0, bounds, *, maxiter: int, gtol: float, ftol: float, maxcor: int = 10, maxls: int = 20,
                  maxfun: int = 15000):
    """L-BFGS-B as a generator: yields each x it needs (f, g) at, is sent them, returns its LbfgsbResult. The
    one loop over the C routine: `lbfgsb` drives it with one objective, polish.py drives many in lockstep."""
    x = np.array(np.asarray(x0, dtype=np.float64).ravel())
    n = x.size
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    for i, (lb, ub) in enumerate(bounds or ()):
        lo[i] = -np.inf if lb is None else float(lb)
        hi[i] = np.inf if ub is None else float(ub)
    if bounds:
        x = np.clip(x, lo, hi)
    nbd = np.zeros(n, np.int32)
    nbd[np.isfinite(lo) & ~np.isfinite(hi)] = 1
    nbd[np.isfinite(lo) & np.isfinite(hi)] = 2
    nbd[~np.isfinite(lo) & np.isfinite(hi)] = 3
    low, upp = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    m, factr = maxcor, ftol / np.finfo(float).eps
    f, g = np.array(0.0), np.zeros(n)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa, task, ln_task = np.zeros(3 * n, np.int32), np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    nit = nfev = 0
    while True:
        _SETULB(m, x, low, upp, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, maxls, ln_task)
        if task[0] == 3:
            fx, gx = yield x.copy()
            nfev += 1
            f, g = float(fx), np.array(gx, dtype=np.float64).reshape(n)
        elif task[0] == 1:
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = 5, 504
            elif nfev > maxfun:
                task[0], task[1] = 5, 502
        else:
            break
    return LbfgsbResult(x, float(f), bool(task[0] == 4), _STATUS[task[0]] + ": " + _TASK[task[1]], nit)


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
        res = lbfgsb(fun_and_grad, x0, bounds, maxiter=maxiter, gtol=gtol, ftol=ftol)
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    return best_result(best, fun_and_grad, starts, names, bounds, residual_fn, maxiter=maxiter, gtol=gtol, ftol=ftol)


def best_result(best: LbfgsbResult | None, fun_and_grad, starts, names, bounds, residual_fn, *, maxiter: int,
                gtol: float, ftol: float) -> FitResult:
    """minimize_from_grid's answer from the best of its L-BFGS-B runs (None: no start was finite), its failure
    tested by a restart (also ladder.laws.polish's, which runs the starts of many fits together)."""
    if best is None:
        raise ValueError(f"no start of {len(starts)} gave a finite objective for parameters {names}")
    x = np.asarray(best.x, dtype=np.float64)
    converged, message = bool(best.success), str(best.message).strip()
    if not converged:
        # L-BFGS-B also stops with "ABNORMAL" when its line search cannot improve at machine precision, which
        # at a tiny, flat objective is an optimum. The test of failure is the optimizer's own: restarted from
        # x with fresh curvature memory, does it still find a lower objective?
        again = lbfgsb(fun_and_grad, x, bounds, maxiter=maxiter, gtol=gtol, ftol=ftol)
        gain = float(best.fun - again.fun) if np.isfinite(again.fun) else 0.0
        if gain <= 1e-9 * max(abs(float(best.fun)), 1e-12):
            converged = True
        else:
            message = (f"{message or 'stopped'} after {best.nit} iterations; a restart lowered the objective by "
                       f"{gain:.3g} ({gain / max(abs(float(best.fun)), 1e-300):.1e} relative)")
            if again.fun < best.fun:
                best, x = again, np.asarray(again.x, dtype=np.float64)
    return FitResult(
        names=names,
        x=x,
        objective=float(best.fun),
        converged=converged,
        at_bound=params_at_bound(x, names, bounds),
        residuals=np.asarray(residual_fn(x)) if residual_fn is not None else np.zeros(0),
        n_starts=len(starts),
        message=message,
    )


def best_starts(objective_batch: Callable[[np.ndarray], np.ndarray], grid: np.ndarray, k: int) -> np.ndarray:
    """The k rows of `grid` [S, P] with the lowest objective, evaluated in one vectorised call.

    A 4,500-point grid costs one broadcast here instead of 4,500 L-BFGS runs; L-BFGS then starts only from
    the most promising basins (tests check this still reaches the published Chinchilla optimum).
    """
    f = np.asarray(objective_batch(grid), dtype=np.float64)
    f = np.where(np.isfinite(f), f, np.inf)
    order = np.argsort(f, kind="stable")[: max(1, k)]
    return grid[order[np.isfinite(f[order])]] if np.isfinite(f[order]).any() else grid[order]
