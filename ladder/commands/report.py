"""`ladder report KIND RESULTS`: write a report (JSON, CSV, PNG plots) from a results table.

specialization: the compute-effectiveness report: for each size, general vs domain continued pretraining
from the same base checkpoint at identical budgets; the compute the general model needs to match the
specialized one, its log-linear trend in N, and the forgetting (general loss). docs/specialization.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ladder.errors import require

KINDS = ("specialization",)


def add_arguments(p) -> None:
    p.add_argument("kind", choices=KINDS, help="which report")
    p.add_argument("results", help="results CSV (CPT columns: docs/specialization.md)")
    p.add_argument("--out", help="output directory (default: RESULTS' directory /specialization)")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what to print on stdout")
    p.add_argument("--metric", default="domain_loss", help="loss column to compare (lower is better)")
    p.add_argument("--task", help="compare this task's accuracy instead of --metric")


def run(args) -> int:
    from ladder.results import read_table
    from ladder.specialize import compute_effectiveness, jsonable, plot_effectiveness, write_outputs

    path = Path(args.results)
    table = read_table(path)
    require(bool(table), "results", f"{path} has no rows", "collect CPT runs first")
    out = Path(args.out) if args.out else path.parent / "specialization"
    report = compute_effectiveness(table, metric=args.metric, task=args.task)
    files = write_outputs(out, "effectiveness", {k: v for k, v in report.items() if k != "curves"}, report["points"])
    files += plot_effectiveness(report, out)
    if args.format == "json":
        print(json.dumps(jsonable({k: v for k, v in report.items() if k != "curves"}), indent=1))
    elif args.format == "csv":
        print((out / "effectiveness.csv").read_text(), end="")
    else:
        for s in report["sizes"]:
            ratio = s.get("compute_ratio_geomean")
            measured = ratio is not None and math.isfinite(ratio)
            print(f"N={s['n']:.3g} base={s['base_run']}: "
                  + (f"general CPT needs {ratio:.3g}x the compute to match domain CPT ({s['status']})" if measured
                     else s.get("error") or s["status"])
                  + (f"; domain metric at equal compute {s['gain_at_equal_compute_mean']:+.4g}" if "status" in s else ""))
        if report["trend"]:
            t = report["trend"]
            print(f"trend: ratio = exp({t['u']:.3g}) * N^{t['v']:.3g} ({t['ratio_x10_n']:.3g}x per 10x N, {t['n_sizes']} sizes)")
        if report.get("trend_gain"):
            t = report["trend_gain"]
            print(f"trend: domain metric at equal compute changes by {t['change_per_10x_n']:+.3g} per 10x N ({t['n_sizes']} sizes)")
        print("wrote " + ", ".join(files))
    return 0
