"""`ladder allocate split|dcpt`: turn fitted specialization laws into decisions.

split: for a compute budget C and the k domains of a `ladder fit split` output, the model size N, shared
pretraining tokens D and per-domain tokens D'_i minimising the summed domain loss, 6 N (D + sum D'_i) <= C.
dcpt: the D-CPT decision rules from a `ladder fit dcpt` output: (a) best domain share under a general-loss
tolerance, (b) best share with limited domain data, (c) compute-optimal N/D at a fixed share.
"""

from __future__ import annotations

import json
from pathlib import Path

from ladder.errors import require


def add_arguments(p) -> None:
    p.add_argument("what", choices=["split", "dcpt"], help="split: budget across pretraining + k domains; dcpt: rules a/b/c")
    p.add_argument("--law", required=True, help="split.json or dcpt.json written by `ladder fit`")
    p.add_argument("--out", help="output directory (default: the law file's directory)")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what to print on stdout")
    s = p.add_argument_group("split")
    s.add_argument("--budget", type=float, help="total compute C in FLOPs (6 N tokens accounting)")
    s.add_argument("--domains", help="comma-separated subset of the fitted domains (default: all)")
    s.add_argument("--n-range", type=float, nargs=2, default=(1e6, 1e13), metavar=("LO", "HI"), help="model sizes to search")
    d = p.add_argument_group("dcpt")
    d.add_argument("--rule", choices=["a", "b", "c"], help="which decision rule")
    d.add_argument("--n", type=float, help="model size N (rules a, b)")
    d.add_argument("--d", type=float, help="rule a: CPT tokens D")
    d.add_argument("--tolerance", type=float, default=0.03, help="rule a: allowed general-loss rise over r=0 (fraction)")
    d.add_argument("--ratio-range", type=float, nargs=2, default=(0.0, 1.0), metavar=("LO", "HI"), help="rules a, b: shares searched")
    d.add_argument("--domain-tokens", type=float, help="rule b: available domain tokens")
    d.add_argument("--max-tokens", type=float, help="rule b: cap on total CPT tokens")
    d.add_argument("--compute", type=float, help="rule c: CPT compute C = 6 N D (FLOPs)")
    d.add_argument("--r", type=float, help="rule c: fixed domain share")


def _need(args, *names):
    for name in names:
        require(getattr(args, name) is not None, f"--{name.replace('_', '-')}", "is required here",
                f"pass --{name.replace('_', '-')}")


def run(args) -> int:
    from ladder.specialize import jsonable, write_outputs

    law_path = Path(args.law)
    require(law_path.is_file(), "--law", f"{law_path} not found", "run `ladder fit split|dcpt RESULTS` first")
    fitted = json.loads(law_path.read_text())
    out = Path(args.out) if args.out else law_path.parent
    if args.what == "split":
        result, pngs = _split(fitted, args, out)
        stem = "allocation"
    else:
        result, pngs = _dcpt(fitted, args), []
        stem = f"rule_{args.rule}"
    files = write_outputs(out, stem, result, [result | {"d_prime": json.dumps(result.get("d_prime", ""))}
                                              if "d_prime" in result else result]) + pngs
    if args.format == "json":
        print(json.dumps(jsonable(result), indent=1))
    elif args.format == "csv":
        print((out / f"{stem}.csv").read_text(), end="")
    else:
        print(json.dumps(jsonable(result)))
        print("wrote " + ", ".join(files))
    return 0


def _split(fitted, args, out):
    import numpy as np

    from ladder.laws.split import SplitLaw, allocate, loss_profile

    _need(args, "budget")
    require("domains" in fitted, "--law", "is not a `ladder fit split` output (no 'domains')", "pass split.json")
    names = args.domains.split(",") if args.domains else list(fitted["domains"])
    for name in names:
        require(name in fitted["domains"], "--domains", f"{name!r} was not fitted", f"choose from {list(fitted['domains'])}")
    laws = {name: SplitLaw(**fitted["domains"][name]["params"]) for name in names}
    alloc = allocate(laws, args.budget, n_range=tuple(args.n_range))
    ns = np.geomspace(alloc.n / 30, alloc.n * 30, 41)
    return alloc.to_dict(), [_plot_profile(ns, loss_profile(laws, args.budget, ns), alloc, out / "allocation.png")]


def _plot_profile(ns, losses, alloc, path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    ax.plot(ns, losses, "-", label="best split at this N")
    ax.plot([alloc.n], [alloc.total_loss], "o", color="k", label=f"optimum N={alloc.n:.3g}, D={alloc.d:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel(f"sum of {len(alloc.d_prime)} domain losses (bits per byte)")
    ax.set_title(f"Pretrain/specialize split at C = {alloc.compute:.3g} FLOPs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _dcpt(fitted, args) -> dict:
    from ladder.laws import dcpt

    require("fits" in fitted, "--law", "is not a `ladder fit dcpt` output (no 'fits')", "pass dcpt.json")
    _need(args, "rule")
    domain = dcpt.DcptLaw(**fitted["fits"]["domain"]["params"])
    general = dcpt.DcptLaw(**fitted["fits"]["general"]["params"])
    if args.rule == "a":
        _need(args, "n", "d")
        return dcpt.rule_a(domain, general, args.n, args.d, args.tolerance, tuple(args.ratio_range))
    if args.rule == "b":
        _need(args, "n", "domain_tokens")
        return dcpt.rule_b(domain, args.n, args.domain_tokens, max_tokens=args.max_tokens, ratio_range=tuple(args.ratio_range))
    _need(args, "compute", "r")
    return dcpt.rule_c(domain, args.compute, args.r)
