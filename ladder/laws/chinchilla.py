"""Step 1: loss as a power law of parameters N and tokens D (or of compute C: D x FLOPs per token, or 6ND).

    L(N, D) = E + A / N^alpha + B / D^beta            (Hoffmann et al. 2022, eq. 2)
    log L   = LSE(a - alpha log N, b - beta log D, e)  with A = e^a, B = e^b, E = e^e

fitted by L-BFGS on the SUM over points of Huber(delta = 1e-3) of the log residual, from a grid of starts
(Besiroglu et al. 2024, "Chinchilla scaling: a replication attempt"). The compute-only form
L(C) = E + A / C^alpha is the same with one power term. Formulas and sources: docs/laws.md.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ladder.laws.newton import newton_batched
from ladder.laws.batched import minimize_batched, robust_loss
from ladder.laws.fitting import FitResult, best_starts, huber, key_of, memo_by_content, minimize_from_grid

HUBER_DELTA = 1e-3
# E = e^e may not fall below this (in the loss's own units): a fit that wants E -> 0 lands on the bound and is
# flagged, instead of drifting to e = -40 unseen (docs/laws.md, "Flags").
E_FLOOR = 1e-3
REFIT_RTOL = 1e-12  # a bootstrap refit stops when its Newton step gains, and promises, under this share of f
# A refit still short at its first 1,000 iterations (one crawling along a flat valley, E toward its floor) goes
# on alone for up to this many more: on the smoke ladder (1,000 resamples) 5.1% and 3.8% of two step-1 groups'
# refits were capped at 1,000 and BOOT fired on every task; after 3,000 more, 0.1% and 0.6% (the intervals the
# same to 3 digits; +6 CPU-s of 15, under load). OLMo's refits all converge within 1,000: never run there.
REFIT_MORE = 3_000


def _grid(*axes) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


@dataclass(frozen=True)
class LossForm:
    """One step-1 functional form: parameter names, a vectorised log-loss with Jacobian, a start grid."""

    name: str
    names: tuple[str, ...]
    grid: np.ndarray
    bounds: tuple[tuple[float | None, float | None], ...]

    def log_loss(self, X: np.ndarray, logN: np.ndarray, logD: np.ndarray, jac: bool = True):
        """log L-hat [B, n] for parameter rows X [B, P] and its Jacobian [B, n, P] (None unless jac)."""
        X = np.atleast_2d(X)
        # the hot path of every bootstrap: logaddexp, no stacked [B, n, terms] temporaries. logN, logD: [n],
        # or [B, n] (each problem its own points, ladder.laws.batched.minimize_batched's `data`)
        if self.name == "nd":
            a, b, e, alpha, beta = (X[:, i : i + 1] for i in range(5))
            t1, t2 = a - alpha * logN, b - beta * logD
            y = np.logaddexp(np.logaddexp(t1, t2), e)
            if not jac:
                return y, None
            p1, p2 = np.exp(t1 - y), np.exp(t2 - y)
            J = np.empty(y.shape + (5,))
            J[..., 0], J[..., 1], J[..., 2] = p1, p2, np.exp(e - y)
            J[..., 3], J[..., 4] = -p1 * logN, -p2 * logD
            return y, J
        a, e, alpha = (X[:, i : i + 1] for i in range(3))  # "c": compute C = 6ND
        logC = np.log(6.0) + logN + logD
        t1 = a - alpha * logC
        y = np.logaddexp(t1, e)
        if not jac:
            return y, None
        p1 = np.exp(t1 - y)
        J = np.empty(y.shape + (3,))
        J[..., 0], J[..., 1], J[..., 2] = p1, np.exp(e - y), -p1 * logC
        return y, J

    def log_loss_by_exp(self, X: np.ndarray, logN: np.ndarray, logD: np.ndarray, jac: bool = True):
        """`log_loss` (equal to rounding) with one exp per power term and point, one log per point and E's
        exp once per row: every term is shifted by its row's largest (no overflow); a point whose terms all
        fall 700 below that is recomputed shifted by its own largest (no underflow). Two transcendentals
        fewer per point than `log_loss`'s two logaddexps (and three exps for the Jacobian), which are most of
        a bootstrap refit's pass (`refit_loss_many`). The full fits keep `log_loss`, digit for digit."""
        y, kept = self.log_loss_kept(X, logN, logD)
        return (y, self.jacobian_kept(kept, logN, logD)) if jac else (y, None)

    def log_loss_kept(self, X: np.ndarray, logN: np.ndarray, logD: np.ndarray):
        """`log_loss_by_exp`'s value and the terms its Jacobian is made of, kept [B, terms + 2, n] = (the power
        terms' and E's shifted exps, their sum): an accepted bootstrap trial's Jacobian (`jacobian_kept`)
        then takes no exp again (newton.newton_batched's `trial`). The same bits as log_loss_by_exp."""
        X = np.atleast_2d(X)
        if self.name == "nd":
            a, b, e, alpha, beta = (X[:, i : i + 1] for i in range(5))
            powers = [a - alpha * logN, b - beta * logD]
        else:  # "c"
            a, e, alpha = (X[:, i : i + 1] for i in range(3))
            powers = [a - alpha * (np.log(6.0) + logN + logD)]
        top = np.maximum(e[:, 0], np.max([t.max(-1) for t in powers], 0))[:, None]
        parts = [np.exp(t - top) for t in powers]
        pe = np.exp(e - top)
        total = pe + parts[0]
        for q in parts[1:]:
            total += q
        low = np.flatnonzero((total < 1e-300).any(-1))
        if low.size:  # terms spread over more than exp's range in a row: shift those rows point by point
            tops = np.maximum(np.max([t[low] for t in powers], 0), e[low])
            for q, t in zip(parts, powers):
                q[low] = np.exp(t[low] - tops)
            pe = np.broadcast_to(pe, total.shape).copy()
            pe[low] = np.exp(e[low] - tops)
            total[low] = pe[low] + sum(q[low] for q in parts)
            top = np.broadcast_to(top, total.shape).copy()
            top[low] = tops
        return top + np.log(total), np.stack(parts + [np.broadcast_to(pe, total.shape), total], 1)

    def jacobian_kept(self, kept: np.ndarray, logN: np.ndarray, logD: np.ndarray) -> np.ndarray:
        """The Jacobian [B, n, P] of log L-hat from `log_loss_kept`'s terms: J = each term's softmax weight
        (times its power's column for the exponents)."""
        total = kept[:, -1]
        inv = 1.0 / total
        J = np.empty(total.shape + (len(self.names),))
        ps = [kept[:, j] * inv for j in range(kept.shape[1] - 2)]
        if self.name == "nd":
            J[..., 0], J[..., 1], J[..., 2] = ps[0], ps[1], kept[:, -2] * inv
            J[..., 3], J[..., 4] = -ps[0] * logN, -ps[1] * logD
        else:
            J[..., 0], J[..., 1], J[..., 2] = ps[0], kept[:, -2] * inv, -ps[0] * (np.log(6.0) + logN + logD)
        return J

    def curvature(self, J: np.ndarray, v: np.ndarray, logN: np.ndarray, logD: np.ndarray) -> np.ndarray:
        """sum_i v[b, i] d2(log L-hat_i)/dx2 [B, P, P] from the Jacobian J [B, n, P] of `log_loss`.

        log L-hat = LSE_j(t_j) with each term t_j linear in x (rows tau_j): its Hessian is
        sum_j p_j tau_j tau_j^T - grad grad^T, p the terms' softmax, which J already holds (J = sum_j p_j tau_j),
        so the exact Hessian costs a few weighted sums (newton.newton_batched)."""
        out = -np.matmul(np.swapaxes(J * v[..., None], 1, 2), J)
        s = np.einsum("bn,bnp->bp", v, J)  # sum v p_j tau_j, read off J's columns
        if self.name == "nd":
            out[:, 0, 0] += s[:, 0]
            out[:, 1, 1] += s[:, 1]
            out[:, 2, 2] += s[:, 2]
            out[:, 0, 3] += s[:, 3]
            out[:, 3, 0] += s[:, 3]
            out[:, 1, 4] += s[:, 4]
            out[:, 4, 1] += s[:, 4]
            out[:, 3, 3] -= np.einsum("bn,bn->b", v * J[..., 3], np.broadcast_to(logN, v.shape))
            out[:, 4, 4] -= np.einsum("bn,bn->b", v * J[..., 4], np.broadcast_to(logD, v.shape))
        else:
            logC = np.log(6.0) + logN + logD
            out[:, 0, 0] += s[:, 0]
            out[:, 1, 1] += s[:, 1]
            out[:, 0, 2] += s[:, 2]
            out[:, 2, 0] += s[:, 2]
            out[:, 2, 2] -= np.einsum("bn,bn->b", v * J[..., 2], np.broadcast_to(logC, v.shape))
        return out

    def predict(self, params: dict | np.ndarray, N, D) -> np.ndarray:
        """L-hat at (N, D), broadcasting N and D; params a dict or an array [P] or [B, P] (-> [B, ...])."""
        x = np.array([params[k] for k in self.names]) if isinstance(params, dict) else np.asarray(params)
        N, D = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64))
        y, _ = self.log_loss(np.atleast_2d(x), np.log(N).reshape(-1), np.log(D).reshape(-1), jac=False)
        out = np.exp(y).reshape((-1,) + N.shape)
        return out[0] if x.ndim == 1 else out

    def readable(self, params: dict) -> dict:
        """E, A, B (and alpha, beta) as in the paper's tables, from the log-space parameters."""
        out = {"E": float(np.exp(params["e"])), "A": float(np.exp(params["a"])), "alpha": params["alpha"]}
        if self.name == "nd":
            out |= {"B": float(np.exp(params["b"])), "beta": params["beta"]}
        return out


