"""The algebra of step 2's bootstrap refits by variable projection (`sigmoid.fit_sigmoid_batched`).

Acc-hat = a s + b with s = sigmoid(k (L - L0)) is linear in (a, b): for fixed (k, L0) the best (a, b) is a
bounded linear least-squares problem solved exactly from a few weighted sums (`linear_optimum`), and the
refit descends the reduced objective in (k, L0) alone: its gradient and Kaufman Gauss-Newton matrix from the
sums (`reduced_model`), one damped step per iteration (`damped_step`). Kept apart from sigmoid.py, which holds
the form, the full fit and the solver's loop; the formulas are in docs/laws.md ("Bootstrap").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ladder.laws.sigmoid import SigmoidForm


def linear_optimum(form: SigmoidForm, S: dict):
    """The exact bounded least-squares (a, b) for fixed (k, L0), from each problem's weighted sums S.

    0.5 sum w (a s + b - y)^2 = 0.5 (c' Q c - 2 q' c + Syy), c = (a, b), Q = [[Sss, Ss], [Ss, S1]],
    q = (Ssy, Sy): a convex quadratic on the box a in [-1, 0], b in [0, 1], so its minimum is the
    unconstrained one if that lies in the box, else the best of the four edges' clipped 1-D minima (exact in
    2-D). Under a pinned floor a = floor - b, a 1-D problem in b. Returns (a, b, objective), [B] each."""
    Sss, Ss, S1, Ssy, Sy, Syy = (S[k] for k in ("ss", "s", "1", "sy", "y", "yy"))

    def value(a, b):
        return 0.5 * (a * a * Sss + 2 * a * b * Ss + b * b * S1 - 2 * a * Ssy - 2 * b * Sy + Syy)

    with np.errstate(divide="ignore", invalid="ignore"):
        if form.floor is not None:  # r = b (1 - s) - (y - floor s)
            F, (lo, hi) = form.floor, form.bounds[0]
            Stt, Sty = S1 - 2 * Ss + Sss, Sy - F * Ss - Ssy + F * Sss
            b = np.clip(np.where(Stt > 0, Sty / Stt, lo), lo, hi)
            return F - b, b, np.maximum(value(F - b, b), 0.0)
        det = Sss * S1 - Ss * Ss
        a0, b0 = (S1 * Ssy - Ss * Sy) / det, (Sss * Sy - Ss * Ssy) / det
        inside = (det > 0) & (a0 >= -1) & (a0 <= 0) & (b0 >= 0) & (b0 <= 1)
        cands = [(np.where(inside, a0, 0.0), np.where(inside, b0, 0.0))]
        for edge in (-1.0, 0.0):
            cands.append((np.full_like(Sss, edge), np.clip(np.where(S1 > 0, (Sy - edge * Ss) / S1, 0.0), 0.0, 1.0)))
        for edge in (0.0, 1.0):
            cands.append((np.clip(np.where(Sss > 0, (Ssy - edge * Ss) / Sss, 0.0), -1.0, 0.0), np.full_like(Sss, edge)))
    vals = np.stack([value(a, b) for a, b in cands])
    vals[0] = np.where(inside, vals[0], np.inf)
    best, pick = np.argmin(vals, 0), np.arange(len(Sss))
    a, b = np.stack([c[0] for c in cands])[best, pick], np.stack([c[1] for c in cands])[best, pick]
    return a, b, np.maximum(vals[best, pick], 0.0)


def reduced_model(form: SigmoidForm, G, a, b, k):
    """Gradient [m, 2] and Kaufman Gauss-Newton matrix [m, 2, 2] of the reduced objective in (k, L0), from
    the sums G (`sigmoid._sums`) at the exact linear optimum (a, b): r = a s + b - y, dr/dk = a e, dr/dL0 = -a k d,
    and the linear columns (s and 1; 1 - s under a pinned floor) not on a bound are projected out."""
    S = lambda i, j: G[:, i, j]  # noqa: E731  (0 s, 1 e, 2 d, 3 one, 4 y)
    ck, cl = a, -a * k          # scales of the theta columns: dr/dk = ck e, dr/dL0 = cl d
    g = np.stack([ck * (a * S(0, 1) + b * S(1, 3) - S(1, 4)), cl * (a * S(0, 2) + b * S(2, 3) - S(2, 4))], -1)
    Mtt = np.stack([np.stack([ck * ck * S(1, 1), ck * cl * S(1, 2)], -1),
                    np.stack([ck * cl * S(1, 2), cl * cl * S(2, 2)], -1)], 1)
    if form.floor is None:
        live = np.stack([(a > -1) & (a < 0), (b > 0) & (b < 1)], 1)
        Mct = np.stack([np.stack([ck * S(0, 1), cl * S(0, 2)], -1), np.stack([ck * S(1, 3), cl * S(2, 3)], -1)], 1)
        Mcc = np.stack([np.stack([S(0, 0), S(0, 3)], -1), np.stack([S(0, 3), S(3, 3)], -1)], 1)
    else:
        lo, hi = form.bounds[0]
        live = ((b > lo) & (b < hi))[:, None]
        Mct = np.stack([ck * (S(1, 3) - S(0, 1)), cl * (S(2, 3) - S(0, 2))], -1)[:, None]
        Mcc = (S(3, 3) - 2 * S(0, 3) + S(0, 0))[:, None, None]
    live = live.astype(np.float64)
    nc = live.shape[1]
    Mcc = Mcc * live[:, :, None] * live[:, None, :] + np.eye(nc) * (1.0 - live)[:, :, None]
    Mct = Mct * live[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        try:
            proj = np.linalg.solve(Mcc, Mct)
        except np.linalg.LinAlgError:  # s constant over the weighted points (k = 0): s and 1 are one column
            proj = np.matmul(np.linalg.pinv(Mcc), Mct)
        H = Mtt - np.matmul(np.swapaxes(Mct, 1, 2), proj)
    return g, np.where(np.isfinite(H), H, 0.0)


def damped_step(g, H, k, lam):
    """One Levenberg-Marquardt step in (k, L0) per problem from the reduced gradient g [m, 2] and Gauss-Newton
    matrix H [m, 2, 2], damping lam [m], and the model's own estimate of the objective left to gain (the
    undamped Newton decrement, fit_sigmoid_batched's stopping test). k on its bound (0) with the gradient
    pushing outward stays fixed this step (active set). Returns (step [m, 2], left [m])."""
    eye = np.eye(2)
    free = np.column_stack([~((k <= 0.0) & (g[:, 0] > 0)), np.ones(len(g), dtype=bool)])
    diag = np.diagonal(H, axis1=1, axis2=2)
    m = free.astype(np.float64)
    mask, unit = m[:, :, None] * m[:, None, :], eye * (1.0 - m)[:, :, None]
    A = (H + lam[:, None, None] * (diag[:, :, None] * eye + 1e-12 * eye)) * mask + unit
    step = -np.linalg.solve(A, (g * m)[..., None])[..., 0]
    newton = np.linalg.solve((H + 1e-12 * (diag[:, :, None] * eye + eye)) * mask + unit, (g * m)[..., None])[..., 0]
    return step, 0.5 * np.einsum("bp,bp->b", g * m, newton)
