"""Step 2: accuracy as a sigmoid of the intermediate feature (task loss in bits per byte, or an LM loss).

    Acc(L) = a / (1 + exp(-k (L - L0))) + b,   a in [-1, 0], b in [0, 1]

(Bhagia et al. 2024, eq. 2). With k > 0 accuracy falls from the ceiling b at low loss to the floor a + b
at high loss. The variant `floor=chance` pins a + b to the task's chance level (a = chance - b), leaving
(b, k, L0). Fitted by least squares, L-BFGS-B from a grid of starts. Formulas and sources: docs/laws.md.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ladder.laws.chinchilla import SEARCH_POINTS
from ladder.laws.batched import CHUNK_ELEMENTS, minimize_batched
from ladder.laws.fitting import FitResult, best_starts, minimize_from_grid
from ladder.laws.sigmoid_projection import damped_step, linear_optimum, reduced_model


@dataclass(frozen=True)
class SigmoidForm:
    """The step-2 sigmoid, free (a, b, k, L0) or with its floor a + b pinned to `floor` (b, k, L0)."""

    floor: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return ("a", "b", "k", "L0") if self.floor is None else ("b", "k", "L0")

    @property
    def bounds(self) -> list[tuple[float | None, float | None]]:
        if self.floor is None:
            return [(-1.0, 0.0), (0.0, 1.0), (0.0, None), (None, None)]
        return [(max(0.0, self.floor), min(1.0, 1.0 + self.floor)), (0.0, None), (None, None)]

    def full(self, X: np.ndarray) -> np.ndarray:
        """Parameter rows [B, 4] as (a, b, k, L0), whichever form."""
        X = np.atleast_2d(X)
        if self.floor is None:
            return X
        return np.column_stack([self.floor - X[:, 0], X[:, 0], X[:, 1], X[:, 2]])

    def acc(self, X: np.ndarray, L: np.ndarray, jac: bool = True):
        """Acc-hat [B, n] at feature values L [n] for parameter rows X [B, P], and the Jacobian [B, n, P]."""
        a, b, k, L0 = (c[:, None] for c in self.full(X).T)
        s = expit(k * (L - L0))
        y = a * s + b
        if not jac:
            return y, None
        ds = a * s * (1.0 - s)
        J = np.empty(y.shape + (len(self.names),))  # filled column by column: no stacked temporaries
        if self.floor is None:
            J[..., 0], J[..., 1] = s, 1.0
        else:
            J[..., 0] = 1.0 - s
        J[..., -2], J[..., -1] = ds * (L - L0), -ds * k
        return y, J

    def predict(self, params: dict | np.ndarray, L) -> np.ndarray:
        """Acc-hat at L (any shape); params a dict, an array [P], or rows [B, P] (-> [B, *L.shape])."""
        x = np.array([params[k] for k in self.names]) if isinstance(params, dict) else np.asarray(params)
        L = np.asarray(L, dtype=np.float64)
        y, _ = self.acc(np.atleast_2d(x), L.reshape(-1), jac=False)
        out = y.reshape((-1,) + L.shape)
        return out[0] if x.ndim == 1 else out

    def grid(self, L: np.ndarray) -> np.ndarray:
        """Starts spanning the data: the midpoint L0 at quantiles of the observed feature."""
        L0s = np.quantile(L, [0.1, 0.3, 0.5, 0.7, 0.9])
        ks = [1.0, 3.0, 10.0, 30.0]
        bs = [0.6, 0.8, 1.0]
        if self.floor is None:
            rows = itertools.product([-0.9, -0.7, -0.5, -0.3], bs, ks, L0s)
        else:
            lo, hi = self.bounds[0]
            rows = itertools.product(np.clip(bs, lo, hi), ks, L0s)
        return np.array(list(rows), dtype=np.float64)


def fit_sigmoid(form: SigmoidForm, L, acc, *, weights=None, top_k: int = 16, polish: int = 2) -> FitResult:
    """Least-squares fit of `form` to (L, acc) points; residuals are Acc-hat - acc.

    The start grid is scored in one pass, its `top_k` best rows descended together by the batched solver,
    and L-BFGS-B (analytic gradient, bounds) finishes from the `polish` best.
    """
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[None]
    return fit_sigmoid_many(form, L, acc, w, top_k=top_k, polish=polish)[0]


def fit_sigmoid_many(form: SigmoidForm, L, acc, weights=None, *, top_k: int = 16, polish: int = 2) -> list[FitResult]:
    """`fit_sigmoid` for S weightings of the same points (weights [S, n]; 0 leaves a point out), as
    ladder.laws.chinchilla.fit_loss_many: each split's starts come from its own points (grid at the quantiles
    of its feature, start search on at most SEARCH_POINTS of them), the descents share numpy passes, and each
    split is polished alone; the fits equal separate ones (to rounding: a descent row sums over its own split's
    points only)."""
    L, acc = np.asarray(L, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    W = np.ones((1, L.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    starts, rows, picks = [], [], []
    for s, w in enumerate(W):
        keep = np.flatnonzero(w > 0)
        # The start search sees at most SEARCH_POINTS evenly spaced points of the split
        # (ladder.laws.chinchilla.fit_loss explains why); L-BFGS-B below fits all of them.
        pick = keep[np.linspace(0, len(keep) - 1, SEARCH_POINTS).round().astype(int)] if len(keep) > SEARCH_POINTS \
            else keep
        picks.append(pick)
        sw, sL, sacc = w[pick], L[pick], acc[pick]
        starts.append(best_starts(
            lambda X: 0.5 * (sw * (form.acc(X, sL, jac=False)[0] - sacc) ** 2).sum(-1), form.grid(L[keep]), top_k))
        rows += [s] * len(starts[-1])
    rows = np.array(rows)
    # Each descent row carries its own split's search points (padded with weight-0 copies to the longest
    # split's count): the splits leave different runs out, and a row over the union of all splits' points
    # (1,301 on OLMo for 512 each) did 2.5x the work on points of weight 0.
    width = max(len(pk) for pk in picks)
    at = np.stack([np.concatenate([pk, np.full(width - len(pk), pk[0] if len(pk) else 0)]) for pk in picks])
    sW = np.stack([np.concatenate([w[pk], np.zeros(width - len(pk))]) for w, pk in zip(W, picks)])

    def residual_fn(X, jac, Lr, ar):
        y, J = form.acc(X, Lr, jac)
        return y - ar, J

    X, f, _ = minimize_batched(residual_fn, np.concatenate(starts), sW[rows], bounds=form.bounds,
                               data=(L[at][rows], acc[at][rows]))
    out = []
    for s, w in enumerate(W):
        keep = w > 0
        Lk, ak, wk = L[keep], acc[keep], w[keep]

        def fun_and_grad(x, Lk=Lk, ak=ak, wk=wk):
            y, J = form.acc(x[None], Lk)
            r = y[0] - ak
            return float(0.5 * (wk * r) @ r), J[0].T @ (wk * r)

        mine = np.flatnonzero(rows == s)
        best = mine[np.argsort(np.where(np.isfinite(f[mine]), f[mine], np.inf))[:polish]]
        out.append(minimize_from_grid(fun_and_grad, X[best], form.names, form.bounds,
                                      residual_fn=lambda x, Lk=Lk, ak=ak: form.acc(x[None], Lk, jac=False)[0][0] - ak))
    return out


def fit_sigmoid_batched(form: SigmoidForm, x0, L, acc, weights, *, rtol: float = 1e-7, max_iter: int = 200):
    """Refit many weightings of the same points at once (bootstrap, weights [B, n]), warm-started from x0 [P]
    or [B, P]; the objective is fit_sigmoid's, 0.5 sum w (Acc-hat - acc)^2.

    By variable projection: given (k, L0) the best (a, b) is a bounded linear least-squares problem, solved
    exactly (`linear_optimum`), so each refit is a 2-parameter problem in (k, L0). Levenberg-Marquardt on
    that reduced objective with Kaufman's Gauss-Newton matrix (the Schur complement of the linear block of
    J^T W J; Golub & Pereyra 2003), k >= 0 by an active set, the acceptance and stopping rules of
    `ladder.laws.batched.minimize_batched`. A pass is one sigmoid and a few weighted sums per point, and the
    refits need about half the passes of the 4-parameter descent (docs/laws-history.md, "Speed", session 5).
    A start shared by all problems (the bootstrap's) costs one matrix product, not a pass (`_shared_start`),
    and a problem stops as soon as the model's gain left is under rtol, before paying for one more step. A start
    with k = 0 (a flat sigmoid) is refitted by that descent instead.
    Returns (X [B, P], objective [B], converged [B])."""
    L, y = np.asarray(L, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    W = np.ascontiguousarray(np.atleast_2d(np.asarray(weights, dtype=np.float64)))
    B = len(W)
    theta = np.array(form.full(np.broadcast_to(np.asarray(x0, dtype=np.float64), (B, len(form.names))))[:, 2:4])
    if (theta[:, 0] <= 0.0).any():
        return _refit_from_flat_start(form, x0, L, y, W, rtol)
    fits = _ProjectedFits(form, theta, L, y, W)
    lam, done = np.full(B, 1e-3), np.zeros(B, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        step, left = fits.step(idx, lam[idx])
        # Done when the model says less than rtol of the objective is left to gain, before paying for the
        # step's sigmoid. (A tiny gain from a damped step is no test here: where a linear parameter meets
        # its bound the model overshoots, the damping grows, and a short step gains little far from the
        # optimum.)
        stop = ~np.isfinite(left) | (left <= rtol * np.maximum(fits.f[idx], 1e-300))
        if stop.any():
            done[idx[stop]] = True
            idx, step = idx[~stop], step[~stop]
            if idx.size == 0:
                break
        accept = fits.take_step(idx, step)
        # an accepted step cuts the damping 30-fold (3-fold took 8% more passes, and 3 of the default's
        # 24,000 refits ran out of iterations: the damping fell too slowly after a run of rejections)
        lam[idx] = np.clip(np.where(accept, lam[idx] / 30.0, lam[idx] * 4.0), 1e-12, 1e12)
        done[idx] = lam[idx] >= 1e12
    return fits.params(), fits.f, done


class _ProjectedFits:
    """fit_sigmoid_batched's problems: each one's (k, L0) = theta [B, 2], the exact (a, b) and objective f
    there, its sigmoid s [B, n], and the weighted sums its reduced model reads (G [B, 5, 5]: `_sums`, with
    sum w s^2, sum w s from the trial). A rejected step leaves theta, so its sums are kept (`stale` marks
    the problems whose theta moved since they were formed)."""

    def __init__(self, form: SigmoidForm, theta, L, y, W):
        B = len(W)
        self.form, self.W, self.theta = form, W, theta
        self.const = {"1": W.sum(1), "y": W @ y, "yy": W @ (y * y)}
        # The points' fixed columns for the sums of d = s (1 - s): (1, u, y, u y, u^2) with u = L - c centred on
        # the start's midpoint c, so that L - L0 = u - (L0 - c) stays small and the expansion of
        # sum w d^2 (L - L0)^2 into these sums loses no digits (`_sums`).
        self.c = float(np.median(theta[:, 1]))
        u = L - self.c
        self.F_d = np.ascontiguousarray(np.column_stack([np.ones_like(L), u, y, u * y, u * u]))
        self.chunk = max(1, CHUNK_ELEMENTS // (5 * max(1, L.size)))
        self.trial = _projected_trial(form, L, y, W, self.const, self.chunk)
        self.G = np.empty((B, 5, 5))
        if (theta == theta[0]).all():
            # One start for all (the bootstrap's: the full fit): the sigmoid is the same row for every problem,
            # so the start's sums are one product of the weights with per-point columns (`_shared_start`), not
            # a sigmoid and two passes over [B, n] each.
            self.s = np.empty((B, L.size))  # a row is read only after an accepted step has written it
            self.a, self.b, self.f, lin, self.G[:] = _shared_start(form, theta[0], L, y, W, self.c, self.const)
            self.stale = np.zeros(B, dtype=bool)
        else:
            self.s, self.a, self.b, self.f, lin = self.trial(np.arange(B), theta)
            self.stale = np.ones(B, dtype=bool)
        self.S_ss, self.S_s = lin["ss"].copy(), lin["s"].copy()  # sum w s^2, sum w s at each current theta

    def step(self, idx, lam):
        """Problems idx's damped steps in (k, L0) and the gain their model says is left (`damped_step`),
        their sums formed again first where theta moved."""
        redo = idx[self.stale[idx]]
        if redo.size:
            G = self.G
            G[redo] = _sums(self.s[redo], self.W[redo], self.theta[redo, 1] - self.c, self.F_d, self.chunk)
            G[redo, 0, 0], G[redo, 0, 3] = self.S_ss[redo], self.S_s[redo]
            G[redo, 3, 0], G[redo, 3, 3] = self.S_s[redo], self.const["1"][redo]
        k = self.theta[idx, 0]
        g, H = reduced_model(self.form, self.G[idx], self.a[idx], self.b[idx], k)
        return damped_step(g, H, k, lam)

    def take_step(self, idx, step):
        """Move problems idx by step (k kept >= 0) where the objective does not rise; returns which moved."""
        th = self.theta[idx]
        th_new = th + step
        th_new[:, 0] = np.maximum(th_new[:, 0], 0.0)
        s_new, a_new, b_new, f_new, lin = self.trial(idx, th_new)
        accept = (f_new <= self.f[idx]) & np.isfinite(f_new)
        self.stale[idx] = accept
        self.theta[idx] = np.where(accept[:, None], th_new, th)
        moved = idx[accept]
        self.s[moved] = s_new[accept]
        self.S_ss[moved], self.S_s[moved] = lin["ss"][accept], lin["s"][accept]
        self.a[moved], self.b[moved], self.f[moved] = a_new[accept], b_new[accept], f_new[accept]
        return accept

    def params(self):
        """The problems' parameter rows [B, P] in the form's order."""
        if self.form.floor is None:
            return np.column_stack([self.a, self.b, self.theta])
        return np.column_stack([self.b, self.theta])


def _refit_from_flat_start(form: SigmoidForm, x0, L, y, W, rtol: float):
    """fit_sigmoid_batched's refits where a start is flat (k = 0): there s is constant, the exact (a, b) puts
    a = 0 and (k, L0) get no gradient, so variable projection cannot leave it; the 4-parameter descent,
    whose a is not reset, can. Returns (X [B, P], objective [B], converged [B])."""
    def residual_fn(X, jac):
        yh, J = form.acc(X, L, jac)
        return yh - y, J

    X0 = np.broadcast_to(np.asarray(x0, dtype=np.float64), (len(W), len(form.names)))
    return minimize_batched(residual_fn, X0, W, delta=None, bounds=form.bounds, rtol=rtol)


def _projected_trial(form: SigmoidForm, L, y, W, const: dict, chunk: int):
    """fit_sigmoid_batched's evaluation of trial points: trial(rows, th) -> (s, a, b, objective, sums), the
    sigmoid s [m, n] at th [m, 2] = (k, L0) of problems `rows`, the exact (a, b, objective) there
    (`linear_optimum`), and the sums (sum w s^2, sum w s) that `_sums` reuses. `chunk` problems at a time
    through one reused buffer, so their blocks stay in cache (every descent pass is one call)."""
    F_lin = np.ascontiguousarray(np.column_stack([np.ones_like(L), y]))  # the points' fixed columns (1, y)
    buf = np.empty((2, min(chunk, len(W)), L.size))

    def trial(rows, th):
        s = np.empty((len(th), L.size))
        R = np.empty((2, len(th), 2))
        for i in range(0, len(th), chunk):
            k, l0 = th[i : i + chunk, :1], th[i : i + chunk, 1:2]
            si, P = s[i : i + chunk], buf[:, : len(k)]
            np.subtract(L, l0, out=si)
            np.multiply(si, k, out=si)
            expit(si, out=si)
            np.multiply(W[rows[i : i + chunk]], si, out=P[0])
            np.multiply(P[0], si, out=P[1])
            np.matmul(P, F_lin, out=R[:, i : i + chunk])  # (ws, ws s) against (1, y)
        sums = {"ss": R[1, :, 0], "s": R[0, :, 0], "sy": R[0, :, 1], **{k: v[rows] for k, v in const.items()}}
        return (s,) + linear_optimum(form, sums) + (sums,)

    return trial


def _sums(s, W, L0c, F, chunk):
    """The weighted sums of products of (s, e, d, 1, y) per problem [m, 5, 5] that `reduced_model` reads and that
    depend on d = s (1 - s), the sigmoid's derivative in its argument, and e = d (L - L0): every one is a
    sum of w d, w d s or w d^2 against a column of F = (1, u, y, u y, u^2) (u = L - c, L0c = L0 - c), so
    one matrix product per `chunk` problems forms them all (the [3, chunk, n] block stays in cache); the
    sums of s alone come from the linear step (fit_sigmoid_batched fills them in)."""
    m, n = s.shape
    G = np.zeros((m, 5, 5))
    buf = np.empty((3, min(chunk, m), n))
    for i in range(0, m, chunk):
        si, k = s[i : i + chunk], len(s[i : i + chunk])
        d = si * (1.0 - si)
        P = buf[:, :k]
        np.multiply(W[i : i + chunk], d, out=P[0])   # w d
        np.multiply(P[0], si, out=P[1])              # w d s
        np.multiply(P[0], d, out=P[2])               # w d^2
        _fill_sums(G[i : i + chunk], np.matmul(P, F), L0c[i : i + chunk])  # [3, k, 5]: against F's columns
    return G


def _fill_sums(g, R, l0):
    """G's entries [m, 5, 5] from R [3, m, 5], the sums of (w d, w d s, w d^2) against F = (1, u, y, u y,
    u^2), at midpoints l0 = L0 - c [m] (`_sums`)."""
    wd, wds, wdd = R[0], R[1], R[2]
    g[:, 0, 1] = g[:, 1, 0] = wds[:, 1] - l0 * wds[:, 0]                              # sum w s e
    g[:, 0, 2] = g[:, 2, 0] = wds[:, 0]                                               # sum w s d
    g[:, 1, 1] = wdd[:, 4] - 2.0 * l0 * wdd[:, 1] + l0 * l0 * wdd[:, 0]               # sum w e^2
    g[:, 1, 2] = g[:, 2, 1] = wdd[:, 1] - l0 * wdd[:, 0]                              # sum w e d
    g[:, 2, 2] = wdd[:, 0]                                                            # sum w d^2
    g[:, 1, 3] = g[:, 3, 1] = wd[:, 1] - l0 * wd[:, 0]                                # sum w e
    g[:, 1, 4] = g[:, 4, 1] = wd[:, 3] - l0 * wd[:, 2]                                # sum w e y
    g[:, 2, 3] = g[:, 3, 2] = wd[:, 0]                                                # sum w d
    g[:, 2, 4] = g[:, 4, 2] = wd[:, 2]                                                # sum w d y


def _shared_start(form: SigmoidForm, th0, L, y, W, c, const):
    """fit_sigmoid_batched's start when every problem starts at the same (k, L0) = th0: the sigmoid s [n]
    is then one row, and every weighted sum the solver needs there is W [B, n] times a per-point column
    (s, s^2, s y for the linear step; d, d s, d^2 times F for `_sums`), so one matrix product [B, n] x
    [n, 18] gives them all. Returns (a, b, objective, linear sums, G [B, 5, 5]) as the solver's first
    `trial` and `_sums` would (equal up to rounding)."""
    s = expit(th0[0] * (L - th0[1]))
    d = s * (1.0 - s)
    u = L - c
    F = np.column_stack([np.ones_like(L), u, y, u * y, u * u])
    cols = np.column_stack([s, s * s, s * y, d[:, None] * F, (d * s)[:, None] * F, (d * d)[:, None] * F])
    P = W @ cols
    lin = {"ss": P[:, 1], "s": P[:, 0], "sy": P[:, 2], **const}
    a, b, f = linear_optimum(form, lin)
    G = np.zeros((len(W), 5, 5))
    _fill_sums(G, P[:, 3:].reshape(len(W), 3, 5).transpose(1, 0, 2), np.full(len(W), th0[1] - c))
    G[:, 0, 0], G[:, 0, 3], G[:, 3, 0], G[:, 3, 3] = lin["ss"], lin["s"], lin["s"], const["1"]
    return a, b, f, lin, G