# Besiroglu et al.'s grid: a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, 0.5, ..., 2}.
LOSS_ND = LossForm("nd", ("a", "b", "e", "alpha", "beta"),
                   _grid(np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
                         np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5)),
                   ((None, None), (None, None), (np.log(E_FLOOR), None), (0.0, None), (0.0, None)))
# Compute-only: C spans more decades than N or D, so a reaches further. Bounds as the paper's step1_flops:
# A >= 1, 0 <= alpha <= 1, E >= 0 (here E >= E_FLOOR).
LOSS_C = LossForm("c", ("a", "e", "alpha"),
                  _grid(np.arange(0, 65, 5), np.arange(-1, 1.5, 0.5), np.arange(0, 1.05, 0.05)),
                  ((0.0, None), (np.log(E_FLOOR), None), (0.0, 1.0)))
FORMS = {"nd": LOSS_ND, "c": LOSS_C}


def _objective(form: LossForm, logN, logD, logL, w, delta):
    def fun_and_grad(x):
        y, J = form.log_loss(x[None], logN, logD)
        # robust_loss's value and derivative without its IRLS curvature, which the polish never reads (three
        # passes over every point per evaluation: the full fits on 62,500 points); the same values
        v, d = robust_loss(y[0] - logL, None)[:2] if delta is None else huber(y[0] - logL, delta)
        return float(w @ v), J[0].T @ (w * d)

    def batch(X):
        y, _ = form.log_loss(X, logN, logD, jac=False)
        return (w * robust_loss(y - logL, delta)[0]).sum(-1)

    return fun_and_grad, batch


