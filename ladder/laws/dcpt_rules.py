"""Decisions from fitted D-CPT laws (Que et al. 2024 name the three usages; the exact definitions are our
interpretation, rule (a)'s reference point in particular: docs/specialization.md, 'What is whose').

`rule_a`: the best domain share under a general-loss tolerance; `rule_b`: the best share when domain data is
limited; `rule_c`: compute-optimal N and D at a fixed share. Kept apart from the law's fitting, which they
only read. numpy only.
"""

from __future__ import annotations

import numpy as np

from ladder.errors import require
from ladder.laws.dcpt import DcptLaw


def _ratio_grid(ratio_range: tuple[float, float], n: int = 20001) -> np.ndarray:
    lo, hi = ratio_range
    require(0 <= lo < hi <= 1, "ratio_range", f"[{lo}, {hi}] is not a sub-interval of [0, 1]", "use 0 <= lo < hi <= 1")
    return np.linspace(lo, hi, n)


def rule_a(domain_law: DcptLaw, general_law: DcptLaw, n: float, d: float, tolerance: float = 0.03,
           ratio_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """(a) The domain share r minimising domain loss while general loss rises at most `tolerance` (a fraction,
    0.03 = 3%) over its value at r = 0. `general_law` is in general-share coordinates (evaluated at 1 - r)."""
    require(tolerance >= 0, "tolerance", f"{tolerance} is negative", "give the allowed general-loss rise as a fraction >= 0")
    r = _ratio_grid(ratio_range)
    ref = float(general_law(n, d, 1.0))
    general = general_law(n, d, 1.0 - r)
    ok = general <= ref * (1 + tolerance)
    require(ok.any(), "tolerance",
            f"no domain ratio in [{r[0]}, {r[-1]}] keeps general loss within {tolerance:.1%} of its r=0 value "
            f"{ref:.4g} (lowest reachable {general.min():.4g})", "raise --tolerance or include r=0 in --ratio-range")
    domain = np.where(ok, domain_law(n, d, r), np.inf)
    i = int(np.argmin(domain))
    return {"rule": "a", "r": float(r[i]), "domain_loss": float(domain[i]), "general_loss": float(general[i]),
            "general_loss_r0": ref, "general_rise": float(general[i] / ref - 1), "tolerance": tolerance,
            "binding": bool(i + 1 < len(r) and not ok[i + 1]), "n": n, "d": d}


def rule_b(domain_law: DcptLaw, n: float, domain_tokens: float, *, max_tokens: float | None = None,
           ratio_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """(b) With only `domain_tokens` of domain data (each seen once), the share r minimising L_d(N, D_d/r, r).

    A smaller r trains on more tokens in total (D = D_d / r); `max_tokens` caps that total (r >= D_d/max)."""
    require(domain_tokens > 0, "domain_tokens", f"{domain_tokens} is not > 0", "give the domain data size in tokens")
    lo, hi = ratio_range
    if max_tokens is not None:
        require(max_tokens >= domain_tokens, "max_tokens", "is below the domain data size", "raise --max-tokens")
        lo = max(lo, domain_tokens / max_tokens)
    r = _ratio_grid((max(lo, 1e-4), hi))
    loss = domain_law(n, domain_tokens / r, r)
    i = int(np.argmin(loss))
    return {"rule": "b", "r": float(r[i]), "d": float(domain_tokens / r[i]), "domain_loss": float(loss[i]),
            "n": n, "domain_tokens": domain_tokens}


def rule_c(law: DcptLaw, compute: float, r: float) -> dict:
    """(c) Compute-optimal N and D for CPT compute C = 6 N D at fixed share r (closed form, Chinchilla-style):
    N* = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B r^eta))^(1/(alpha+beta)), D* = C / (6 N*)."""
    require(0 < r <= 1, "r", f"{r} is outside (0, 1]", "at r = 0 the data term vanishes and loss does not depend on D")
    require(compute > 0, "compute", f"{compute} is not > 0", "give CPT compute in FLOPs")
    b_eff = law.B * r**law.eta
    g = (law.alpha * law.A / (law.beta * b_eff)) ** (1 / (law.alpha + law.beta))
    n = g * (compute / 6) ** (law.beta / (law.alpha + law.beta))
    d = compute / (6 * n)
    return {"rule": "c", "n": float(n), "d": float(d), "tokens_per_param": float(d / n), "r": r,
            "loss": float(law(n, d, r)), "compute": compute}
