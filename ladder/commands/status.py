"""`ladder status PLAN [--run-root ROOT]`: one line per rung from its run directory, then the totals."""

from __future__ import annotations

from ladder.launch import jobs
from ladder.launch.status import format_status, ladder_status


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file the ladder was launched from")
    parser.add_argument("--run-root", help="root of the rungs' run dirs (path or gs://); default runs/<plan name>")


def run(args) -> int:
    plan = jobs.load(args.plan)
    print(format_status(ladder_status(plan, run_root(args))))
    return 0


def run_root(args) -> str:
    from pathlib import Path

    return args.run_root or "runs/" + Path(args.plan).stem
