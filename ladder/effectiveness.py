"""Compute effectiveness of specialized vs general continued pretraining, from a results table (numpy only;
its figures: ladder.plots; its report as values: ladder.specialization.effectiveness_report).

Compute effectiveness (the question of Malaquias Junior et al. 2025): from one base checkpoint per size,
continue pretraining on general data (kind "general") and on domain data (kind "domain", by default domain
share 1) with the same token budgets. For each domain run at compute C_s = 6 N D_cpt, how much CPT compute
C_g would the general run need to reach the same domain metric? We interpolate the general runs' curve per size (log
loss or accuracy, linear in log compute between the two measured runs that bracket the target; never
extrapolated): ratio = C_g / C_s (> 1: specializing pays), else "not reached within the measured range". The
gain at equal compute (domain minus general metric at the same budget) is always measured. Trends in N are
log-linear fits over 3+ sizes. Formulas: docs/specialization.md.
"""

from __future__ import annotations

import math

import numpy as np

from ladder.errors import require
from ladder.results import last_rows

CPT_KINDS = ("general", "domain")


def _final_rows(table: dict[str, np.ndarray], metric: str, task: str | None) -> dict[str, np.ndarray]:
    """One row per CPT run (its last step): n, compute 6 N d_cpt, r, kind, base_run, the metric, general_loss."""
    for col in ("run", "n", "step", "d_cpt", "kind", "base_run"):
        require(col in table, col, "column missing from the results table", "see docs/specialization.md")
    value_col = "acc" if task else metric
    require(value_col in table, value_col, "column missing from the results table", "see docs/specialization.md")
    require(table[value_col].dtype.kind == "f", f"--metric {value_col}", "is a text column, not a loss",
            "name a numeric loss column, e.g. domain_loss or general_loss")
    keep = np.isin(table["kind"], CPT_KINDS) & (np.nan_to_num(table["d_cpt"]) > 0)
    if task:
        keep &= table["task"] == task
        require(keep.any(), "task", f"no CPT rows for task {task!r}", f"choose one of {sorted(set(table['task'].tolist()))}")
    idx = last_rows(table["run"], table["step"], keep)
    require(len(idx) > 0, "kind", "no general/domain CPT rows in the results table",
            "write CPT runs with kind 'general' or 'domain' and d_cpt > 0")
    n, d_cpt = table["n"][idx], table["d_cpt"][idx]
    general = table["general_loss"][idx] if "general_loss" in table else np.full(len(idx), np.nan)
    r = table["r"][idx] if "r" in table else np.where(table["kind"][idx] == "domain", 1.0, 0.0)
    return {"run": table["run"][idx], "n": n, "d_cpt": d_cpt, "compute": 6 * n * d_cpt,
            "r": r, "kind": table["kind"][idx], "base_run": table["base_run"][idx], "value": table[value_col][idx],
            "general_loss": general}


def compute_effectiveness(table: dict[str, np.ndarray], *, metric: str = "domain_loss", task: str | None = None,
                          domain_share: float = 1.0) -> dict:
    """Per size: how much general-CPT compute matches each domain-CPT run's domain metric, and the trend in N.

    The domain runs are those with domain share `domain_share` (default 1: domain data only, the filtered
    corpus of the question). `metric` is a loss column (lower is better; fitted as log metric linear in log
    compute), or pass `task` to use that task's accuracy (higher is better; linear in log compute).

    A ratio is reported only where the general runs' own measured values reach the domain run's value (the
    fit is inverted inside the general runs' range, never extrapolated); otherwise the point says "not
    reached within the measured range" and gives the lower bound C_g,max / C_s when the general runs never
    reach it. Always measurable: the gain at equal compute (domain minus general value at the same budget).
    Trends in N (log-linear) need 3+ sizes with a finite value.
    """
    rows = _final_rows(table, metric, task)
    higher_better = task is not None
    points, sizes = [], []
    for base in sorted(set(rows["base_run"]), key=lambda b: float(rows["n"][rows["base_run"] == b][0])):
        size, at_size = _effectiveness_at_size(rows, base, domain_share, higher_better)
        sizes.append(size)
        points += at_size
    trends = {"compute_ratio": _trend_in_n(sizes, "compute_ratio_geomean", log_value=True),
              "gain_at_equal_compute": _trend_in_n(sizes, "gain_at_equal_compute_mean", log_value=False)}
    return {"metric": f"acc[{task}]" if task else metric, "higher_is_better": higher_better,
            "domain_share": domain_share, "sizes": sizes, "points": points, "trend": trends["compute_ratio"],
            "trend_gain": trends["gain_at_equal_compute"], "curves": {k: v.tolist() for k, v in rows.items()}}


