"""The cross-domain D-CPT law held out: predict a new domain's CPT losses from its probe alone.

Que et al. 2024 add F / K^mu to the D-CPT law, all domains sharing its other nine parameters, with K the
domain's learnability measured by a cheap probe (`dcpt.learnability`: K = 1/L0 + w (L0 - L_probe)/L0). The
test here is the paper's claim: fit the law on every domain but one, then predict the held-out domain's
points from its (L0, L_probe) alone, against the law refitted with its points too.

What the points can identify decides what is fitted. Everything but F/K^mu is shared, so each domain adds
one number, its constant level E + F/K(w)^mu; E is shared too (and with 3 ratios the C/(r + eps)^gamma term
absorbs any constant as well), so m fitting domains give m - 1 level differences, and at most m - 1 of
(F, mu, w) can be free. `variants_for(m)` picks the restrictions a fit on m domains can afford:
- m >= 4: F, mu and w fitted (`full`);
- m == 3: w held at 1 (`w=1`: F, mu fitted);
- m == 2: only F: mu held at 1 and w at 1 (`mu=1,w=1`), or at 1e-3 (`mu=1,w=0`: K from the initial loss
  alone), the two ends of what the weight could be, so the table shows what the unfittable choice costs.
With all M domains, `all_domain_weight` fits w on M - 1 differences (mu held at 1 when M == 3: exactly
determined, an in-sample estimate, not a test).
Formulas and the measured table: docs/specialization.md ("Cross-domain hold-out"). numpy/scipy only.
"""

from __future__ import annotations

import numpy as np

from ladder.errors import require
from ladder.laws.dcpt import BOUNDS, Points, fit_dcpt

W_ZERO = BOUNDS["log_w"][0]  # w = 1e-3: K from the initial loss alone
VARIANTS = {
    "full": {},
    "w=1": {"log_w": 0.0},
    "mu=1,w=1": {"mu": 1.0, "log_w": 0.0},
    "mu=1,w=0": {"mu": 1.0, "log_w": W_ZERO},
}


def variants_for(m: int) -> list[str]:
    """The restrictions a fit on m domains can identify (module docstring)."""
    require(m >= 2, "domain", f"{m} fitting domain(s)", "the cross-domain term needs 2+ domains with different K")
    return ["full"] if m >= 4 else ["w=1"] if m == 3 else ["mu=1,w=1", "mu=1,w=0"]


def all_domain_weight(p: Points, **fit_kwargs) -> dict:
    """The K weight w fitted on every domain (mu held at 1 with 3 domains: 2 differences for F and w)."""
    m = len(set(p.domain.tolist()))
    pinned = {} if m >= 4 else {"mu": 1.0}
    fit = fit_dcpt(p, fit_k_weight=True, pinned=pinned, **fit_kwargs)
    return {"domains": m, "pinned": pinned, "k_weight": fit.k_weight, "mu": fit.law.mu, "F": fit.law.F, "r2": fit.r2}


def _errors(fit, p: Points) -> np.ndarray:
    return np.abs(fit.predict(p) / p.loss - 1)


def cross_domain_holdout(p: Points, *, exclude=None, variants=None, **fit_kwargs) -> list[dict]:
    """Leave each domain out in turn: fit the cross-domain law on the others under each restriction that
    their number allows (or `variants`), predict the held-out domain's points from its probe features
    alone, and compare with the law refitted on all domains under the same restriction. Also the plain
    D-CPT law pooled over the other domains (no K): what the probe adds. `exclude` marks points not scored
    (the probe runs themselves: their loss is the input). Needs p.domain, p.l0, p.l_probe."""
    require(p.domain is not None and p.l0 is not None and p.l_probe is not None, "domain",
            "cross-domain hold-out needs each point's domain and probe features", "write columns domain, l0, l_probe")
    domains = sorted(set(p.domain.tolist()))
    require(len(domains) >= 3, "domain", f"{len(domains)} domains",
            "hold one out of 3+ domains (2 left give one level difference: F, with mu and the K weight held)")
    scored = np.ones(len(p), bool) if exclude is None else ~np.asarray(exclude, bool)
    names = variants or variants_for(len(domains) - 1)
    full = {v: fit_dcpt(p, fit_k_weight=True, pinned=VARIANTS[v], **fit_kwargs) for v in names}
    out = []
    for name in domains:
        held = p.domain == name
        test = p.subset(held & scored)
        plain = fit_dcpt(p.subset(~held), **fit_kwargs)
        l0, l_probe = float(p.l0[held][0]), float(p.l_probe[held][0])
        row = {"held_out": name, "n_test": len(test), "l0": l0, "l_probe": l_probe,
               "k_at_w1": 1 / l0 + (l0 - l_probe) / l0,
               "plain_mean_abs_rel_err": float(np.abs(plain.law(test.n, test.d, test.r) / test.loss - 1).mean()),
               "variants": {}}
        for v in names:
            fit = fit_dcpt(p.subset(~held), fit_k_weight=True, pinned=VARIANTS[v], **fit_kwargs)
            rel, refit = _errors(fit, test), _errors(full[v], test)
            row["variants"][v] = {"pinned": VARIANTS[v], "k_weight": fit.k_weight, "mu": fit.law.mu, "F": fit.law.F,
                                  "E": fit.law.E, "mean_abs_rel_err": float(rel.mean()),
                                  "max_abs_rel_err": float(rel.max()), "refit_mean_abs_rel_err": float(refit.mean()),
                                  "refit_k_weight": full[v].k_weight, "refit_r2": full[v].r2}
        out.append(row)
    return out
