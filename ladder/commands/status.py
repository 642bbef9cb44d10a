"""`ladder status PLAN [--run-root ROOT]`: one line per rung from its run directory, then the totals."""

from __future__ import annotations

from ladder.launch import jobs
from ladder.launch.status import format_status, ladder_status
from ladder.commands.common import add_run_root, run_root

EXAMPLES = """
ladder status olmo.json --run-root gs://MY_BUCKET/olmo-ladder
ladder status smoke.json
"""


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file the ladder was launched from")
    add_run_root(parser)


def run(args) -> int:
    plan = jobs.load(args.plan)
    print(format_status(ladder_status(plan, run_root(args))))
    return 0
