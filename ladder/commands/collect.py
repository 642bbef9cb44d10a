"""`ladder collect PLAN -o results.csv`: every rung's evaluation rows in one results table."""

from __future__ import annotations

from ladder.launch import jobs
from ladder.launch.status import collect
from ladder.commands.status import run_root


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file the ladder was launched from")
    parser.add_argument("--run-root", help="root of the rungs' run dirs (path or gs://); default runs/<plan name>")
    parser.add_argument("-o", "--output", required=True, help="results table to write (CSV)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--partial", action="store_true", help="also take rows of rungs that have not finished "
                        "(their early evaluations only; default: finished rungs only)")


def run(args) -> int:
    plan = jobs.load(args.plan)
    n, missing, skipped = collect(plan, run_root(args), args.output, overwrite=args.overwrite, partial=args.partial)
    print(f"wrote {n} rows to {args.output}" + (f"; no results from finished {', '.join(missing)}" if missing else "")
          + (f"; skipped unfinished {', '.join(skipped)} (--partial includes them)" if skipped else ""))
    return 0
