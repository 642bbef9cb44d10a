"""L-BFGS-B polishes of many small fits in lockstep: one batched objective pass per round of evaluations.

The ensemble's single-step fits end in ~140 L-BFGS-B runs of ~290 evaluations each (up to ~1,400), of a
7-parameter objective on ~16 points, where numpy's cost per call (~20 calls an evaluation), not arithmetic,
is the time. Here every run keeps its own L-BFGS-B state (the C routine `fitting.lbfgsb` drives, called with
the same arguments in the same order) and asks for its evaluations; each round evaluates every asked point of
every run in one batched pass. The batched objective gives each row the bits its one-row objective gives
(elementwise ufuncs do on any shape; reductions stay per row, the same BLAS calls), so each run's iterates
and result are `fitting.minimize_from_grid`'s, bit for bit (tested).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ladder.laws import fitting
from ladder.laws.fitting import FitResult, LbfgsbResult, best_result, minimize_from_grid


def minimize_from_grid_many(
    fun_and_grad_rows: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    problems: Sequence[tuple],
    names: Sequence[str],
    bounds: Sequence[tuple[float | None, float | None]] | None = None,
    *,
    maxiter: int = 1000,
    gtol: float = 1e-10,
    ftol: float = 1e-14,
) -> list[FitResult]:
    """`minimize_from_grid(fun_and_grad, starts, names, bounds, residual_fn)` for every problem
    (fun_and_grad, starts, residual_fn) at once, each result bit for bit its own call's.

    fun_and_grad_rows(X [m, P], which [m]) -> (f [m], g [m, P]): row i evaluated as problem which[i]'s
    fun_and_grad(X[i]) would, bit for bit. A start whose objective is not finite is skipped, as there."""
    names = list(names)
    if fitting._SETULB is None:  # a scipy release outside the tested ones: minimize() itself, one by one
        return [minimize_from_grid(fg, starts, names, bounds, res, maxiter=maxiter, gtol=gtol, ftol=ftol)
                for fg, starts, res in problems]
    starts = [np.atleast_2d(np.asarray(st, dtype=np.float64)) for _, st, _ in problems]
    for st in starts:
        if st.shape[1] != len(names):
            raise ValueError(f"starts have {st.shape[1]} columns but {len(names)} parameter names {names}")
    owner = np.array([u for u, st in enumerate(starts) for _ in st], dtype=np.int64)
    X0 = np.concatenate(starts) if starts else np.zeros((0, len(names)))
    f0, _ = fun_and_grad_rows(X0, owner) if len(X0) else (np.zeros(0), None)
    runs, asked, results = {}, {}, {}
    for r in np.flatnonzero(np.isfinite(f0)):
        runs[r] = fitting.lbfgsb_steps(X0[r], bounds, maxiter=maxiter, gtol=gtol, ftol=ftol)
        asked[r] = next(runs[r])
    while asked:
        rows = np.fromiter(asked, dtype=np.int64, count=len(asked))
        f, g = fun_and_grad_rows(np.stack([asked[r] for r in rows]), owner[rows])
        for i, r in enumerate(rows):
            try:
                asked[r] = runs[r].send((f[i], g[i]))
            except StopIteration as stop:
                results[r] = stop.value
                del asked[r], runs[r]
    out, at = [], 0
    for (fun_and_grad, _, residual_fn), st in zip(problems, starts):
        best = None
        for r in range(at, at + len(st)):  # in start order, as minimize_from_grid keeps the first lowest
            res = results.get(r)
            if res is not None and np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
        at += len(st)
        out.append(best_result(best, fun_and_grad, st, names, bounds, residual_fn, maxiter=maxiter, gtol=gtol,
                               ftol=ftol))
    return out
