"""The pretrain/specialize split: a law L(N, D, D') and an allocator for one pretraining run + k specializations.

The law below is OURS (`FORM`, `SOURCE`, stamped on every output): the paper asks the question, not this form.

The question is Seto et al. (2026)'s: with a compute budget C, how large a model, how many general
pretraining tokens D shared by all domains, and how many domain tokens D'_i for each of k specializations?

Form (domain loss after D general tokens, then D' domain tokens; docs/specialization.md for the rationale):

    L(N, D, D') = E + A / N^alpha + B / (D' + k D^rho)^beta              (7 parameters, all > 0, rho <= 1)

k D^rho is the pretraining data "transferred" to the domain, in domain-token units (the effective-data
view of Hernandez et al. 2021): pretraining helps the domain with diminishing returns (rho < 1), domain
tokens count in full. At D' = 0 it is exactly the Chinchilla form E + A/N^alpha + B'/D^beta' with
B' = B k^-beta and beta' = rho beta, so a general ladder's fit is its D' = 0 slice.

The allocator minimises sum_i L_i(N, D, D'_i) subject to 6 N (D + sum_i D'_i) <= C with exact searches:
for fixed N and D the domain tokens are water-filled (KKT, bisection on the multiplier); for fixed N the
problem is convex in D (each L_i is a convex decreasing function of the concave D' + k D^rho), so a
bounded scalar search is exact; N is searched on a log grid and refined. numpy/scipy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from ladder.errors import require
from ladder.laws.dcpt import r_squared
from ladder.laws.specialization_rows import keep_domain, note_dropped, require_cpt_tokens, require_no_infinite
from ladder.laws.fitting import FitResult, log_sum_exp_huber, minimize_from_grid
from ladder.results import last_rows

# Stamped on every fit and allocation (JSON, CSV, printed output): this form is ours, not a published law.
FORM = "L(N, D, D') = E + A/N^alpha + B/(D' + k D^rho)^beta"
SOURCE = ("ours: this repository's form (the question is Seto et al. 2026's, who do not give it; the transfer "
          "term adapts Hernandez et al. 2021's effective data); tested against baselines in docs/specialization.md")
NAMES = ("e", "a", "alpha", "b", "beta", "log_k", "rho")
BOUNDS = {"e": (-10.0, 10.0), "a": (-30.0, 60.0), "alpha": (1e-3, 2.0), "b": (-30.0, 60.0), "beta": (1e-3, 2.0),
          "log_k": (-30.0, 30.0), "rho": (1e-3, 1.0)}
HUBER_DELTA = 1e-3


@dataclass(frozen=True)
class SplitLaw:
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    k: float
    rho: float

    def effective_tokens(self, d, d_prime) -> np.ndarray:
        """D' + k D^rho: domain-equivalent tokens behind the model."""
        return np.asarray(d_prime, dtype=np.float64) + self.k * np.asarray(d, dtype=np.float64) ** self.rho

    def __call__(self, n, d, d_prime) -> np.ndarray:
        return self.E + self.A / np.asarray(n, dtype=np.float64) ** self.alpha + self.B / self.effective_tokens(d, d_prime) ** self.beta

    def chinchilla(self) -> dict:
        """The D' = 0 slice as Chinchilla parameters (E, A, alpha, B', beta')."""
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "B": self.B * self.k**-self.beta, "beta": self.rho * self.beta}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_fit(cls, p: dict) -> "SplitLaw":
        return cls(E=np.exp(p["e"]), A=np.exp(p["a"]), alpha=p["alpha"], B=np.exp(p["b"]), beta=p["beta"],
                   k=np.exp(p["log_k"]), rho=p["rho"])


@dataclass
class SplitPoints:
    n: np.ndarray
    d: np.ndarray  # general tokens (pretraining plus the general part of any CPT mixture)
    d_prime: np.ndarray  # domain tokens
    loss: np.ndarray  # domain loss
    run: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.loss)

    def subset(self, mask: np.ndarray) -> "SplitPoints":
        return SplitPoints(self.n[mask], self.d[mask], self.d_prime[mask], self.loss[mask],
                           None if self.run is None else self.run[mask])


