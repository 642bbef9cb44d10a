"""`ladder collect PLAN -o results.csv`: every rung's evaluation rows in one results table."""

from __future__ import annotations

from ladder.launch import jobs
from ladder.rundir import collect
from ladder.commands.status import run_root


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file the ladder was launched from")
    parser.add_argument("--run-root", help="root of the rungs' run dirs (path or gs://); default runs/<plan name>")
    parser.add_argument("-o", "--output", required=True, help="results table to write (CSV)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def run(args) -> int:
    plan = jobs.load(args.plan)
    n, missing = collect(plan, run_root(args), args.output, overwrite=args.overwrite)
    print(f"wrote {n} rows to {args.output}" + (f"; no results yet from {', '.join(missing)}" if missing else ""))
    return 0
