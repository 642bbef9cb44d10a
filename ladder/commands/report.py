"""`ladder report KIND RESULTS`: write a report (JSON, CSV, PNG plots) from a results table.

specialization: the compute-effectiveness report: for each size, general vs domain continued pretraining
from the same base checkpoint at identical budgets; the compute the general model needs to match the
specialized one, its log-linear trend in N, and the forgetting (general loss). docs/specialization.md.
Library: ladder.specialization.effectiveness_report / write_effectiveness.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ladder.commands.common import add_out, check_outs

KINDS = ("specialization",)
EXAMPLES = """
ladder report specialization runs/specialization/results.csv
ladder report specialization results.csv --task legal_continuation -o report/ --format json
ladder report specialization results.csv --domain legal
"""


def add_arguments(p) -> None:
    p.add_argument("kind", choices=KINDS, help="which report")
    p.add_argument("results", help="results CSV (CPT columns: docs/specialization.md)")
    add_out(p, "output directory (default: specialization/ beside RESULTS)")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what to print on stdout")
    p.add_argument("--metric", default="domain_loss", help="loss column to compare (lower is better)")
    p.add_argument("--task", help="compare this task's accuracy instead of --metric")
    p.add_argument("--domain", help="report this domain's runs (with the base runs); needed when the table "
                   "holds runs of several domains")


def run(args) -> int:
    from ladder import specialization as spec, storage

    table, default_out = spec.read_study(args.results)
    out = Path(args.out) if args.out else default_out
    check_outs(spec.output_files(out, "effectiveness"), args.overwrite)
    report = spec.effectiveness_report(table, metric=args.metric, task=args.task, domain=args.domain)
    with storage.all_or_nothing(out):  # JSON, CSV and plots land together, or none does
        files = spec.write_effectiveness(report, out)
    if args.format == "json":
        print(json.dumps(spec.summary_of(report), indent=1))
    elif args.format == "csv":
        print((out / "effectiveness.csv").read_text(), end="")
    else:
        print(format_report(report))
        print("wrote " + ", ".join(files))
    return 0


def format_report(report: dict) -> str:
    lines = []
    for s in report["sizes"]:
        ratio = s.get("compute_ratio_geomean")
        measured = ratio is not None and math.isfinite(ratio)
        lines.append(f"N={s['n']:.3g} base={s['base_run']}: "
                     + (f"general CPT needs {ratio:.3g}x the compute to match domain CPT ({s['status']})" if measured
                        else s.get("error") or s["status"])
                     + (f"; domain metric at equal compute {s['gain_at_equal_compute_mean']:+.4g}" if "status" in s else ""))
    if report["trend"]:
        t = report["trend"]
        lines.append(f"trend: ratio = exp({t['u']:.3g}) * N^{t['v']:.3g} ({t['ratio_x10_n']:.3g}x per 10x N, "
                     f"{t['n_sizes']} sizes)")
    if report.get("trend_gain"):
        t = report["trend_gain"]
        lines.append(f"trend: domain metric at equal compute changes by {t['change_per_10x_n']:+.3g} per 10x N "
                     f"({t['n_sizes']} sizes)")
    return "\n".join(lines)
