"""The D-CPT law (Que et al. 2024): loss after continual pretraining on a general/domain mixture.

    L(N, D, r) = E + A/N^alpha + B r^eta / D^beta + C / (r + eps)^gamma           (9 parameters, all > 0)

N is the model size, D the continual-pretraining (CPT) tokens and r the mixture share of the loss's OWN
data: the domain share for the domain loss, the general share (1 - domain share) for the general loss, so
one form serves both and dL/dr < 0 is the property to check. The cross-domain variant adds F / K^mu, with K
a learnability coefficient measured by a cheap probe run on a new domain (`learnability`).

Fitting follows the Chinchilla replication (Besiroglu et al. 2024): log L = LSE(e, a - alpha log N,
b + eta log r - beta log D, c - gamma log(r + eps)), the SUM over points of Huber(delta) on the log
residual, L-BFGS-B from a grid of starts (`ladder.laws.fitting.minimize_from_grid`), analytic gradients.
At r = 0 the B term is exactly zero (its log is -inf and its softmax weight 0).

The three decision rules built on a fitted law live in `ladder.laws.dcpt_rules`.
Formulas and sources: docs/specialization.md. numpy/scipy only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ladder.errors import LadderError, require
from ladder.laws.fitting import FitResult, log_sum_exp_huber, minimize_from_grid
from ladder.laws.specialization_rows import keep_domain, note_dropped, require_cpt_tokens, require_no_infinite
from ladder.results import last_rows

# Fit-space parameters: amplitudes as logs (so they stay > 0), exponents bounded > 0, eps as a log.
NAMES = ("e", "a", "alpha", "b", "eta", "beta", "c", "gamma", "log_eps")
CROSS_NAMES = NAMES + ("f", "mu")
K_WEIGHT_NAMES = CROSS_NAMES + ("log_w",)  # + the learnability's decline weight w2/w1, fitted
BOUNDS = {
    "e": (-10.0, 10.0), "a": (-30.0, 60.0), "b": (-30.0, 60.0), "c": (-30.0, 30.0), "f": (-30.0, 30.0),
    "alpha": (1e-3, 2.0), "beta": (1e-3, 2.0), "eta": (1e-3, 5.0), "gamma": (1e-3, 5.0), "mu": (1e-3, 5.0),
    "log_eps": (np.log(1e-4), np.log(10.0)), "log_w": (np.log(1e-3), np.log(1e3)),
}
HUBER_DELTA = 1e-3


@dataclass(frozen=True)
class DcptLaw:
    """A fitted D-CPT law; `r` is always the share of the loss's own data in the CPT mixture."""

    E: float
    A: float
    alpha: float
    B: float
    eta: float
    beta: float
    C: float
    gamma: float
    eps: float
    F: float = 0.0  # cross-domain term F / K^mu (0 = plain D-CPT law)
    mu: float = 0.0

    def __call__(self, n, d, r, k=None) -> np.ndarray:
        n, d, r = (np.asarray(v, dtype=np.float64) for v in (n, d, r))
        loss = self.E + self.A / n**self.alpha + self.B * r**self.eta / d**self.beta + self.C / (r + self.eps) ** self.gamma
        if self.F:
            require(k is not None, "k", "this is a cross-domain law and needs the learnability K", "pass k=")
            loss = loss + self.F / np.asarray(k, dtype=np.float64) ** self.mu
        return loss

    def dloss_dr(self, n, d, r) -> np.ndarray:
        """dL/dr = B eta r^(eta-1) / D^beta - C gamma / (r + eps)^(gamma+1) (N and K do not enter)."""
        d, r = np.asarray(d, dtype=np.float64), np.asarray(r, dtype=np.float64)
        return self.B * self.eta * r ** (self.eta - 1) / d**self.beta - self.C * self.gamma / (r + self.eps) ** (self.gamma + 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_fit(cls, p: dict) -> "DcptLaw":
        return cls(E=np.exp(p["e"]), A=np.exp(p["a"]), alpha=p["alpha"], B=np.exp(p["b"]), eta=p["eta"],
                   beta=p["beta"], C=np.exp(p["c"]), gamma=p["gamma"], eps=np.exp(p["log_eps"]),
                   F=np.exp(p["f"]) if "f" in p else 0.0, mu=p.get("mu", 0.0))


@dataclass
class Points:
    """(N, D, r, loss) observations; `k` (learnability) only for the cross-domain law; `run` labels rows."""

    n: np.ndarray
    d: np.ndarray
    r: np.ndarray
    loss: np.ndarray
    k: np.ndarray | None = None
    run: np.ndarray | None = None
    # The probe's two features per point (its domain's): the base model's initial domain loss L0 and the
    # loss after the probe; with them the cross-domain fit can fit the learnability weight w2/w1 itself.
    l0: np.ndarray | None = None
    l_probe: np.ndarray | None = None
    domain: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.loss)

    def subset(self, mask: np.ndarray) -> "Points":
        pick = lambda v: None if v is None else v[mask]  # noqa: E731
        return Points(self.n[mask], self.d[mask], self.r[mask], self.loss[mask], pick(self.k), pick(self.run),
                      pick(self.l0), pick(self.l_probe), pick(self.domain))