def points_from_table(table: dict[str, np.ndarray], *, domain: str | None = None) -> SplitPoints:
    """Split-law points from a results table: every run's final row with a domain loss.

    D = (d - d_cpt) + (1 - r) d_cpt (pretraining plus the CPT mixture's general tokens), D' = r d_cpt, where
    `d` is the total tokens behind the checkpoint and `r` the domain share (columns: docs/specialization.md).
    Base runs (d_cpt = 0 or blank) are the D' = 0 points.
    """
    for col in ("run", "n", "d", "step", "domain_loss"):
        require(col in table, col, "column missing from the results table", "see docs/specialization.md")
    zeros = np.zeros(len(table["run"]))  # base-run-only tables have no CPT columns: D' = 0 everywhere
    require_cpt_tokens(table)
    run, step, loss = table["run"], table["step"], table["domain_loss"]
    d_cpt, r = np.nan_to_num(table.get("d_cpt", zeros)), np.nan_to_num(table.get("r", zeros))
    bad = ~((r >= 0) & (r <= 1))
    require(not bad.any(), "r", f"mixture ratios must lie in [0, 1], got {r[bad][:3].tolist()}",
            "write r as the domain share of the CPT mixture")
    require_no_infinite(loss, run, step, "domain_loss")
    keep = np.isfinite(loss)
    note_dropped(~keep, run, step, "rows with a blank or NaN domain_loss")
    keep = keep_domain(table, keep, domain, "rows")
    idx = last_rows(run, step, keep)
    d = table["d"][idx]
    return SplitPoints(table["n"][idx], d - d_cpt[idx] + (1 - r[idx]) * d_cpt[idx], r[idx] * d_cpt[idx], loss[idx], run[idx])


def _objective(x: np.ndarray, p: SplitPoints, delta: float) -> tuple[float, np.ndarray]:
    e, a, alpha, b, beta, log_k, rho = x
    log_n, log_d = np.log(p.n), np.log(np.maximum(p.d, 1e-300))
    transfer = np.exp(log_k + rho * log_d) * (p.d > 0)
    log_u = np.log(p.d_prime + transfer)
    share = transfer / (p.d_prime + transfer)  # d log u / d log_k; times log D for d / d rho
    ones = np.ones_like(log_n)
    terms = np.stack([e * ones, a - alpha * log_n, b - beta * log_u], axis=1)
    grads = [{0: ones}, {1: ones, 2: -log_n}, {3: ones, 4: -log_u, 5: -beta * share, 6: -beta * share * log_d}]
    return log_sum_exp_huber(terms, grads, np.log(p.loss), delta, len(x))


def _starts(p: SplitPoints) -> np.ndarray:
    lmin, lmed = float(p.loss.min()), float(np.median(p.loss))
    mlog_n, mlog_d = float(np.median(np.log(p.n))), float(np.median(np.log(p.d[p.d > 0])))
    starts = []
    for e in (np.log(0.5 * lmin), np.log(0.85 * lmin)):
        for alpha in (0.2, 0.5):
            for beta in (0.2, 0.5):
                for rho in (0.5, 0.9):
                    for log_k in (-2.0, 1.0):
                        amp = np.log(0.2 * lmed)
                        starts.append([e, amp + alpha * mlog_n, alpha, amp + beta * (log_k + rho * mlog_d), beta, log_k, rho])
    return np.array(starts)


@dataclass
class SplitFit:
    law: SplitLaw
    result: FitResult
    huber: float
    r2: float
    n_points: int

    def summary(self) -> dict:
        return {"law_form": FORM, "law_source": SOURCE, "params": self.law.to_dict(), "chinchilla_at_d_prime_0": self.law.chinchilla(), "huber": self.huber,
                "r2": self.r2, "n_points": self.n_points, "converged": self.result.converged,
                "at_bound": self.result.at_bound}


# Forms `fit_split` can fit. "total" is the baseline Chinchilla law in total tokens, L = E + A/N^alpha +
# B/(D + D')^beta: the split law with k = 1 and rho = 1 fixed (a general token counts as a domain token).
FORMS = {"split": {}, "total": {"log_k": 0.0, "rho": 1.0}}
TOTAL_FORM = "L(N, D, D') = E + A/N^alpha + B/(D + D')^beta"


