"""`ladder collect PLAN -o results.csv`: every rung's evaluation rows in one results table."""

from __future__ import annotations

from ladder.launch import jobs
from ladder.launch.status import collect
from ladder.commands.common import add_out, add_run_root, check_out, run_root

EXAMPLES = """
ladder collect olmo.json --run-root gs://my-bucket/olmo-ladder -o results.csv
ladder collect smoke.json -o results.csv --overwrite
"""


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file the ladder was launched from")
    add_run_root(parser)
    add_out(parser, "results table to write (CSV)", required=True)
    parser.add_argument("--partial", action="store_true", help="also take rows of rungs that have not finished "
                        "(their early evaluations only; default: finished rungs only)")


def run(args) -> int:
    if "://" not in args.out:  # checked before reading every rung (gs:// is checked at the write)
        check_out(args.out, args.overwrite)
    plan = jobs.load(args.plan)
    n, missing, skipped = collect(plan, run_root(args), args.out, overwrite=args.overwrite, partial=args.partial)
    print(f"wrote {n} rows to {args.out}" + (f"; no results from finished {', '.join(missing)}" if missing else "")
          + (f"; skipped unfinished {', '.join(skipped)} (--partial includes them)" if skipped else ""))
    return 0
