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
from ladder.laws.fitting import FitResult, best_starts, minimize_batched, minimize_from_grid


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
    split is polished alone; the fits equal separate ones (to rounding)."""
    L, acc = np.asarray(L, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    W = np.ones((1, L.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    starts, rows, search = [], [], np.zeros_like(W)
    for s, w in enumerate(W):
        keep = np.flatnonzero(w > 0)
        # The start search sees at most SEARCH_POINTS evenly spaced points of the split
        # (ladder.laws.chinchilla.fit_loss explains why); L-BFGS-B below fits all of them.
        pick = keep[np.linspace(0, len(keep) - 1, SEARCH_POINTS).round().astype(int)] if len(keep) > SEARCH_POINTS \
            else keep
        search[s, pick] = w[pick]
        sw, sL, sacc = w[pick], L[pick], acc[pick]
        starts.append(best_starts(
            lambda X: 0.5 * (sw * (form.acc(X, sL, jac=False)[0] - sacc) ** 2).sum(-1), form.grid(L[keep]), top_k))
        rows += [s] * len(starts[-1])
    rows = np.array(rows)
    used = np.flatnonzero(search.any(0))  # the union of the splits' search points

    def residual_fn(X, jac):
        y, J = form.acc(X, L[used], jac)
        return y - acc[used], J

    X, f, _ = minimize_batched(residual_fn, np.concatenate(starts), search[rows][:, used], bounds=form.bounds)
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


def fit_sigmoid_batched(form: SigmoidForm, x0, L, acc, weights, *, rtol: float = 1e-7):
    """Refit many weightings of the same points at once (bootstrap), warm-started from x0 [P] or [B, P]."""
    L, acc = np.asarray(L, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    weights = np.atleast_2d(weights)
    X0 = np.broadcast_to(np.asarray(x0, dtype=np.float64), (len(weights), len(form.names)))

    def residual_fn(X, jac):
        y, J = form.acc(X, L, jac)
        return y - acc, J

    return minimize_batched(residual_fn, X0, weights, delta=None, bounds=form.bounds, rtol=rtol)

