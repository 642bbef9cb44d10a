"""`ladder allocate split|dcpt`: turn fitted specialization laws into decisions.

split: for a compute budget C and the k domains of a `ladder fit split` output, the model size N, shared
pretraining tokens D and per-domain tokens D'_i minimising the summed domain loss, 6 N (D + sum D'_i) <= C.
dcpt: the D-CPT decision rules from a `ladder fit dcpt` output: (a) best domain share under a general-loss
tolerance, (b) best share with limited domain data, (c) compute-optimal N/D at a fixed share.
Library: ladder.specialization.allocate_split / dcpt_rule / write_allocation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ladder.commands.common import (COUNT, POSITIVE, add_out, check_outs, key_values, path_arg, real,
                                   refuse_unread_options, split_list)
from ladder.errors import read_user_json, require

EXAMPLES = """
ladder allocate split --law specialization/split.json --budget 1e20
ladder allocate dcpt --law specialization/dcpt.json --rule a --n 2.5e5 --d 1e6 --tolerance 0.03
ladder allocate dcpt --law specialization/dcpt.json --rule c --compute 1e18 --r 0.3 --format json
"""


def add_arguments(p) -> None:
    p.add_argument("what", choices=["split", "dcpt"], help="split: budget across pretraining + k domains; dcpt: rules a/b/c")
    p.add_argument("--law", required=True, type=path_arg, help="split.json or dcpt.json written by `ladder fit`")
    add_out(p, "output directory (default: the law file's directory)")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what to print on stdout")
    s = p.add_argument_group("split")
    s.add_argument("--budget", type=POSITIVE, help="total compute C in FLOPs (6 N tokens accounting)")
    s.add_argument("--domains", help="comma-separated subset of the fitted domains (default: all)")
    s.add_argument("--n-range", type=COUNT, nargs=2, default=(1e6, 1e13), metavar=("LO", "HI"), help="model sizes to search")
    d = p.add_argument_group("dcpt")
    d.add_argument("--rule", choices=["a", "b", "c"], help="which decision rule")
    d.add_argument("--n", type=COUNT, help="model size N (rules a, b)")
    d.add_argument("--d", type=COUNT, help="rule a: CPT tokens D")
    d.add_argument("--tolerance", type=real(0.0), default=0.03, help="rule a: allowed general-loss rise over r=0 (fraction)")
    d.add_argument("--ratio-range", type=real(0.0, 1.0), nargs=2, default=(0.0, 1.0), metavar=("LO", "HI"), help="rules a, b: shares searched")
    d.add_argument("--domain-tokens", type=COUNT, help="rule b: available domain tokens")
    d.add_argument("--max-tokens", type=COUNT, help="rule b: cap on total CPT tokens")
    d.add_argument("--compute", type=POSITIVE, help="rule c: CPT compute C = 6 N D (FLOPs)")
    d.add_argument("--r", type=real(0.0, 1.0), help="rule c: fixed domain share")


READERS = {dest: (flag, (what,)) for what, options in (
    ("split", (("budget", "--budget"), ("domains", "--domains"), ("n_range", "--n-range"))),
    ("dcpt", (("rule", "--rule"), ("n", "--n"), ("d", "--d"), ("tolerance", "--tolerance"),
              ("ratio_range", "--ratio-range"), ("domain_tokens", "--domain-tokens"), ("max_tokens", "--max-tokens"),
              ("compute", "--compute"), ("r", "--r")))) for dest, flag in options}


def run(args) -> int:
    from ladder import specialization as spec, storage
    from ladder.specialization import jsonable

    refuse_unread_options(args, add_arguments, READERS, args.what, "ladder allocate")

    law_path = Path(args.law)
    require(law_path.is_file(), "--law", f"{law_path} not found", "run `ladder fit split|dcpt RESULTS` first")
    fitted = read_user_json(law_path, "--law", "pass the split.json or dcpt.json that `ladder fit` wrote")
    require(isinstance(fitted, dict), "--law", f"{law_path} holds a JSON {type(fitted).__name__}, not a fitted law",
            "pass the split.json or dcpt.json that `ladder fit` wrote")
    out = Path(args.out) if args.out else law_path.parent
    stem = "allocation" if args.what == "split" else f"rule_{args.rule}"
    check_outs(spec.output_files(out, stem), args.overwrite)
    if args.what == "split":
        result = spec.allocate_split(fitted, args.budget, domains=split_list(args.domains), n_range=args.n_range)
    else:
        result = spec.dcpt_rule(fitted, args.rule, n=args.n, d=args.d, tolerance=args.tolerance,
                                ratio_range=args.ratio_range, domain_tokens=args.domain_tokens,
                                max_tokens=args.max_tokens, compute=args.compute, r=args.r)
    with storage.all_or_nothing(out):  # JSON, CSV and plot land together, or none does
        files = spec.write_allocation(result, out, stem)
    if result.get("warning"):
        print(f"ladder allocate: warning: {result['warning']}", file=sys.stderr)
    shown = jsonable({k: v for k, v in result.items() if k != "profile"})
    if args.format == "json":
        print(json.dumps(shown, indent=1))
    elif args.format == "csv":
        print((out / f"{stem}.csv").read_text(), end="")
    else:
        print(key_values(shown))
        print("wrote " + ", ".join(files))
    return 0