def fit_split(p: SplitPoints, *, delta: float = HUBER_DELTA, form: str = "split") -> SplitFit:
    """Fit the split law (or, with form="total", the Chinchilla baseline in total tokens D + D': k and rho
    held at 1) by L-BFGS-B on the summed Huber of log residuals from a grid of starts."""
    require(form in FORMS, "form", f"unknown form {form!r}", f"choose one of {', '.join(FORMS)}")
    for name, v in (("n", p.n), ("domain_loss", p.loss)):
        require(bool(np.all(np.isfinite(v) & (v > 0))), name, "must be finite and > 0", "fix or drop those rows")
    require(bool(np.all(p.d > 0)), "d", "every point needs general pretraining tokens D > 0", "drop rows without a base run")
    require(bool(np.all(p.d_prime >= 0)), "d_cpt", "domain tokens must be >= 0", "check d_cpt and r")
    distinct = len({(a, b, c) for a, b, c in zip(p.n, p.d, p.d_prime)})
    require(distinct > len(NAMES), "results", f"{distinct} distinct (N, D, D') points cannot pin down the split law's "
            f"{len(NAMES)} parameters", "add base runs and domain CPT runs: 8+ points over 2+ sizes")
    require(len(np.unique(p.n)) >= 2, "n", f"every point has the same model size N = {p.n[0]:.4g}",
            "add runs of another size: A/N^alpha needs 2+ sizes (before: fitted anyway, r2 0.28)")
    require(p.loss.max() > p.loss.min(), "domain_loss", f"is {p.loss[0]:.4g} at every point, so there is no trend "
            "to fit (cannot fit)", "check the column (before: fitted anyway and printed r2=nan)")
    require(len(np.unique(p.d_prime)) >= 2, "d_cpt", "every point has the same domain tokens D'",
            "add domain CPT runs of different lengths (and base runs for D' = 0)")
    fixed = FORMS[form]
    bounds = [(fixed[k], fixed[k]) if k in fixed else BOUNDS[k] for k in NAMES]
    starts = _starts(p)
    for k, v in fixed.items():
        starts[:, NAMES.index(k)] = v
    starts = np.unique(starts, axis=0)
    fit = minimize_from_grid(lambda x: _objective(x, p, delta), starts, NAMES, bounds=bounds,
                             residual_fn=lambda x: SplitLaw.from_fit(dict(zip(NAMES, x)))(p.n, p.d, p.d_prime) - p.loss)
    fit.at_bound = [k for k in fit.at_bound if k not in fixed]
    law = SplitLaw.from_fit(fit.params)
    return SplitFit(law, fit, fit.objective, r_squared(law(p.n, p.d, p.d_prime), p.loss), len(p))


def holdout_checks(p: SplitPoints) -> list[dict]:
    """Refit without the largest size / the longest specialization / every other split D'/(D+D'), predict them."""
    frac = np.round(p.d_prime / (p.d + p.d_prime), 6)
    fracs = np.unique(frac[frac > 0])
    splits = {f"size N={p.n.max():.3g}": p.n == p.n.max(),
              f"domain tokens D'={p.d_prime.max():.3g}": p.d_prime == p.d_prime.max(),
              f"splits D'/(D+D')={fracs[1::2].tolist()}": np.isin(frac, fracs[1::2])}
    out = []
    for name, held in splits.items():
        row = {"held_out": name, "n_train": int((~held).sum()), "n_test": int(held.sum())}
        try:
            law = fit_split(p.subset(~held)).law
        except Exception as e:  # a LadderError (too few points left) is reported, not raised
            out.append(row | {"error": str(e)})
            continue
        test = p.subset(held)
        pred = law(test.n, test.d, test.d_prime)
        rel = np.abs(pred / test.loss - 1)
        out.append(row | {"mean_abs_rel_err": float(rel.mean()), "max_abs_rel_err": float(rel.max())})
    return out


def compare_with_baselines(table: dict, *, domain: str | None = None, n_starts: int = 16) -> dict:
    """Does the split law predict held-out CPT runs better than simpler laws? Three laws, each refitted
    without (1) the largest model size, (2) the CPT runs at each size's largest domain budget (the CPT
    tokens of its runs with r > 0), and scored on the held-out CPT runs (d_cpt > 0, every share r):

    - `split`: ours, L(N, D, D') on base + CPT runs (D = general tokens, D' = domain tokens);
    - `total`: Chinchilla in total tokens, E + A/N^alpha + B/(D + D')^beta, on the same points;
    - `dcpt`: the D-CPT law (Que et al. 2024) at the run's final mixture, L(N, d_cpt, r) on the CPT runs.

    Returns per held-out set and law the mean / max absolute relative error, and `best`: the law with the
    lowest mean over the held-out sets (ties: the simpler law). A fit that fails is reported as an error.
    """
    from ladder.laws import dcpt

    sp = points_from_table(table, domain=domain)
    dp = dcpt.points_from_table(table, "domain", domain=domain)
    held_sets, run_d_cpt, cpt = _held_out_sets(table, sp)
    out = {"laws": {"split": FORM, "total": TOTAL_FORM, "dcpt": "L(N, D, r) = E + A/N^alpha + B r^eta/D^beta + "
                    "C/(r + eps)^gamma at the run's final mixture (D = d_cpt)"}, "held_out": {}}
    for name, rule in held_sets.items():
        held_split = rule(sp.n, run_d_cpt) & cpt
        held_dcpt = rule(dp.n, dp.d)
        # The same held-out runs for every law: the CPT runs the rule picks.
        assert sorted(sp.run[held_split].tolist()) == sorted(dp.run[held_dcpt].tolist()), name
        out["held_out"][name] = _score_laws(sp, dp, held_split, held_dcpt, n_starts)
    means = {law: float(np.mean([r[law]["mean_abs_rel_err"] for r in out["held_out"].values()]))
             for law in ("total", "dcpt", "split")
             if all("mean_abs_rel_err" in r[law] for r in out["held_out"].values())}
    out["mean_over_held_out"] = means
    out["best"] = min(means, key=means.get) if means else None
    return out


