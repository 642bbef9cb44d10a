"""The CPT study's laws, from its runs' results (stages 4-7 of ladder.cpt; numpy only, no JAX).

fit_study fits the D-CPT law on the grid and applies rule (a); predicted_at scores the check run against each
fitted law; report_study is the compute-effectiveness report; compare_split_laws holds the split law up
against its baselines. Each is the library call under a verb (`ladder fit dcpt`, `ladder report
specialization`), written under <out>/specialization/ and summarised for study.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladder import storage
from ladder.errors import LadderError


def final_row(run_dir: Path) -> dict:
    """A run's last evaluated row of results.csv: {column: value} (numbers as floats)."""
    from ladder.results import read_table

    table = read_table(run_dir / "results.csv")
    last = int(np.argmax(table["step"].astype(float)))
    return {k: v[last] for k, v in table.items()}


def grid_table(table: dict, rungs: list[dict]) -> dict:
    """The results without the longer general-CPT runs (`general_budgets`). The D-CPT law is fitted on the
    grid (ratios x budgets); the longer general runs serve the compute ratio: at r = 0 the law is flat in D,
    and 16-64x longer general CPT is not (R^2 0.50 with them in :measure)."""
    extension = {r["name"] for r in rungs if r.get("general_extension")}
    return {k: v[~np.isin(table["run"], list(extension))] for k, v in table.items()} if extension else table


def rule_a_budget(rungs: list[dict], base: dict) -> float:
    """The largest grid budget (CPT tokens) of the runs continuing `base`: where rule (a) is applied."""
    return max(r["d_cpt"] for r in rungs if r["base_run"] == base["name"] and not r.get("general_extension"))


def fit_study(cfg, table: dict, n: float, d: float, spec: Path) -> tuple[dict, dict]:
    """Stage 4, the library call under `ladder fit dcpt --holdout` with rule (a) at (n, d), written to
    `spec`; with fit.positive_share also the law on own-data share > 0. Returns (the study summary's "dcpt",
    "holdout", "rule_a" [, "dcpt_positive_share"] entries, {fit name: (domain law, general law)})."""
    from ladder import specialization
    from ladder.specialization import jsonable

    fit = specialization.fit_dcpt(table, starts=cfg.fit.starts, holdout=cfg.fit.holdout, n=n, d=d,
                                  tolerance=cfg.fit.tolerance)
    specialization.write_fit(fit, spec)
    fitted = jsonable(fit.summary)
    summary = {"dcpt": {loss: {"r2": f["r2"], "params": f["params"]} for loss, f in fitted["fits"].items()},
               "holdout": fitted.get("holdout", []), "rule_a": fitted["rules"][0]}
    laws = {"published": _laws(fitted["fits"])}
    if cfg.fit.positive_share:
        variant = fit_positive_share(table, cfg.fit.starts, cfg.fit.holdout)
        if not any("error" in f for f in variant.values()):
            # The domain law saw no r = 0 point: search r only where it was fitted (its B term vanishes at 0).
            fitted_range = (min(r for r in cfg.ratios if r > 0), 1.0)
            variant["rule_a"] = _rule_a(variant, n, d, cfg.fit.tolerance, fitted_range)
            laws["positive_share"] = _laws(variant)
        summary["dcpt_positive_share"] = variant
        storage.write_json(spec / "dcpt_positive_share.json", variant, indent=1)
    return summary, laws


def fit_positive_share(table: dict, starts: int, holdout: bool) -> dict:
    """The D-CPT law (published form) fitted on own-data share > 0 only, per loss, with held-out checks; a loss
    whose points cannot pin the law down (e.g. 2 positive shares) gets {"error": ...} instead."""
    from ladder.laws import dcpt

    fits = {}
    for loss in ("domain", "general"):
        p = dcpt.positive_share(dcpt.points_from_table(table, loss))
        try:
            fit = dcpt.fit_dcpt(p, n_starts=starts)
        except LadderError as e:
            fits[loss] = {"error": str(e)}
            continue
        fits[loss] = fit.summary() | ({"holdout": dcpt.holdout_checks(p, n_starts=starts)} if holdout else {})
    return fits


def _laws(fits: dict) -> tuple:
    """(domain law, general law) from a {"domain": {"params": ...}, "general": ...} summary."""
    from ladder.laws.dcpt import DcptLaw

    return DcptLaw(**fits["domain"]["params"]), DcptLaw(**fits["general"]["params"])


def _rule_a(fits: dict, n: float, d: float, tolerance: float, ratio_range=(0.0, 1.0)) -> dict:
    from ladder.laws.dcpt_rules import rule_a

    return rule_a(*_laws(fits), n, d, tolerance, ratio_range)


def predicted_at(laws: dict, measured: dict, r: float) -> dict:
    """Stage 5's comparison: each fitted law's (`laws`: name -> (domain law, general law)) losses at the check
    run's (n, d_cpt, r) against the measured ones (`measured`: the check's domain_loss, general_loss and the
    reference's general_loss_r0), r = 0 included, since rule (a)'s tolerance is relative to the law's own
    r = 0 value."""
    n, d, out = measured["n"], measured["d_cpt"], {}
    for name, (domain_law, general_law) in laws.items():
        pred = {"domain_loss": float(domain_law(n, d, r)), "general_loss": float(general_law(n, d, 1 - r)),
                "general_loss_r0": float(general_law(n, d, 1.0))}
        pred["general_rise"] = pred["general_loss"] / pred["general_loss_r0"] - 1
        pred["domain_rel_err"] = measured["domain_loss"] / pred["domain_loss"] - 1
        pred["general_rel_err"] = measured["general_loss"] / pred["general_loss"] - 1
        pred["general_r0_rel_err"] = measured["general_loss_r0"] / pred["general_loss_r0"] - 1
        out[name] = pred
    return out


def report_study(table: dict, spec: Path) -> dict:
    """Stage 6, the library call under `ladder report specialization`, written to `spec`; returns the study
    summary's "effectiveness" entry (per size: ratio, status, gain; the trends)."""
    from ladder import specialization

    report = specialization.effectiveness_report(table)
    specialization.write_effectiveness(report, spec)
    report = specialization.summary_of(report)
    keys = ("base_run", "n", "status", "compute_ratio_geomean", "gain_at_equal_compute_mean", "error")
    return {"sizes": [{k: s.get(k) for k in keys} for s in report["sizes"]],
            "trend": report["trend"], "trend_gain": report["trend_gain"]}


def compare_split_laws(results_path: Path, starts: int, out: Path) -> dict:
    """Stage 7: the split law (ours) against Chinchilla in total tokens and the D-CPT law at the final mixture
    on held-out runs (ladder.laws.split.compare_with_baselines), written to <out>/split_comparison.json; a
    grid too small to hold out a size and a budget gets {"error": ...} (the CI variant)."""
    from ladder.laws.split import compare_with_baselines
    from ladder.results import read_table

    try:
        result = compare_with_baselines(read_table(results_path), n_starts=starts)
    except LadderError as e:
        result = {"error": str(e)}
    storage.write_json(out / "split_comparison.json", result, indent=1)
    return result
