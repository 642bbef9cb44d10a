"""Batched damped Newton for robust least squares: bootstrap refits that reach the optimum.

The bootstrap refits of step 1 and single-step minimise sum_i w_i Huber(r_i(x)) with most log residuals in
Huber's linear zone (an L1-like fit): the optimum is pinned by the few points inside the quadratic zone and by
the residuals' own curvature. Gauss-Newton on the IRLS curvature (`batched.minimize_batched`) majorises that
objective, and in its flat valleys the majoriser overstates the curvature many times over: it creeps, and a
stop on "the last step gained little" stops it far from the optimum (measured: bench/bench_bootstrap_
convergence.py). Here the step uses the objective's exact Hessian,

    H = J^T diag(w rho''(r)) J + sum_i w_i rho'(r_i) d2r_i/dx2

(rho'' = 1 inside the Huber zone, 0 outside), the second term supplied per law by `curvature_fn`, damped
Levenberg-Marquardt style by the IRLS diagonal (positive where H is not), steps kept only where they lower
the objective. Near the optimum the steps are Newton's, so convergence is quadratic, and the stop asks that
both the last gain and the model's promised gain fall below rtol of the objective.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ladder.laws.batched import CHUNK_ELEMENTS, robust_value, take_accepted


def _derivatives(residual_fn, curvature_fn, x, w, delta, rows, sel, kept=None):
    """Residuals [B, n], Jacobian [B, n, P], the residuals' weighted curvature S [B, P, P] and the IRLS
    matrix J^T diag(w rho'(r)/r) J [B, P, P] (the damping's metric) at rows x. kept: (jacobian_fn, the
    trial's intermediates at x) to build r and J from (newton_batched's `trial`)."""
    B, P = x.shape
    n = w.shape[-1]
    r, J, S, D = np.empty((B, n)), np.empty((B, n, P)), np.empty((B, P, P)), np.empty((B, P, P))
    for i in range(0, B, rows):
        ri, Ji = residual_fn(x[i: i + rows], True, sel[i: i + rows]) if kept is None else \
            kept[0](x[i: i + rows], kept[1][i: i + rows], sel[i: i + rows])
        wi = w[i: i + rows]
        a = np.abs(ri)
        v = wi * np.minimum(np.maximum(ri, -delta), delta)               # w rho'(r)
        irls = wi * np.minimum(1.0, delta / np.maximum(a, 1e-300))
        r[i: i + rows], J[i: i + rows] = ri, Ji
        S[i: i + rows] = curvature_fn(x[i: i + rows], ri, Ji, v, sel[i: i + rows])
        D[i: i + rows] = np.matmul(np.swapaxes(Ji * irls[..., None], 1, 2), Ji)
    return r, J, S, D


def _hessian(r, J, S, w, delta):
    """The exact Hessian H = J^T diag(w [|r| <= delta]) J + S and the gradient g = J^T (w rho'(r)) [B, P] at
    rows whose (r, J, S) are those of their current point (newton_batched keeps them while a row's steps are
    rejected: its point, and so H and g, do not move)."""
    ins = np.abs(r) <= delta
    H = np.matmul(np.swapaxes(J * (w * ins)[..., None], 1, 2), J) + S
    g = np.einsum("bn,bnp->bp", w * np.minimum(np.maximum(r, -delta), delta), J)
    return H, g


def _model_step(H, g, D, lam, free, d=None):
    """The damped Newton step, (H + lam D) s = -g over the free coordinates (H, g: `_hessian`), the others
    moved by d (to their bound; 0 when d is None), and the gain the undamped quadratic model promises for the
    whole step."""
    P = H.shape[2]
    m = free.astype(np.float64)
    A = H + lam[:, None, None] * D
    rhs = (g if d is None else g + np.einsum("bpq,bq->bp", A, d)) * m
    A = A * (m[:, :, None] * m[:, None, :])
    diag = np.arange(P)
    A[:, diag, diag] += np.where(free, 1e-12 * (1.0 + np.abs(A[:, diag, diag])), 1.0)
    s = -np.linalg.solve(A, rhs[..., None])[..., 0]
    if d is not None:
        s += d
    promised = -np.einsum("bp,bp->b", g, s) - 0.5 * np.einsum("bp,bpq,bq->b", s, H, s)
    return s, promised


def newton_batched(
    residual_fn: Callable,
    curvature_fn: Callable,
    x0: np.ndarray,
    weights: np.ndarray,
    *,
    delta: float,
    bounds: Sequence[tuple[float | None, float | None]] | None = None,
    max_iter: int = 200,
    rtol: float = 1e-12,
    data: tuple[np.ndarray, ...] = (),
    trial: tuple[Callable, Callable] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise sum_i w[b, i] Huber(r_i(x_b), delta) for B independent problems at once.

    `residual_fn(X [B, P], jac, *rows_of_data) -> (r [B, n], J [B, n, P])` as for `batched.minimize_batched`;
    `curvature_fn(X, r, J, v, *rows_of_data) -> [B, P, P]`: sum_i v[b, i] d2r_i/dx2 (the residuals' own
    curvature weighted by v = w rho'(r)). Coordinates on a bound whose gradient points outward are held
    (active set); steps are clipped to `bounds`. `trial`: optionally (value_fn, jacobian_fn), a trial point's
    residuals with the intermediates its Jacobian needs and that Jacobian from them, as for
    `batched.minimize_batched` (bit for bit residual_fn's). Returns (X [B, P], objective [B], converged [B]).
    """
    x = np.array(x0, dtype=np.float64)
    B, P = x.shape
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds]) if bounds else np.full(P, -np.inf)
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds]) if bounds else np.full(P, np.inf)
    # a start within rounding of a bound is on it (e^log(E_FLOOR) is not E_FLOOR): else its active set misses
    # the bound, the step is clipped unjudged, rejected, and the refit never leaves its start
    near = 1e-12 * np.maximum(1.0, np.abs(np.where(np.isfinite(lo), lo, 0.0)))
    x = np.where(np.abs(x - lo) <= near, lo, x)
    near = 1e-12 * np.maximum(1.0, np.abs(np.where(np.isfinite(hi), hi, 0.0)))
    x = np.clip(np.where(np.abs(x - hi) <= near, hi, x), lo, hi)
    w_all = np.broadcast_to(np.asarray(weights, dtype=np.float64), (B,) + np.shape(weights)[-1:])
    lam, done, conv = np.full(B, 1e-4), np.zeros(B, dtype=bool), np.zeros(B, dtype=bool)
    idx, w_act, data_act = np.arange(B), w_all, tuple(data)

    def res_fn(X, jac, rows=slice(None)):
        return residual_fn(X, jac, *(d[rows] for d in data_act))

    def curv_fn(X, r, J, v, rows):
        return curvature_fn(X, r, J, v, *(d[rows] for d in data_act))

    def value_fn(X):
        return (res_fn(X, False)[0], None) if trial is None else trial[0](X, *data_act)

    def jac_fn(X, kept, rows):
        return trial[1](X, kept, *(d[rows] for d in data_act))

    kept_act = None  # the trial's intermediates at each moving row's x (rows whose last step was accepted)

    f = (w_all * robust_value(res_fn(x, False)[0], delta)).sum(-1)
    n = w_all.shape[-1]
    chunk = max(1, CHUNK_ELEMENTS // max(1, n * P * P))
    r_act, J_act = np.empty((B, n)), np.empty((B, n, P))
    S_act, D_act, stale = np.empty((B, P, P)), np.empty((B, P, P)), np.ones(B, dtype=bool)
    H_act, g_act = np.empty((B, P, P)), np.empty((B, P))
    diag = np.arange(P)
    for _ in range(max_iter):
        moving = ~done[idx]
        if not moving.all():
            idx, w_act, stale = idx[moving], w_act[moving], stale[moving]
            r_act, J_act, S_act, D_act = r_act[moving], J_act[moving], S_act[moving], D_act[moving]
            H_act, g_act = H_act[moving], g_act[moving]
            kept_act = None if kept_act is None else kept_act[moving]
            data_act = tuple(d[moving] for d in data_act)
        if idx.size == 0:
            break
        xi, fi, li = x[idx], f[idx], lam[idx]
        redo = np.flatnonzero(stale)
        if redo.size:
            r_act[redo], J_act[redo], S_act[redo], D_act[redo] = _derivatives(
                res_fn, curv_fn, xi[redo], w_act[redo], delta, chunk, redo,
                None if kept_act is None else (jac_fn, kept_act[redo]))
            H_act[redo], g_act[redo] = _hessian(r_act[redo], J_act[redo], S_act[redo], w_act[redo], delta)
        g = g_act
        free = ~(((xi <= lo) & (g > 0)) | ((xi >= hi) & (g < 0)))
        step, promised = _model_step(H_act, g, D_act, li, free)
        # a coordinate the step would carry past its bound stops on it, and the others' step is solved again
        # with it there (clipping the step instead leaves one the model never judged: the refit stalls
        # a hair inside the bound, every damped step clipped and rejected)
        out = free & ((xi + step < lo) | (xi + step > hi))
        again = np.flatnonzero(out.any(-1))
        if again.size:
            d = np.where(out[again], np.clip(xi[again] + step[again], lo, hi) - xi[again], 0.0)
            step[again], promised[again] = _model_step(H_act[again], g[again], D_act[again], li[again],
                                                       free[again] & ~out[again], d)
        x_new = np.clip(xi + step, lo, hi)
        r_new, kept_new = value_fn(x_new)
        f_new = (w_act * robust_value(r_new, delta)).sum(-1)
        accept = (f_new <= fi) & np.isfinite(f_new) & (promised > 0) & np.all(np.isfinite(step), -1)
        kept_act, gain = take_accepted(accept, idx, x, f, x_new, f_new, kept_act, kept_new)
        stale = accept
        lam[idx] = np.clip(np.where(accept, li / 5.0, li * 4.0), 1e-15, 1e12)
        # Done when a step gains almost nothing and the gradient is small in the IRLS metric (the gain a
        # step of the majorising model would promise: independent of the damping, which can make any step,
        # and so its gain and its promise, tiny); given up when no step however damped lowers f.
        # (The gradient's size is needed only where the gain was tiny: computed for those rows alone.)
        tiny = rtol * np.maximum(fi, 1e-300)
        ok = accept & (gain <= tiny)
        ask = np.flatnonzero(ok)
        if ask.size:
            fr = free[ask]
            m = fr.astype(np.float64)
            gm = g[ask] * m
            Dm = D_act[ask] * (m[:, :, None] * m[:, None, :])
            Dm[:, diag, diag] += np.where(fr, 1e-12 * (1.0 + np.abs(Dm[:, diag, diag])), 1.0)
            left = 0.5 * np.einsum("bp,bp->b", gm, np.linalg.solve(Dm, gm[..., None])[..., 0])
            ok[ask] = left <= tiny[ask]
        conv[idx] = ok
        done[idx] = ok | (lam[idx] >= 1e12)
    return x, f, conv