def _effectiveness_at_size(rows: dict, base: str, domain_share: float, higher_better: bool) -> tuple[dict, list]:
    """One size (the CPT runs of base run `base`): its entry (status, the general runs' descriptive fit, the
    geometric-mean ratio and mean gain over its budgets) and a point per domain run (_domain_run_point)."""
    at = rows["base_run"] == base
    n = float(rows["n"][at][0])
    gen = at & (rows["kind"] == "general")
    dom = at & (rows["kind"] == "domain") & np.isclose(rows["r"], domain_share)
    entry = {"base_run": base, "n": n, "n_general": int(gen.sum()), "n_domain": int(dom.sum())}
    if gen.sum() < 2 or dom.sum() < 1:
        return entry | {"error": f"needs 2+ general CPT runs and 1+ run at domain share {domain_share:g}"}, []
    order = np.argsort(rows["compute"][gen])
    x = np.log(rows["compute"][gen])[order]
    y = (rows["value"][gen] if higher_better else np.log(rows["value"][gen]))[order]
    slope, intercept = np.polyfit(x, y, 1)  # described only: the ratio interpolates between measured runs
    points = [{"base_run": base, "n": n} | _domain_run_point(rows, i, gen, x, y, higher_better)
              for i in np.flatnonzero(dom)]
    ratios = [p["compute_ratio"] for p in points]
    finite = np.array([v for v in ratios if math.isfinite(v)])
    gains = np.array([p["gain_at_equal_compute"] for p in points if math.isfinite(p["gain_at_equal_compute"])])
    status = ("measured" if len(finite) == len(ratios) else
              f"{len(finite)} of {len(ratios)} budgets matched; the rest not reached within the measured range"
              if len(finite) else "not reached within the measured range")
    return entry | {"general_fit": {"slope": float(slope), "intercept": float(intercept),
                                    "form": ("acc = i + s log C" if higher_better else "log L = i + s log C")
                                    + " (least squares, descriptive; the ratio interpolates)"},
                    "status": status,
                    "compute_ratio_geomean": float(np.exp(np.log(finite).mean())) if len(finite) else math.nan,
                    # geometric means of the matched points' interval ends (they share one fit)
                    "compute_ratio_interval": _geomean_interval(points, base),
                    "gain_at_equal_compute_mean": float(gains.mean()) if len(gains) else math.nan}, points


def _domain_run_point(rows: dict, i: int, gen: np.ndarray, x: np.ndarray, y: np.ndarray, higher_better: bool) -> dict:
    """Domain run i against its size's general runs (`gen`; x = their log compute ascending, y = their metric,
    logged for a loss): the general compute that reaches its value and the ratio to its own, the gain at
    equal compute and the forgetting against the general run of the same budget."""
    value = float(rows["value"][i])
    target = value if higher_better else math.log(value)
    log_c_gen, lo_hi = _segment_crossing(x, y, target, higher_better)
    reached = math.isfinite(log_c_gen)
    c_gen = math.exp(log_c_gen) if reached else math.nan
    best_general = rows["value"][gen].max() if higher_better else rows["value"][gen].min()
    never_reached = not (best_general >= value if higher_better else best_general <= value)
    same_budget = gen & np.isclose(rows["d_cpt"], rows["d_cpt"][i])
    gain = float(value - rows["value"][same_budget][0]) if same_budget.any() else math.nan
    forgetting = (float(rows["general_loss"][i] - rows["general_loss"][same_budget][0])
                  if same_budget.any() else math.nan)
    return {"run": str(rows["run"][i]), "d_cpt": float(rows["d_cpt"][i]),
            "compute": float(rows["compute"][i]), "value": value, "reached": reached,
            "general_compute_to_match": c_gen if reached else math.nan,
            "compute_ratio": c_gen / rows["compute"][i] if reached else math.nan,
            # the interpolation's curvature interval (_segment_crossing); NaN under 3 general runs.
            "compute_ratio_interval": [math.exp(v) / rows["compute"][i] for v in lo_hi],
            # Not reached by the general runs at all: their largest compute is a lower bound.
            "compute_ratio_lower_bound": float(np.exp(x.max())) / rows["compute"][i] if never_reached else math.nan,
            "gain_at_equal_compute": gain,
            "general_loss": float(rows["general_loss"][i]), "forgetting_vs_general_cpt": forgetting}


