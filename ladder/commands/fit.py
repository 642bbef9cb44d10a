"""`ladder fit dcpt|split RESULTS`: fit the specialization laws on a results table; JSON, CSV and PNG out.

dcpt: the D-CPT law for the domain loss (r = domain share) and the general loss (r = general share), with
R^2, the dL/dr < 0 check, held-out checks (--holdout) and the decision rules when their inputs are given.
split: the pretrain/specialize law L(N, D, D') per domain (the `domain` column, if any). Formulas:
docs/specialization.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from ladder.errors import require


def add_arguments(p) -> None:
    p.add_argument("law", choices=["dcpt", "split"], help="dcpt: L(N, D, r) per loss; split: L(N, D, D') per domain")
    p.add_argument("results", help="results CSV with the CPT columns of docs/specialization.md")
    p.add_argument("--out", help="output directory (default: RESULTS' directory /specialization)")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what to print on stdout")
    p.add_argument("--domain", help="fit only rows of this `domain` value")
    p.add_argument("--steps", choices=["final", "all"], default="final", help="dcpt: each run's last step, or every step")
    p.add_argument("--cross-domain", action="store_true", help="dcpt: add F/K^mu (needs a `k` column from probe runs)")
    p.add_argument("--holdout", action="store_true", help="refit without a size, a data range, or two ratios; report errors")
    p.add_argument("--starts", type=int, default=24, help="dcpt: number of L-BFGS starts from the grid")
    rules = p.add_argument_group("decision rules (dcpt), evaluated at model size --n")
    rules.add_argument("--n", type=float, help="model size N for the rules")
    rules.add_argument("--d", type=float, help="rule (a): CPT tokens D")
    rules.add_argument("--tolerance", type=float, default=0.03, help="rule (a): allowed general-loss rise (0.03 = 3%%)")
    rules.add_argument("--domain-tokens", type=float, help="rule (b): available domain tokens D_d")
    rules.add_argument("--compute", type=float, help="rule (c): CPT compute C = 6 N D in FLOPs (with --r)")
    rules.add_argument("--r", type=float, help="rule (c): fixed domain share")


def run(args) -> int:
    from ladder.results import read_table

    path = Path(args.results)
    table = read_table(path)
    require(bool(table), "results", f"{path} has no rows", "collect CPT runs first")
    out = Path(args.out) if args.out else path.parent / "specialization"
    summary, rows, pngs = (_dcpt if args.law == "dcpt" else _split)(table, args, out)
    from ladder.specialize import jsonable, write_outputs

    files = write_outputs(out, args.law, summary, rows) + pngs
    if args.format == "json":
        print(json.dumps(jsonable(summary), indent=1))
    elif args.format == "csv":
        print((out / f"{args.law}.csv").read_text(), end="")
    else:
        for r in rows:
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
        for key in ("rules", "holdout"):
            for item in summary.get(key, []):
                print(f"{key}: {json.dumps(jsonable(item))}")
        print("wrote " + ", ".join(files))
    return 0


def _dcpt(table, args, out):
    from ladder.laws import dcpt
    from ladder.specialize import plot_dcpt

    fits, points, rows, summary = {}, {}, [], {"law": "L = E + A/N^alpha + B r^eta/D^beta + C/(r+eps)^gamma", "fits": {}}
    for loss in ("domain", "general"):
        p = dcpt.points_from_table(table, loss, domain=args.domain, steps=args.steps)
        fit = dcpt.fit_dcpt(p, cross_domain=args.cross_domain, n_starts=args.starts)
        fits[loss], points[loss] = fit, p
        summary["fits"][loss] = fit.summary()
        rows.append({"loss": loss} | fit.law.to_dict() | {"huber": fit.huber, "r2": fit.r2, "n_points": fit.n_points,
                                                          "dl_dr_negative": fit.monotone["holds"]})
        if args.holdout:
            summary.setdefault("holdout", []).extend({"loss": loss} | h for h in dcpt.holdout_checks(p, n_starts=args.starts))
    rules = []
    if args.n is not None and args.d is not None:
        rules.append(dcpt.rule_a(fits["domain"].law, fits["general"].law, args.n, args.d, args.tolerance))
    if args.n is not None and args.domain_tokens is not None:
        rules.append(dcpt.rule_b(fits["domain"].law, args.n, args.domain_tokens))
    if args.compute is not None:
        require(args.r is not None, "--r", "rule (c) needs the fixed domain share", "pass --r")
        rules.append(dcpt.rule_c(fits["domain"].law, args.compute, args.r) | {"loss": "domain"})
    if rules:
        summary["rules"] = rules
    out.mkdir(parents=True, exist_ok=True)
    return summary, rows, [plot_dcpt(fits, points, out / "dcpt.png")]


def _split(table, args, out):
    import numpy as np

    from ladder.laws import split
    from ladder.specialize import plot_split

    domains = [args.domain] if args.domain else (sorted(set(table["domain"].tolist())) if "domain" in table else [None])
    summary, rows, pngs = {"law": "L = E + A/N^alpha + B/(D' + k D^rho)^beta", "domains": {}}, [], []
    out.mkdir(parents=True, exist_ok=True)
    for name in domains:
        p = split.points_from_table(table, domain=name)
        fit = split.fit_split(p)
        key = name or "domain"
        summary["domains"][key] = fit.summary() | {"n_range": [float(np.min(p.n)), float(np.max(p.n))]}
        if args.holdout:
            summary["domains"][key]["holdout"] = split.holdout_checks(p)
        rows.append({"domain": key} | fit.law.to_dict() | {"huber": fit.huber, "r2": fit.r2, "n_points": fit.n_points})
        pngs.append(plot_split(fit, p, out / f"split_{key}.png"))
    return summary, rows, pngs
