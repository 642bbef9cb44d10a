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

from ladder.laws.batched import CHUNK_ELEMENTS, exact_fit, robust_value, take_accepted


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
    A = H + lam[:, None, None] * D
    rhs = (g if d is None else g + np.einsum("bpq,bq->bp", A, d)) * free.astype(np.float64)
    s = -_solve(_on_free(A, free), rhs)
    if d is not None:
        s += d
    promised = -np.einsum("bp,bp->b", g, s) - 0.5 * np.einsum("bp,bpq,bq->b", s, H, s)
    return s, promised


def _solve(A, b):
    """x with A x = b for each row [B, P, P] x [B, P]. A row whose matrix is exactly singular in floating point
    (the 1e-12 nudge of `_on_free` cancelled by damping terms ~1e9 larger: seen on a 7-parameter single-step
    settle) takes the least-squares step instead of failing every row of the batch."""
    try:
        return np.linalg.solve(A, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(b)
        for i in range(len(A)):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                out[i] = np.linalg.lstsq(A[i], b[i], rcond=None)[0]
        return out


def _on_free(A, free):
    """A [B, P, P] restricted to the free coordinates: rows and columns of held ones zeroed and a unit
    diagonal put there (so the solve leaves them at 0), and the free diagonal nudged by 1e-12 of itself
    (so a singular block still solves)."""
    m = free.astype(np.float64)
    A = A * (m[:, :, None] * m[:, None, :])
    diag = np.arange(A.shape[2])
    A[:, diag, diag] += np.where(free, 1e-12 * (1.0 + np.abs(A[:, diag, diag])), 1.0)
    return A


def _bound_arrays(bounds, P: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo [P], hi [P]) from `bounds` [(lo or None, hi or None)] (None: unbounded)."""
    if not bounds:
        return np.full(P, -np.inf), np.full(P, np.inf)
    return (np.array([-np.inf if b[0] is None else b[0] for b in bounds]),
            np.array([np.inf if b[1] is None else b[1] for b in bounds]))


def _snap_to_bounds(x, lo, hi):
    """x with every coordinate within rounding (1e-12 relative) of a bound put on it, then clipped inside.
    A start a hair off its bound (e^log(E_FLOOR) is not E_FLOOR) is outside the active set's test, so the
    first step is clipped unjudged, rejected, and the refit never leaves its start."""
    near = 1e-12 * np.maximum(1.0, np.abs(np.where(np.isfinite(lo), lo, 0.0)))
    x = np.where(np.abs(x - lo) <= near, lo, x)
    near = 1e-12 * np.maximum(1.0, np.abs(np.where(np.isfinite(hi), hi, 0.0)))
    return np.clip(np.where(np.abs(x - hi) <= near, hi, x), lo, hi)


def _step_within_bounds(H, g, D, x, lam, free, lo, hi):
    """The damped step from rows x (`_model_step`), a coordinate it would carry past its bound stopped on
    it and the others' step solved again with it there. Clipping the step instead leaves one the model
    never judged: the refit stalls a hair inside the bound, every damped step clipped and rejected.
    Returns (step [B, P], the model's promised gain [B])."""
    step, promised = _model_step(H, g, D, lam, free)
    out = free & ((x + step < lo) | (x + step > hi))
    again = np.flatnonzero(out.any(-1))
    if again.size:
        d = np.where(out[again], np.clip(x[again] + step[again], lo, hi) - x[again], 0.0)
        step[again], promised[again] = _model_step(H[again], g[again], D[again], lam[again],
                                                   free[again] & ~out[again], d)
    return step, promised


def _converged(accept, gain, f, g, D, free, rtol: float) -> np.ndarray:
    """Which rows are done: the step was accepted and gained under rtol of the objective f, and the gradient
    g is small in the IRLS metric D (the gain a step of the majorising model would promise, independent of
    the damping, which can make any step, and so its gain and its promise, tiny). The gradient's size is
    needed only where the gain was tiny: computed for those rows alone."""
    tiny = rtol * np.maximum(f, 1e-300)
    ok = accept & (gain <= tiny)
    ask = np.flatnonzero(ok)
    if ask.size:
        gm = g[ask] * free[ask].astype(np.float64)
        left = 0.5 * np.einsum("bp,bp->b", gm, _solve(_on_free(D[ask], free[ask]), gm))
        ok[ask] = left <= tiny[ask]
    return ok


class _MovingRows:
    """newton_batched's problems still moving and what each keeps between iterations: its weights and data
    rows, its residuals, Jacobian and curvature terms at its current point (r, J, S, D, and H, g from
    `_hessian`), whether they are stale (the point moved since), and the trial's intermediates there. A
    rejected step leaves a row's point, so its derivatives are reused, not recomputed; a finished row is
    dropped, so every pass works on moving rows only."""

    def __init__(self, residual_fn, curvature_fn, trial, w, data, P: int):
        B, n = w.shape
        self.residual_fn, self.curvature_fn, self.trial = residual_fn, curvature_fn, trial
        self.idx, self.w, self.data = np.arange(B), w, tuple(data)
        self.r, self.J = np.empty((B, n)), np.empty((B, n, P))
        self.S, self.D, self.stale = np.empty((B, P, P)), np.empty((B, P, P)), np.ones(B, dtype=bool)
        self.H, self.g = np.empty((B, P, P)), np.empty((B, P))
        self.kept = None  # the trial's intermediates at each row's x (rows whose last step was accepted)

    def keep(self, moving) -> None:
        """Drop the rows not `moving` (a mask over the current rows)."""
        if moving.all():
            return
        self.idx, self.w, self.stale = self.idx[moving], self.w[moving], self.stale[moving]
        self.r, self.J, self.S, self.D = self.r[moving], self.J[moving], self.S[moving], self.D[moving]
        self.H, self.g = self.H[moving], self.g[moving]
        self.kept = None if self.kept is None else self.kept[moving]
        self.data = tuple(d[moving] for d in self.data)

    def residuals(self, X, jac, rows=slice(None)):
        return self.residual_fn(X, jac, *(d[rows] for d in self.data))

    def curvature(self, X, r, J, v, rows):
        return self.curvature_fn(X, r, J, v, *(d[rows] for d in self.data))

    def value(self, X):
        """Trial residuals at X [rows, P] and the intermediates their Jacobian needs (None without `trial`)."""
        return (self.residuals(X, False)[0], None) if self.trial is None else self.trial[0](X, *self.data)

    def jacobian(self, X, kept, rows):
        return self.trial[1](X, kept, *(d[rows] for d in self.data))

    def refresh(self, x, delta: float, chunk: int) -> None:
        """r, J, S, D, H and g at the stale rows' points x [rows, P] (from the kept intermediates when any)."""
        redo = np.flatnonzero(self.stale)
        if not redo.size:
            return
        self.r[redo], self.J[redo], self.S[redo], self.D[redo] = _derivatives(
            self.residuals, self.curvature, x[redo], self.w[redo], delta, chunk, redo,
            None if self.kept is None else (self.jacobian, self.kept[redo]))
        self.H[redo], self.g[redo] = _hessian(self.r[redo], self.J[redo], self.S[redo], self.w[redo], delta)


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

    Each iteration: drop finished rows, refresh the derivatives where the point moved, take the damped step
    within the bounds, keep it where the objective falls (damping /5, else x4), and test convergence.
    """
    x = np.array(x0, dtype=np.float64)
    B, P = x.shape
    lo, hi = _bound_arrays(bounds, P)
    x = _snap_to_bounds(x, lo, hi)
    w_all = np.broadcast_to(np.asarray(weights, dtype=np.float64), (B,) + np.shape(weights)[-1:])
    rows = _MovingRows(residual_fn, curvature_fn, trial, w_all, data, P)
    f = (w_all * robust_value(rows.residuals(x, False)[0], delta)).sum(-1)
    chunk = max(1, CHUNK_ELEMENTS // max(1, w_all.shape[-1] * P * P))
    lam, done, conv = np.full(B, 1e-4), np.zeros(B, dtype=bool), np.zeros(B, dtype=bool)
    for _ in range(max_iter):
        rows.keep(~done[rows.idx])
        idx = rows.idx
        if idx.size == 0:
            break
        xi, fi, li = x[idx], f[idx], lam[idx]
        rows.refresh(xi, delta, chunk)
        g = rows.g
        free = ~(((xi <= lo) & (g > 0)) | ((xi >= hi) & (g < 0)))  # active set: held on a bound g pushes past
        step, promised = _step_within_bounds(rows.H, g, rows.D, xi, li, free, lo, hi)
        x_new = np.clip(xi + step, lo, hi)
        r_new, kept_new = rows.value(x_new)
        f_new = (rows.w * robust_value(r_new, delta)).sum(-1)
        accept = (f_new <= fi) & np.isfinite(f_new) & (promised > 0) & np.all(np.isfinite(step), -1)
        rows.kept, gain = take_accepted(accept, idx, x, f, x_new, f_new, rows.kept, kept_new)
        rows.stale = accept
        lam[idx] = np.clip(np.where(accept, li / 5.0, li * 4.0), 1e-15, 1e12)
        ok = _converged(accept, gain, fi, g, rows.D, free, rtol)
        conv[idx] = ok
        done[idx] = ok | (lam[idx] >= 1e12)  # given up: no step however damped lowers f
    return x, f, conv | exact_fit(f, w_all)