MIN_TREND_SIZES = 3


def _segment_crossing(x: np.ndarray, y: np.ndarray, y0: float, higher_better: bool):
    """Where the general runs' curve (x = log C ascending, y = log loss or accuracy) first reaches y0, by
    linear interpolation between the two measured runs that bracket it, with its curvature interval.

    Returns (x0, (lo, hi)); x0 = NaN when no bracketing pair exists (not reached, or already passed at the
    smallest general run: never extrapolated). The interval: the lines through the neighbouring segments
    (the runs before and after the bracket), extended into it, cross y0 elsewhere; the curve between two
    measured runs lies between the chord and those lines when its slope changes monotonically (concave or
    convex), so [min, max] of the three crossings, clipped to the bracket, holds the crossing. It measures
    interpolation error only, not run-to-run noise; (NaN, NaN) when the bracket has no neighbour (2 runs)."""
    better = (lambda v: v >= y0) if higher_better else (lambda v: v <= y0)  # noqa: E731
    nan = (math.nan, math.nan)
    if better(y[0]):
        return (float(x[0]) if y[0] == y0 else math.nan), nan
    hits = [k for k in range(len(x) - 1) if better(y[k + 1])]
    if not hits:
        return math.nan, nan
    k = hits[0]

    def cross(a: int, b: int) -> float:
        slope = (y[b] - y[a]) / (x[b] - x[a])
        improving = slope > 0 if higher_better else slope < 0
        return float(x[a] + (y0 - y[a]) / slope) if improving else math.nan

    x0 = cross(k, k + 1)
    others = [cross(a, a + 1) for a in (k - 1, k + 1) if 0 <= a and a + 1 < len(x)]
    others = [min(max(v, x[k]), x[k + 1]) for v in others if math.isfinite(v)]
    if not others:
        return x0, nan
    return x0, (min([x0] + others), max([x0] + others))


def _geomean_interval(points: list[dict], base: str) -> list[float]:
    ends = [p["compute_ratio_interval"] for p in points if p["base_run"] == base and math.isfinite(p["compute_ratio"])]
    if not ends or not all(math.isfinite(v) for e in ends for v in e):
        return [math.nan, math.nan]
    return [float(np.exp(np.mean(np.log([e[j] for e in ends])))) for j in (0, 1)]


def _trend_in_n(sizes: list[dict], key: str, *, log_value: bool) -> dict | None:
    """`value = u + v log N` (log value when `log_value`) over the sizes with a finite `key`; None under 3."""
    fitted = [s for s in sizes if math.isfinite(s.get(key, math.nan))]
    if len(fitted) < MIN_TREND_SIZES:
        return None
    y = np.array([math.log(s[key]) if log_value else s[key] for s in fitted])
    log_n = np.log([s["n"] for s in fitted])
    v, u = np.polyfit(log_n, y, 1)
    # Standard error of the slope v (OLS); with 3 sizes it rests on one degree of freedom.
    resid = y - (u + v * log_n)
    dof = len(fitted) - 2
    se_v = math.sqrt(float(resid @ resid) / dof / float(((log_n - log_n.mean()) ** 2).sum())) if dof > 0 else math.nan
    trend = {"form": f"{'log ' if log_value else ''}{key} = u + v log N", "u": float(u), "v": float(v),
             "v_stderr": se_v, "n_sizes": len(fitted)}
    return trend | ({"ratio_x10_n": float(10**v)} if log_value else {"change_per_10x_n": float(v * math.log(10))})