def validate_points(p: Points, n_params: int = len(NAMES)) -> None:
    """Bad input as LadderErrors naming the field: ratios outside [0, 1], non-positive N/D/loss, too few points."""
    for name, v in (("n", p.n), ("d_cpt", p.d), ("loss", p.loss)):
        bad = ~(np.isfinite(v) & (v > 0))
        require(not bad.any(), name, f"must be finite and > 0, got {v[bad][:3].tolist()}", "fix or drop those rows")
    bad = ~((p.r >= 0) & (p.r <= 1))
    where = f" (runs {sorted(set(p.run[bad].tolist()))[:3]})" if p.run is not None and bad.any() else ""
    require(not bad.any(), "r", f"mixture ratios must lie in [0, 1], got {p.r[bad][:3].tolist()}{where}",
            "write r as the domain share of the CPT mixture (0 = all general, 1 = all domain)")
    distinct = len({(a, b, c) for a, b, c in zip(p.n, p.d, p.r)})
    require(distinct > n_params, "results",
            f"{distinct} distinct (N, D, r) points cannot pin down the law's {n_params} parameters",
            f"add CPT runs: at least {n_params + 1} points over 2+ sizes, 2+ token budgets and 3+ ratios")
    for name, v, need in (("n", p.n, 2), ("d_cpt", p.d, 2), ("r", p.r, 3)):
        require(len(np.unique(v)) >= need, name, f"only {len(np.unique(v))} distinct values",
                f"the law needs at least {need} distinct values of {name} to separate its terms")


def points_from_table(table: dict[str, np.ndarray], loss: str = "domain", *, domain: str | None = None,
                      steps: str = "final") -> Points:
    """Extract D-CPT points from a results table (columns documented in docs/specialization.md).

    `loss="domain"` uses `domain_loss` with r = domain share; `loss="general"` uses `general_loss` with the
    general share 1 - r. Rows with d_cpt <= 0 (base runs) are not CPT points. `steps="final"` keeps each
    run's last evaluated step (the only point on a decayed schedule); "all" keeps every step.
    """
    require(loss in ("domain", "general"), "loss", f"unknown loss {loss!r}", "use 'domain' or 'general'")
    column = f"{loss}_loss"
    for col in ("run", "n", "step", "r", "d_cpt", column):
        require(col in table, col, "column missing from the results table",
                "write CPT rows with the columns listed in docs/specialization.md")
    run, n, step, r, d = table["run"], table["n"], table["step"], table["r"], table["d_cpt"]
    require_cpt_tokens(table)
    require_no_infinite(table[column], run, step, column)
    keep = np.isfinite(d) & (d > 0) & np.isfinite(table[column])
    note_dropped(np.isfinite(d) & (d > 0) & ~np.isfinite(table[column]), run, step,
                 f"CPT rows with a blank or NaN {column}")
    keep = keep_domain(table, keep, domain, "CPT rows")
    if steps == "final":
        last = last_rows(run, step, keep)
        keep = np.zeros_like(keep)
        keep[last] = True
    # One point per (run, step): the losses repeat on every task row.
    seen, idx = set(), []
    for i in np.flatnonzero(keep):
        if (run[i], step[i]) not in seen:
            seen.add((run[i], step[i]))
            idx.append(i)
    idx = np.array(idx, dtype=int)
    # a canonical point order (N, D, r, run, step): the fit sums over points, so the table's row order would
    # otherwise move a weakly determined fit (before: a shuffled table moved the general law's E 0.28 -> 0.52)
    idx = idx[np.lexsort((step[idx], run[idx], r[idx], d[idx], n[idx]))] if len(idx) else idx
    share = r[idx] if loss == "domain" else 1.0 - r[idx]
    k = table["k"][idx] if "k" in table else None
    p = Points(n[idx], d[idx], share, table[column][idx], k, run[idx])
    bad = ~((r[idx] >= 0) & (r[idx] <= 1))
    require(not bad.any(), "r", f"mixture ratios must lie in [0, 1], got {r[idx][bad][:3].tolist()} "
            f"(runs {sorted(set(run[idx][bad].tolist()))[:3]})", "write r as the domain share of the CPT mixture")
    return p


