"""Many small fits at once: the bootstrap's refits as one batched, damped Gauss-Newton solve (numpy only).

A 1,000-sample bootstrap refits every law a thousand times from a start next to the answer (the full-data
fit). Grid starts and L-BFGS per sample (`fitting.minimize_from_grid`) would spend most of the time in Python;
here all B problems take each step together, so one numpy pass per iteration serves them all, and rows stop
as they converge. `ladder.laws.newton` is the exact-Hessian variant for the step-1 law, built on the same
robust terms.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def robust_loss(r: np.ndarray, delta: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rho(r), rho'(r), IRLS curvature rho'(r)/r): squared error when delta is None, else Huber(delta)."""
    if delta is None:
        return 0.5 * r * r, r, np.ones_like(r)
    a = np.abs(r)
    v = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))  # huber(), without recomputing |r|
    return v, np.clip(r, -delta, delta), np.minimum(1.0, delta / np.maximum(a, 1e-300))


CHUNK_ELEMENTS = 1 << 18


def robust_value(r: np.ndarray, delta: float | None) -> np.ndarray:
    """rho(r) alone (`robust_loss`'s first output, the same digits): a trial step needs only the value."""
    if delta is None:
        return 0.5 * r * r
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _normal_equations(residual_fn, x: np.ndarray, w: np.ndarray, delta: float | None, rows: int, sel: np.ndarray,
                      kept=None):
    """Gradient g [B, P] and IRLS curvature J^T diag(w rho'(r)/r) J [B, P, P] at rows x, `rows` at a time
    (residual_fn(X, jac, rows of the problems' data); sel: the problems' rows). kept: (jacobian_fn, the
    trial's intermediates at x [B, ...]) to build the Jacobian from (minimize_batched's `trial`)."""
    B, P = x.shape
    g, H = np.empty((B, P)), np.empty((B, P, P))
    for i in range(0, B, rows):
        r, J = residual_fn(x[i : i + rows], True, sel[i : i + rows]) if kept is None else \
            kept[0](x[i : i + rows], kept[1][i : i + rows], sel[i : i + rows])
        _, d, c = robust_loss(r, delta)
        wi = w[i : i + rows]
        g[i : i + rows] = np.einsum("bn,bnp->bp", wi * d, J)
        H[i : i + rows] = np.matmul(np.swapaxes(J * (wi * c)[..., None], 1, 2), J)
    return g, H


def take_accepted(accept, rows, x, f, x_new, f_new, kept, kept_new):
    """The accepted trial steps, taken in place: each still-moving problem (`rows` of x [B, P] and f [B]) whose
    step is accepted moves to x_new, f_new, and its trial's intermediates (kept_new) become its `kept`, so its
    next Jacobian pass takes no transcendental again; kept is None until a `trial` returns any. Both solvers
    of the `trial` protocol (minimize_batched and ladder.laws.newton.newton_batched) take steps through here,
    so the cache cannot drift from the point it belongs to. Returns (kept, gain: f's drop per moving
    problem, 0 where the step was rejected)."""
    xi, fi = x[rows], f[rows]
    if kept_new is not None:
        if kept is None:
            kept = np.empty_like(kept_new)
        kept[accept] = kept_new[accept]
    x[rows] = np.where(accept[:, None], x_new, xi)
    f[rows] = np.where(accept, f_new, fi)
    return kept, np.where(accept, fi - f_new, 0.0)


