"""The cross-domain stage of a CPT study (`cross_domains` in the study config): every domain held out in turn.

A study with cross domains trains, besides its own domain's grid, the grid's r > 0 runs for each other
domain (the r = 0 runs are general CPT, the same for every domain), and every run scores every domain's
held-out loss (`lm_loss_<domain>`). Per domain the points are its own runs (own-data share r) and the
general-CPT runs of the grid's budgets (share 0, the domain's loss after general CPT); the longer
`general_budgets` runs are left out (the law's grid is ratios x budgets; they serve the compute ratio).

The probe of a domain (K = 1/L0 + w (L0 - L_probe)/L0) is the cheapest run of its grid: the smallest size
at r = 1 and the smallest budget; L0 is that size's base run's loss on the domain before any CPT. The probe
run's own point is not scored when its domain is held out (its loss is the prediction's input).
Formulas: ladder/laws/dcpt_cross.py, docs/specialization.md ("Cross-domain hold-out").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladder.cpt_laws import final_row


def study_domains(cfg) -> list[str]:
    """The study's domain first, then its cross-domain ones (each scored by every run when there are 2+)."""
    return [cfg.domain] + [d for d in cfg.cross_domains if d != cfg.domain]


def domain_points(cfg, out: Path, bases: list[dict], rungs: list[dict]):
    """(Points over every study domain with domain/l0/l_probe, mask of the probe runs, {domain: probe})."""
    from ladder.laws.dcpt import Points

    smallest = min(bases, key=lambda b: b["n"])
    base_row = final_row(out / "runs" / smallest["name"])
    cols = {k: [] for k in ("n", "d", "r", "loss", "run", "domain", "l0", "l_probe", "probe")}
    probes = {}
    for domain in study_domains(cfg):
        own = [r for r in rungs if not r.get("general_extension")
               and (r["r"] == 0 or r.get("domain", cfg.domain) == domain)]
        probe = min((r for r in own if r["r"] == 1 and r["base_run"] == smallest["name"]), key=lambda r: r["d_cpt"])
        rows = {r["name"]: final_row(out / "runs" / r["name"]) for r in own}
        l0, l_probe = float(base_row[f"lm_loss_{domain}"]), float(rows[probe["name"]][f"lm_loss_{domain}"])
        probes[domain] = {"run": probe["name"], "l0": l0, "l_probe": l_probe}
        for r in own:
            row = rows[r["name"]]
            cols["n"].append(float(row["n"]))
            cols["d"].append(float(row["d_cpt"]))
            cols["r"].append(float(r["r"]))
            cols["loss"].append(float(row[f"lm_loss_{domain}"]))
            cols["run"].append(r["name"])
            cols["domain"].append(domain)
            cols["l0"].append(l0)
            cols["l_probe"].append(l_probe)
            cols["probe"].append(r["name"] == probe["name"])
    a = {k: np.array(v) for k, v in cols.items()}
    points = Points(a["n"], a["d"], a["r"], a["loss"], None, a["run"], a["l0"], a["l_probe"], a["domain"])
    return points, a["probe"], probes


def cross_domain_stage(cfg, out: Path, bases: list[dict], rungs: list[dict], spec: Path) -> dict:
    """Leave each domain out (ladder.laws.dcpt_cross.cross_domain_holdout) on the study's runs; written to
    <spec>/cross_domain.json and .csv (one row per held-out domain and restriction)."""
    from ladder.laws.dcpt_cross import all_domain_weight, cross_domain_holdout
    from ladder.specialization import jsonable, write_outputs

    points, probe, probes = domain_points(cfg, out, bases, rungs)
    rows = cross_domain_holdout(points, exclude=probe, n_starts=cfg.fit.starts)
    result = jsonable({"probes": probes, "n_points": len(points), "held_out": rows,
                       "all_domains": all_domain_weight(points, n_starts=cfg.fit.starts)})
    flat = [{"held_out": r["held_out"], "variant": v, "n_test": r["n_test"], "k_at_w1": r["k_at_w1"],
             "plain_mean_abs_rel_err": r["plain_mean_abs_rel_err"]} | {k: x for k, x in got.items() if k != "pinned"}
            for r in rows for v, got in r["variants"].items()]
    write_outputs(spec, "cross_domain", result, flat)
    return result