SEARCH_POINTS = 512  # most points the start search of fit_loss scores (see there)


def fit_loss(form: LossForm, N, D, L, *, weights=None, delta: float = HUBER_DELTA, top_k: int = 64,
             polish: int = 2) -> FitResult:
    """Fit `form` to points (N, D, L): sum of Huber(delta) of log residuals, L-BFGS from the best grid starts.

    The whole grid is scored in one vectorised pass; its `top_k` best rows are descended together by the
    batched solver, and L-BFGS-B (analytic gradient) finishes from the `polish` best of those, so the result
    is an L-BFGS optimum of the published objective at a fraction of the cost of 4,500 scalar runs.
    Residuals are log L-hat - log L.
    """
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[None]
    return fit_loss_many(form, N, D, L, w, delta=delta, top_k=top_k, polish=polish)[0]


@memo_by_content
def fit_loss_many(form: LossForm, N, D, L, weights=None, *, delta: float = HUBER_DELTA, top_k: int = 64,
                  polish: int = 2) -> list[FitResult]:
    """`fit_loss` for S weightings of the same points at once (weights [S, n]; 0 leaves a point out): the
    back-tests fit each split as a 0/1 weighting of the ladder's runs, so the grid search and the batched
    descent of all splits share numpy passes; each split is then polished by L-BFGS-B on its own. A point of
    weight 0 adds exactly 0 to a split's objective and gradient: the fits equal separate ones (to rounding).
    Residuals are those of the weighted points. One problem of `fit_loss_tasks`."""
    return fit_loss_tasks(form, [(N, D, L, weights)], delta=delta, top_k=top_k, polish=polish)[0]