def positive_share(p: Points) -> Points:
    """The points with own-data share r > 0: the fitting range of the study's `positive_share` variant.

    At share 0 the law is E + A/N^alpha + C/eps^gamma, flat in D and with the same N dependence as every
    other share. Continued pretraining with none of the loss's own data measures transfer and forgetting
    instead: at smoke scale the general loss after domain-only CPT rises with D (forgetting grows) and the
    domain loss after general-only CPT follows the re-warmup's stability gap; those points were 54% (domain)
    and 74% (general) of the squared residuals (docs/specialization.md, "Smoke study"). The form is the
    published one; only the fitted range differs, and rule (a) needs the general law near share 1 and the
    domain law at r > 0, both inside it.
    """
    return p.subset(p.r > 0)


def _terms(x: np.ndarray, p: Points):
    """Log-space terms t [P, J] of the LSE and their partial derivatives wrt x, as (t, list of (j, dt/dx_j))."""
    cross = len(x) >= len(CROSS_NAMES)
    e, a, alpha, b, eta, beta, c, gamma, log_eps = x[:9]
    log_n, log_d = np.log(p.n), np.log(p.d)
    pos = p.r > 0
    log_r = np.where(pos, np.log(np.where(pos, p.r, 1.0)), 0.0)
    eps = np.exp(log_eps)
    log_re = np.log(p.r + eps)
    ones = np.ones_like(log_n)
    t = [e * ones, a - alpha * log_n, np.where(pos, b + eta * log_r - beta * log_d, -np.inf), c - gamma * log_re]
    # d t_j / d x_i for the parameters that enter term j (others are zero).
    grads = [
        {0: ones},
        {1: ones, 2: -log_n},
        {3: ones, 4: log_r, 5: -log_d},
        {6: ones, 7: -log_re, 8: -gamma * eps / (p.r + eps)},
    ]
    if len(x) == len(K_WEIGHT_NAMES):  # K = 1/L0 + w (L0 - L_probe)/L0 with w fitted
        f, mu, log_w = x[9:]
        decline = np.exp(log_w) * (p.l0 - p.l_probe) / p.l0
        k = np.maximum(1.0 / p.l0 + decline, 1e-12)
        t.append(f - mu * np.log(k))
        grads.append({9: ones, 10: -np.log(k), 11: -mu * decline / k})
    elif cross:
        f, mu = x[9:]
        log_k = np.log(p.k)
        t.append(f - mu * log_k)
        grads.append({9: ones, 10: -log_k})
    return np.stack(t, axis=1), grads


def _objective(x: np.ndarray, p: Points, delta: float) -> tuple[float, np.ndarray]:
    t, grads = _terms(x, p)
    return log_sum_exp_huber(t, grads, np.log(p.loss), delta, len(x))


def _starts(p: Points, cross: bool, n_starts: int, seed: int) -> np.ndarray:
    """A seeded sample of a grid of starts. Amplitudes start so each term is a set fraction of the median loss."""
    lmin, lmed = float(p.loss.min()), float(np.median(p.loss))
    mlog_n, mlog_d = float(np.median(np.log(p.n))), float(np.median(np.log(p.d)))
    axes = {
        "e": [np.log(0.5 * lmin), np.log(0.85 * lmin)],
        "alpha": [0.2, 0.5], "eta": [0.5, 1.5], "beta": [0.2, 0.5], "gamma": [0.1, 0.5],
        "log_eps": [np.log(0.01), np.log(0.3)], "mu": [0.3, 1.0],
        "share": [0.05, 0.3],  # each power-law term's size at the median point, as a fraction of the loss
    }
    names = (K_WEIGHT_NAMES if cross == "fit_k_weight" else CROSS_NAMES) if cross else NAMES
    grid = list(itertools.product(*(axes[k] for k in ("e", "alpha", "eta", "beta", "gamma", "log_eps", "share"))))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(grid), size=min(n_starts, len(grid)), replace=False)
    starts = []
    for i in pick:
        e, alpha, eta, beta, gamma, log_eps, share = grid[i]
        amp = np.log(share * lmed)
        row = [e, amp + alpha * mlog_n, alpha, amp + beta * mlog_d, eta, beta, amp, gamma, log_eps]
        if cross:
            log_k = np.log(p.k) if p.k is not None else np.log(1.0 / p.l0 + (p.l0 - p.l_probe) / p.l0)
            row += [amp + 0.3 * float(np.median(log_k)), axes["mu"][i % 2], 0.0]
        starts.append(row)
    return np.array(starts)[:, : len(names)]