def minimize_batched(
    residual_fn: Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]],
    x0: np.ndarray,
    weights: np.ndarray,
    *,
    delta: float | None = None,
    bounds: Sequence[tuple[float | None, float | None]] | None = None,
    max_iter: int = 200,
    rtol: float = 1e-9,
    data: tuple[np.ndarray, ...] = (),
    trial: tuple[Callable, Callable] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise sum_i w[b, i] rho(r_i(x_b)) for B independent problems at once (bootstrap samples).

    `residual_fn(X [B, P], jac) -> (r [B, n], J [B, n, P] or None)`; with `data` (arrays whose first axis is
    the B problems: each problem's own points, e.g. every task's bootstrap in one call) it is called as
    `residual_fn(X, jac, *rows_of_data)` with the rows of the problems in X. Levenberg-Marquardt on the IRLS
    (majorising) curvature J^T diag(w rho'(r)/r) J, which for squared error is Gauss-Newton and for Huber
    never overestimates a step's gain; steps are clipped to `bounds` and kept only where they lower the
    objective. One numpy pass serves all B problems, which is what makes a 1,000-sample bootstrap cheap.
    `trial`: optionally (value_fn(X, *rows_of_data) -> (r, kept [B, ...]), jacobian_fn(X, kept, *rows_of_data)
    -> (r, J)), the residuals of a trial point with the intermediates (exponentials, logs) its Jacobian
    needs, and that Jacobian from them: an accepted step's next Jacobian pass then pays no transcendental
    twice. They must give residual_fn's bits (single_step.refit_many: tested).
    Returns (X [B, P], objective [B], converged [B]).
    """
    x = np.array(x0, dtype=np.float64)
    B, P = x.shape
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds]) if bounds else np.full(P, -np.inf)
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds]) if bounds else np.full(P, np.inf)
    x = np.clip(x, lo, hi)
    lam = np.full(B, 1e-3)
    done = np.zeros(B, dtype=bool)
    w_all = np.broadcast_to(np.asarray(weights, dtype=np.float64), (B,) + np.shape(weights)[-1:])
    # The problems still moving (idx) and their weights and data rows, gathered again only when some stop.
    idx, w_act, data_act = np.arange(B), w_all, tuple(data)

    def residual_fn_act(X, jac, rows=slice(None)):
        return residual_fn(X, jac, *(d[rows] for d in data_act)) if data else residual_fn(X, jac)

    def value_act(X):
        if trial is None:
            return residual_fn_act(X, False)[0], None
        return trial[0](X, *data_act)

    def jacobian_act(X, kept, rows):
        return trial[1](X, kept, *(d[rows] for d in data_act))

    kept_act = None  # the trial's intermediates at each moving row's x (rows whose last step was accepted)

    f = (w_all * robust_value(residual_fn_act(x, False)[0], delta)).sum(-1)
    diag_idx = np.arange(P)
    # rows per Jacobian pass: the [rows, n, P] Jacobian stays in cache (~2 MB); a 1,000-sample bootstrap of
    # ~1,350 step-2 points would otherwise stream 43 MB per iteration (2x slower, same numbers)
    chunk = max(1, CHUNK_ELEMENTS // max(1, w_all.shape[-1] * P))
    # g, H at each moving problem's x: a rejected step leaves x, so they are computed again only where a
    # step was taken (stale)
    g_act, H_act, stale = np.empty((B, P)), np.empty((B, P, P)), np.ones(B, dtype=bool)
    for _ in range(max_iter):
        moving = ~done[idx]  # only problems still moving cost anything
        if not moving.all():
            idx, w_act, g_act, H_act, stale = idx[moving], w_act[moving], g_act[moving], H_act[moving], stale[moving]
            data_act = tuple(d[moving] for d in data_act)
            kept_act = None if kept_act is None else kept_act[moving]
        if idx.size == 0:
            break
        xi, w, fi, li = x[idx], w_act, f[idx], lam[idx]
        redo = np.flatnonzero(stale)
        if redo.size:
            g_act[redo], H_act[redo] = _normal_equations(
                residual_fn_act, xi[redo], w[redo], delta, chunk, redo,
                None if kept_act is None else (jacobian_act, kept_act[redo]))
        g, H = g_act, H_act
        # Coordinates on a bound whose gradient pushes outward stay fixed this iteration (active set).
        free = ~(((xi <= lo) & (g > 0)) | ((xi >= hi) & (g < 0)))
        # A = H + lam (diag H + 1e-12) on the diagonal, the fixed coordinates' rows and columns replaced by
        # the identity's (the fixed ones get no step), built in place
        diag = np.diagonal(H, axis1=1, axis2=2)
        m = free.astype(np.float64)
        A = H * (m[:, :, None] * m[:, None, :])
        A[:, diag_idx, diag_idx] = np.where(free, diag + li[:, None] * (diag + 1e-12), 1.0)
        gm = g * m
        step = -np.linalg.solve(A, gm[..., None])[..., 0]
        x_new = np.clip(xi + step, lo, hi)
        r_new, kept_new = value_act(x_new)
        f_new = (w * robust_value(r_new, delta)).sum(-1)
        accept = (f_new <= fi) & np.isfinite(f_new)
        kept_act, gain = take_accepted(accept, idx, x, f, x_new, f_new, kept_act, kept_new)
        stale = accept
        lam[idx] = np.clip(np.where(accept, li / 3.0, li * 4.0), 1e-12, 1e12)
        # Done when a step gains, or the model promises, almost nothing, or no step however short helps.
        tiny = rtol * np.maximum(fi, 1e-300)
        promised = -np.einsum("bp,bp->b", gm, step)
        done[idx] = (accept & (gain <= tiny)) | (promised <= tiny) | (lam[idx] >= 1e12)
    return x, f, done