def fit_loss_tasks(form: LossForm, problems, *, delta: float = HUBER_DELTA, top_k: int = 64,
                   polish: int = 2) -> list[list[FitResult]]:
    """`fit_loss_many` for U problems at once (problems: (N, D, L, weights) each, e.g. one per task of a ladder):
    the batched descents of all problems with equally many points run in one solver call (each problem's rows
    carry its own points), so the per-iteration cost of numpy's calls is paid once, not once per task; each
    problem's iterates, and so its fits, are those of its own fit_loss_many, bit for bit (tested). Problems
    with equal data (the `lm-loss` step 1 of every task: one LM loss) are fitted once."""
    keys = [key_of(p) for p in problems]
    unique = list(dict.fromkeys(keys))
    first = {k: problems[keys.index(k)] for k in unique}
    prepared = {k: _search_starts(form, *first[k], delta=delta, top_k=top_k) for k in unique}
    by_size: dict[int, list] = {}
    for k in unique:
        by_size.setdefault(prepared[k]["sL"].size, []).append(k)
    for ks in by_size.values():  # one solver call per point count (the rows of `data` must be of one length)
        X0 = np.concatenate([prepared[k]["X0"] for k in ks])
        W = np.concatenate([prepared[k]["sW"][prepared[k]["rows"]] for k in ks])
        data = tuple(np.concatenate([np.broadcast_to(prepared[k][v], (len(prepared[k]["X0"]), prepared[k][v].size))
                                     for k in ks]) for v in ("sN", "sD", "sL"))

        def residual_fn(X, jac, logN, logD, logL):
            y, J = form.log_loss(X, logN, logD, jac)
            return y - logL, J

        X, f, _ = minimize_batched(residual_fn, X0, W, delta=delta, max_iter=300, bounds=form.bounds, data=data)
        at = 0
        for k in ks:
            n = len(prepared[k]["X0"])
            prepared[k]["X"], prepared[k]["f"] = X[at: at + n], f[at: at + n]
            at += n
    done = {k: _polish(form, prepared[k], delta, polish) for k in unique}
    return [done[k] for k in keys]


