"""`ladder fit dcpt|split RESULTS`: fit the specialization laws on a results table; JSON, CSV and PNG out.

dcpt: the D-CPT law for the domain loss (r = domain share) and the general loss (r = general share), with
R^2, the dL/dr < 0 check, held-out checks (--holdout) and the decision rules when their inputs are given.
split: the pretrain/specialize law L(N, D, D') per domain (the `domain` column, if any). Formulas:
docs/specialization.md. Library: ladder.specialization.fit_dcpt / fit_split / write_fit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ladder.commands.common import (COUNT, POSITIVE, add_out, check_outs, key_values, real, refuse_unread_options,
                                    whole)

EXAMPLES = """
ladder fit dcpt runs/specialization/results.csv --holdout --n 2.5e5 --d 1e6 -o fits/
ladder fit split results.csv --format json
"""


def add_arguments(p) -> None:
    p.add_argument("law", choices=["dcpt", "split"], help="dcpt: L(N, D, r) per loss; split: L(N, D, D') per domain")
    p.add_argument("results", help="results CSV with the CPT columns of docs/specialization.md")
    add_out(p, "output directory (default: specialization/ beside RESULTS)")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what to print on stdout")
    p.add_argument("--domain", help="fit only rows of this `domain` value")
    p.add_argument("--steps", choices=["final", "all"], default="final", help="dcpt: each run's last step, or every step")
    p.add_argument("--cross-domain", action="store_true", help="dcpt: add F/K^mu (needs a `k` column from probe runs)")
    p.add_argument("--holdout", action="store_true", help="refit without a size, a data range, or two ratios; report errors")
    p.add_argument("--starts", type=whole(1), default=24, help="dcpt: number of L-BFGS starts from the grid")
    rules = p.add_argument_group("decision rules (dcpt), evaluated at model size --n")
    rules.add_argument("--n", type=COUNT, help="model size N for the rules")
    rules.add_argument("--d", type=COUNT, help="rule (a): CPT tokens D")
    rules.add_argument("--tolerance", type=real(0.0), default=0.03, help="rule (a): allowed general-loss rise (0.03 = 3%%)")
    rules.add_argument("--domain-tokens", type=COUNT, help="rule (b): available domain tokens D_d")
    rules.add_argument("--compute", type=POSITIVE, help="rule (c): CPT compute C = 6 N D in FLOPs (with --r)")
    rules.add_argument("--r", type=real(0.0, 1.0), help="rule (c): fixed domain share")


DCPT_ONLY = {dest: (flag, ("dcpt",)) for dest, flag in (
    ("steps", "--steps"), ("cross_domain", "--cross-domain"), ("starts", "--starts"), ("n", "--n"), ("d", "--d"),
    ("tolerance", "--tolerance"), ("domain_tokens", "--domain-tokens"), ("compute", "--compute"), ("r", "--r"))}


def run(args) -> int:
    from ladder import specialization as spec, storage
    from ladder.specialization import jsonable

    refuse_unread_options(args, add_arguments, DCPT_ONLY, args.law, "ladder fit")

    table, default_out = spec.read_study(args.results)
    out = Path(args.out) if args.out else default_out
    check_outs(spec.output_files(out, args.law), args.overwrite)
    if args.law == "dcpt":
        fit = spec.fit_dcpt(table, domain=args.domain, steps=args.steps, cross_domain=args.cross_domain,
                            holdout=args.holdout, starts=args.starts, n=args.n, d=args.d, tolerance=args.tolerance,
                            domain_tokens=args.domain_tokens, compute=args.compute, r=args.r)
    else:
        fit = spec.fit_split(table, domain=args.domain, holdout=args.holdout)
    with storage.all_or_nothing(out):  # JSON, CSV and plots land together, or none does
        files = spec.write_fit(fit, out)
    if args.format == "json":
        print(json.dumps(jsonable(fit.summary), indent=1))
    elif args.format == "csv":
        print((out / f"{args.law}.csv").read_text(), end="")
    else:
        for r in fit.rows:
            print(key_values(r))
        for rule in fit.summary.get("rules", []):
            if rule.get("warning"):
                print(f"ladder fit: warning: {rule['warning']}", file=sys.stderr)
        for key in ("rules", "holdout"):
            for item in fit.summary.get(key, []):
                print(f"{key}: {key_values(jsonable(item))}")
        print("wrote " + ", ".join(files))
    return 0