def _held_out_sets(table: dict, sp: SplitPoints):
    """compare_with_baselines' two held-out sets, as rules (n, d_cpt) -> held out: the largest size, and each
    size's largest domain budget. Returns (rules by name, each point's CPT tokens, whether it is a CPT run).
    A table without 3 sizes and 2 domain budgets per size cannot hold both out: one line says so."""
    num = lambda c: np.asarray(table[c], dtype=np.float64)  # noqa: E731
    runs = np.asarray(table["run"])
    d_cpt = dict(zip(runs.tolist(), np.nan_to_num(num("d_cpt")).tolist()))
    share = dict(zip(runs.tolist(), np.nan_to_num(num("r")).tolist()))
    cpt = np.array([d_cpt[r] > 0 for r in sp.run])
    domain_run = cpt & (np.array([share[r] for r in sp.run]) > 0)
    # Each size's largest domain budget (CPT tokens are rounded up to whole batches, so tokens per parameter
    # differ slightly between sizes: the budget is identified per size, not by its value).
    budgets_of = {n: {d_cpt[r] for r in sp.run[domain_run & (sp.n == n)]} for n in np.unique(sp.n[domain_run])}
    largest = {n: max(b) for n, b in budgets_of.items()}
    n_budgets = min(map(len, budgets_of.values()), default=0)
    require(n_budgets >= 2 and len(np.unique(sp.n)) >= 3, "results",
            f"{len(np.unique(sp.n))} sizes and {n_budgets} domain budgets",
            "the comparison holds out a size and a budget: give 3+ sizes and 2+ domain CPT budgets")

    def at_largest_budget(n, d):
        return np.array([largest.get(a, math.inf) == b for a, b in zip(n, d)])

    held_sets = {f"size N={sp.n.max():.3g}": lambda n, d: n == sp.n.max(),
                 "largest domain budget of each size": at_largest_budget}
    return held_sets, np.array([d_cpt[r] for r in sp.run]), cpt


def _score_laws(sp: SplitPoints, dp, held_split: np.ndarray, held_dcpt: np.ndarray, n_starts: int) -> dict:
    """One held-out set's row of compare_with_baselines: each law refitted without the held-out runs and its
    mean / max absolute relative error on them; a law that cannot be refitted (a LadderError: too few
    points left) gets its error message, so one failed baseline does not hide the others."""
    from ladder.laws import dcpt

    row = {"n_test": int(held_split.sum())}
    test = sp.subset(held_split)
    for form in FORMS:
        try:
            law = fit_split(sp.subset(~held_split), form=form).law
            rel = np.abs(law(test.n, test.d, test.d_prime) / test.loss - 1)
            row[form] = {"mean_abs_rel_err": float(rel.mean()), "max_abs_rel_err": float(rel.max())}
        except Exception as e:  # noqa: BLE001 (a LadderError: too few points left) is reported
            row[form] = {"error": str(e)}
    try:
        fit = dcpt.fit_dcpt(dp.subset(~held_dcpt), n_starts=n_starts)
        t = dp.subset(held_dcpt)
        rel = np.abs(fit.law(t.n, t.d, t.r) / t.loss - 1)
        row["dcpt"] = {"mean_abs_rel_err": float(rel.mean()), "max_abs_rel_err": float(rel.max())}
    except Exception as e:  # noqa: BLE001
        row["dcpt"] = {"error": str(e)}
    return row