def _search_starts(form: LossForm, N, D, L, weights, *, delta: float, top_k: int) -> dict:
    """One problem's log data and the batched descent's starts: the `top_k` best grid rows of each weighting.
    The grid and the descent only choose where L-BFGS starts: on a large table (62,500 runs) they see an
    evenly spaced subset of SEARCH_POINTS points (cost grid x points), the final L-BFGS sees all. Tables up to
    SEARCH_POINTS points (every ladder so far) are fitted exactly as before."""
    logN, logD, logL = (np.log(np.asarray(v, dtype=np.float64)) for v in (N, D, L))
    W = np.ones((1, logL.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    pick = (np.linspace(0, len(logL) - 1, SEARCH_POINTS).round().astype(int) if len(logL) > SEARCH_POINTS
            else slice(None))
    sN, sD, sL, sW = logN[pick], logD[pick], logL[pick], W[:, pick]
    y, _ = form.log_loss(form.grid, sN, sD, jac=False)
    rho = robust_loss(y - sL, delta)[0]                                   # [G, n]: every grid row scored once
    starts, rows = [], []
    for s, w in enumerate(sW):
        starts.append(best_starts(lambda X, w=w: rho @ w, form.grid, top_k))
        rows += [s] * len(starts[-1])
    return {"logN": logN, "logD": logD, "logL": logL, "W": W, "sN": sN, "sD": sD, "sL": sL, "sW": sW,
            "X0": np.concatenate(starts), "rows": np.array(rows)}


def _polish(form: LossForm, p: dict, delta: float, polish: int) -> list[FitResult]:
    """Each weighting's `polish` best descended starts, finished by L-BFGS-B on all its points."""
    logN, logD, logL, rows, X, f = p["logN"], p["logD"], p["logL"], p["rows"], p["X"], p["f"]
    out = []
    for s, w in enumerate(p["W"]):
        keep = w > 0
        fun_and_grad, _ = _objective(form, logN[keep], logD[keep], logL[keep], w[keep], delta)
        mine = np.flatnonzero(rows == s)
        best = mine[np.argsort(np.where(np.isfinite(f[mine]), f[mine], np.inf))[:polish]]
        out.append(minimize_from_grid(
            fun_and_grad, X[best], form.names, list(form.bounds),
            residual_fn=lambda x, k=keep: form.log_loss(x[None], logN[k], logD[k], jac=False)[0][0] - logL[k]))
    return out


def refit_loss_many(form: LossForm, x0s, N, D, L, weights, *, delta: float = HUBER_DELTA, rtol: float = REFIT_RTOL,
                    max_iter: int = 1000, more: int = REFIT_MORE):
    """`fit_loss_batched` for U problems at once (x0s [U, P]; N, D, L [U, n]: each problem's own points, e.g.
    one per task) under the same B weightings (weights [B, n]): one solver call (newton.newton_batched, the
    objective's exact Hessian), so the few refits that walk for hundreds of iterations share those iterations
    instead of paying them once per task. Refits not converged after `max_iter` go on alone for up to `more`
    iterations (REFIT_MORE). Returns X [U, B, P], objective [U, B], converged [U, B]."""
    x0s = np.atleast_2d(np.asarray(x0s, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    U, B = len(x0s), len(weights)
    data = tuple(np.repeat(np.log(np.atleast_2d(np.asarray(v, dtype=np.float64))), B, 0) for v in (N, D, L))
    residual_fn, curvature_fn, to_solver, from_solver, bounds, trial = _linear_e(form)
    W = np.tile(weights, (U, 1))
    X, f, c = newton_batched(residual_fn, curvature_fn, to_solver(np.repeat(x0s, B, 0)), W,
                             delta=delta, max_iter=max_iter, rtol=rtol, bounds=bounds, data=data, trial=trial)
    short = np.flatnonzero(~c)
    if short.size and more:  # the few capped refits go on from where they stopped; the others keep their bits
        X[short], f[short], c[short] = newton_batched(
            residual_fn, curvature_fn, X[short], W[short], delta=delta, max_iter=more, rtol=rtol, bounds=bounds,
            data=tuple(d[short] for d in data), trial=trial)
    return from_solver(X).reshape(U, B, -1), f.reshape(U, B), c.reshape(U, B)


def _linear_e(form: LossForm):
    """The refit's problem with E = e^e itself as the solver's coordinate in place of e (bound E >= E_FLOOR):
    the same objective, but the law is linear in E, so a resample whose E falls from 0.6 toward the floor walks
    one straight valley instead of an ever flatter exponential one (measured: a quarter of the step-1 refits
    of bench/bench_bootstrap_convergence.py need it). Returns (residual_fn, curvature_fn, to_solver,
    from_solver, bounds, trial) for newton.newton_batched."""
    k = form.names.index("e")

    def from_solver(X):
        Xl = X.copy()
        Xl[:, k] = np.log(X[:, k])
        return Xl

    def to_solver(X):
        Xe = np.array(X, dtype=np.float64)
        Xe[:, k] = np.exp(Xe[:, k])
        return Xe

    def residual_fn(X, jac, logN, logD, logL):
        y, J = form.log_loss_by_exp(from_solver(X), logN, logD, jac)
        if jac:
            J[..., k] /= X[:, k: k + 1]          # d/dE = (d/de) / E
        return y - logL, J

    def value_fn(X, logN, logD, logL):           # newton_batched's `trial`: the residuals, and the exps kept
        y, kept = form.log_loss_kept(from_solver(X), logN, logD)
        return y - logL, np.concatenate([kept, (y - logL)[:, None]], 1)

    def jacobian_fn(X, kept, logN, logD, logL):  # ... from which an accepted trial's Jacobian is made
        J = form.jacobian_kept(kept[:, :-1], logN, logD)
        J[..., k] /= X[:, k: k + 1]
        return kept[:, -1], J

    def curvature_fn(X, r, J, v, logN, logD, logL):
        E = X[:, k]
        Je = J.copy()
        Je[..., k] *= E[:, None]                 # the Jacobian in e again
        S = form.curvature(Je, v, logN, logD)    # in e; to E: chain rule, plus d2e/dE2 = -1/E^2 times grad
        S[:, k, :] /= E[:, None]
        S[:, :, k] /= E[:, None]
        S[:, k, k] -= np.einsum("bn,bn->b", v, Je[..., k]) / E ** 2
        return S

    bounds = list(form.bounds)
    bounds[k] = (E_FLOOR, None)
    return residual_fn, curvature_fn, to_solver, from_solver, bounds, (value_fn, jacobian_fn)


def fit_loss_batched(form: LossForm, x0, N, D, L, weights, *, delta: float = HUBER_DELTA, rtol: float = REFIT_RTOL):
    """Refit many weightings of the same points at once (bootstrap), warm-started from the full fit x0 [P].

    weights [B, n] (e.g. how often each point's run was drawn). `rtol`: stop when a Newton step gains, and the
    model promises, less than this fraction of the objective (REFIT_RTOL: the refit is at its optimum).
    Returns (X [B, P], objective [B], converged [B]); one problem of `refit_loss_many`.
    """
    X, f, c = refit_loss_many(form, np.asarray(x0, dtype=np.float64)[None], np.asarray(N)[None], np.asarray(D)[None],
                              np.asarray(L)[None], weights, delta=delta, rtol=rtol)
    return X[0], f[0], c[0]