@dataclass
class DcptFit:
    """A fitted law and how well it fits: Huber objective (sum over points), R^2 of the loss, the fit report."""

    law: DcptLaw
    result: FitResult
    huber: float
    r2: float
    n_points: int
    monotone: dict = field(default_factory=dict)
    k_weight: float | None = None  # fitted w2/w1 of the learnability (fit_k_weight), else None

    def predict(self, p: Points) -> np.ndarray:
        """The law at p's points; with a fitted K weight, K comes from p's probe features (l0, l_probe)."""
        k = p.k
        if self.k_weight is not None:
            k = np.array([learnability(a, b, w_decline=self.k_weight) for a, b in zip(p.l0, p.l_probe)])
        return self.law(p.n, p.d, p.r, k)

    def summary(self) -> dict:
        return {"params": self.law.to_dict(), "k_weight": self.k_weight, "huber": self.huber, "r2": self.r2, "n_points": self.n_points,
                "converged": self.result.converged, "at_bound": self.result.at_bound, "monotone_in_r": self.monotone}


def r_squared(pred: np.ndarray, obs: np.ndarray) -> float:
    ss_res = float(np.sum((obs - pred) ** 2))
    ss_tot = float(np.sum((obs - obs.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


# What sets a domain's constant level E + F/K(w)^mu apart from another's. E is shared by every domain, and
# with 3 ratios the C/(r + eps)^gamma term can absorb any constant too, so only the m - 1 differences
# between m domains' levels are data: F, mu and w need as many.
LEVEL_NAMES = ("f", "mu", "log_w")


def fit_dcpt(p: Points, *, cross_domain: bool = False, fit_k_weight: bool = False, pinned: dict | None = None,
             delta: float = HUBER_DELTA, n_starts: int = 32, seed: int = 0) -> DcptFit:
    """Fit the D-CPT law (or its cross-domain variant when `cross_domain`, which needs `p.k`) to points.
    `fit_k_weight` (cross-domain, needs p.l0 and p.l_probe): K's decline weight w2/w1 is fitted too,
    K = 1/L0 + w (L0 - L_probe)/L0 (only w1's scale is absorbed by F; the ratio is not). `pinned` holds
    fit-space parameters at a value ({"mu": 1.0, "log_w": 0.0}, ...): m domains give m - 1 level
    differences, so the free ones of (f, mu, log_w) may number at most m - 1 (LEVEL_NAMES)."""
    pinned = dict(pinned or {})
    if fit_k_weight:
        require(p.l0 is not None and p.l_probe is not None, "l0", "fitting the K weight needs each point's probe "
                "features (initial loss l0, probe loss l_probe)", "measure them with a probe run per domain")
        free = [k for k in LEVEL_NAMES if k not in pinned]
        require(len(np.unique(p.l0)) - 1 >= len(free), "l0", f"{len(np.unique(p.l0))} domains",
                f"m domains give m - 1 differences of their levels E + F/K^mu: the free {', '.join(free)} need "
                f"{len(free) + 1}; pin some (pinned=) or keep the weights fixed")
        p = Points(p.n, p.d, p.r, p.loss, 1.0 / p.l0 + (p.l0 - p.l_probe) / p.l0, p.run, p.l0, p.l_probe, p.domain)
    names = K_WEIGHT_NAMES if fit_k_weight else CROSS_NAMES if cross_domain else NAMES
    cross_domain = cross_domain or fit_k_weight
    if cross_domain:
        require(p.k is not None, "k", "the cross-domain law needs a learnability column k",
                "measure K with a probe run per domain (ladder.laws.dcpt.learnability) and write column k")
        require(len(np.unique(p.k)) >= 2, "k", "all points share one K, so F/K^mu cannot be fitted",
                "fit points from 2+ domains with different K, or fit the plain law")
    validate_points(p, len(names) - len(pinned))
    starts = _starts(p, "fit_k_weight" if fit_k_weight else cross_domain, n_starts, seed)
    for k, v in pinned.items():
        starts[:, names.index(k)] = v
    fit = minimize_from_grid(
        lambda x: _objective(x, p, delta), np.unique(starts, axis=0), names,
        bounds=[(pinned[k], pinned[k]) if k in pinned else BOUNDS[k] for k in names],
        residual_fn=lambda x: np.exp(_terms(x, p)[0]).sum(axis=1) - p.loss,
    )
    fit.at_bound = [k for k in fit.at_bound if k not in pinned]
    law = DcptLaw.from_fit(fit.params)
    out = DcptFit(law, fit, fit.objective, math.nan, len(p), check_monotone(law, p),
                  float(np.exp(fit.params["log_w"])) if fit_k_weight else None)
    out.r2 = r_squared(out.predict(p), p.loss)
    return out


def check_monotone(law: DcptLaw, p: Points, n_grid: int = 200) -> dict:
    """Check dL/dr < 0 over the fitted range (D from the data, r in [min r, max r], r = 0 read as 1e-3).

    Returns whether it holds everywhere, the largest dL/dr found and where, and the share of grid points
    where it is negative. (With eta < 1 the B term's slope diverges at r -> 0, so the law can turn up there.)
    """
    r_lo, r_hi = max(float(p.r.min()), 1e-3), float(p.r.max())
    r = np.linspace(r_lo, r_hi, n_grid)
    d = np.geomspace(p.d.min(), p.d.max(), 9)
    rr, dd = np.meshgrid(r, d)
    slope = law.dloss_dr(1.0, dd, rr)
    i = np.unravel_index(np.argmax(slope), slope.shape)
    return {"holds": bool(np.all(slope < 0)), "max_dl_dr": float(slope[i]), "at_r": float(rr[i]),
            "at_d": float(dd[i]), "fraction_negative": float(np.mean(slope < 0)), "r_range": [r_lo, r_hi]}


def holdout_checks(p: Points, **fit_kwargs) -> list[dict]:
    """Refit without (a) the largest model size, (b) the largest token budget, (c) two interior ratios,
    and report how well each refit predicts what it did not see (mean/max absolute relative error, R^2)."""
    ratios = np.unique(p.r)
    inner = ratios[(ratios > 0) & (ratios < 1)]
    two = inner[[len(inner) // 3, (2 * len(inner)) // 3]] if len(inner) >= 2 else inner
    splits = {
        f"size N={p.n.max():.3g}": p.n == p.n.max(),
        f"data D={p.d.max():.3g}": p.d == p.d.max(),
        f"ratios r={[round(float(v), 3) for v in two]}": np.isin(p.r, two),
    }
    out = []
    for name, held in splits.items():
        row = {"held_out": name, "n_train": int((~held).sum()), "n_test": int(held.sum())}
        try:
            fit = fit_dcpt(p.subset(~held), **fit_kwargs)
        except LadderError as e:
            out.append(row | {"error": str(e)})
            continue
        test = p.subset(held)
        pred = fit.law(test.n, test.d, test.r, test.k)
        rel = np.abs(pred / test.loss - 1)
        out.append(row | {"mean_abs_rel_err": float(rel.mean()), "max_abs_rel_err": float(rel.max()),
                          "r2": r_squared(pred, test.loss)})
    return out


def learnability(initial_loss: float, probe_loss: float, *, w_initial: float = 1.0, w_decline: float = 1.0) -> float:
    """K for the cross-domain law, from a cheap probe run on the new domain (Que et al. 2024, Sec. cross-domain).

    K = w_initial / L0 + w_decline * (L0 - L_probe) / L0: high when the base model already does well on the
    domain (low initial loss L0) and when a short probe lowers the loss quickly (our reading of the paper's two
    features). An overall scale of (w_initial, w_decline) is absorbed by F; their RATIO is not, so the
    defaults (1, 1) are a restriction (docs/specialization.md, Cross-domain variant).
    """
    require(initial_loss > 0 and probe_loss > 0, "initial_loss", "probe losses must be > 0", "check the probe run")
    return w_initial / initial_loss + w_decline * (initial_loss - probe_loss) / initial_loss