# --- allocator -------------------------------------------------------------------------------------------

def water_fill(laws: list[SplitLaw], d: float, remaining: float) -> np.ndarray:
    """Domain tokens D'_i >= 0 summing to `remaining` that minimise sum_i B_i / (D'_i + k_i D^rho_i)^beta_i.

    KKT: every funded domain has the same marginal gain B beta u^-(beta+1) = lam, so
    u_i(lam) = max(c_i, (B_i beta_i / lam)^(1/(beta_i+1))) with c_i = k_i D^rho_i; bisect lam.
    """
    c = np.array([law.k * d**law.rho for law in laws])
    if remaining <= 0:
        return np.zeros(len(laws))
    bb = np.array([law.B * law.beta for law in laws])
    p = np.array([1.0 / (law.beta + 1) for law in laws])

    def excess(log_lam: float) -> float:
        return float(np.sum(np.maximum(c, (bb / np.exp(log_lam)) ** p) - c)) - remaining

    lo, hi = -50.0, 50.0
    while excess(lo) < 0:
        lo -= 50.0
    while excess(hi) > 0:
        hi += 50.0
    log_lam = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=500)
    spend = np.maximum(c, (bb / np.exp(log_lam)) ** p) - c
    return spend * (remaining / spend.sum()) if spend.sum() > 0 else spend


def _best_at_n(laws: list[SplitLaw], n: float, tokens: float) -> tuple[float, float, np.ndarray]:
    """Given N (so `tokens` = C/(6N) in all), the best pretraining share: returns (total loss, D, D')."""

    def total(frac: float):
        d = frac * tokens
        dp = water_fill(laws, d, tokens - d)
        return float(sum(law(n, d, x) for law, x in zip(laws, dp))), d, dp

    res = minimize_scalar(lambda f: total(f)[0], bounds=(1e-9, 1.0), method="bounded", options={"xatol": 1e-10})
    best = min((total(res.x), total(1.0)), key=lambda t: t[0])  # D' = 0 everywhere is a corner the search may miss
    return best


@dataclass
class Allocation:
    n: float
    d: float
    d_prime: dict[str, float]
    loss: dict[str, float]
    total_loss: float
    compute: float

    def to_dict(self) -> dict:
        return {"law_form": FORM, "law_source": SOURCE} | asdict(self) | {
            "flops_used": 6 * self.n * (self.d + sum(self.d_prime.values()))}


def loss_profile(laws: dict[str, SplitLaw], compute: float, ns: np.ndarray) -> np.ndarray:
    """The best summed domain loss at each model size N under the budget (for plotting the optimum)."""
    return np.array([_best_at_n(list(laws.values()), n, compute / (6 * n))[0] for n in ns])


def allocate(laws: dict[str, SplitLaw], compute: float, *, n_range: tuple[float, float] = (1e6, 1e13),
             n_grid: int = 121) -> Allocation:
    """N, shared pretraining tokens D and per-domain tokens D'_i minimising sum_i L_i subject to
    6 N (D + sum_i D'_i) <= C (the budget is always spent: every L_i decreases in every token count)."""
    require(compute > 0, "budget", f"{compute} is not > 0", "give the compute budget in FLOPs")
    require(len(laws) >= 1, "laws", "no domain laws to allocate over", "fit the split law for at least one domain")
    lo, hi = n_range
    require(0 < lo < hi, "n_range", f"({lo}, {hi}) is not an increasing positive range", "use 0 < lo < hi")
    names, law_list = list(laws), list(laws.values())
    log_ns = np.linspace(np.log(lo), np.log(hi), n_grid)
    scores = [_best_at_n(law_list, np.exp(x), compute / (6 * np.exp(x)))[0] for x in log_ns]
    i = int(np.argmin(scores))
    bracket = (log_ns[max(i - 1, 0)], log_ns[min(i + 1, n_grid - 1)])
    res = minimize_scalar(lambda x: _best_at_n(law_list, np.exp(x), compute / (6 * np.exp(x)))[0], bounds=bracket,
                          method="bounded", options={"xatol": 1e-9})
    n = float(np.exp(res.x)) if res.fun <= scores[i] else float(np.exp(log_ns[i]))
    total, d, dp = _best_at_n(law_list, n, compute / (6 * n))
    return Allocation(n=n, d=float(d), d_prime={k: float(v) for k, v in zip(names, dp)},
                      loss={k: float(law(n, d, v)) for (k, law), v in zip(laws.items(), dp)}, total_loss=total,
                      compute=compute)
