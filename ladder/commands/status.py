"""`ladder status PLAN [--run-root ROOT]`: one line per rung from its run directory, then the totals; `ladder
status RUN_DIR`: the same line for one run directory `ladder train` wrote."""

from __future__ import annotations

import sys
from pathlib import Path

from ladder.commands.common import add_run_root, run_root, whole
from ladder.launch import jobs
from ladder.launch.status import format_status, ladder_status, log_tail, rung_status, run_dir_rung

EXAMPLES = """
ladder status olmo.json --run-root gs://my-bucket/olmo-ladder
ladder status smoke.json
ladder status runs/tiny                      # one run directory written by `ladder train`
"""


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file the ladder was launched from, or one run directory (`ladder train "
                        "--run-dir`)")
    add_run_root(parser)
    parser.add_argument("--logs", metavar="RUNG", help="print the tail of this rung's logs (every worker's) instead")
    parser.add_argument("--lines", type=whole(1), default=40, help="--logs: lines per log (default: %(default)s)")


def run(args) -> int:
    from ladder import storage
    from ladder.errors import LadderError

    if args.lines != 40 and not args.logs:  # the table has no log lines: the option was silently ignored
        raise LadderError("--lines: applies with --logs RUNG only; add --logs or drop --lines")
    if Path(args.plan).is_dir():  # one `ladder train` run, not a launched plan
        if args.run_root or args.logs:
            raise LadderError(f"{args.plan} is a run directory: --run-root and --logs apply to a plan file; drop them")
        row = rung_status(run_dir_rung(args.plan), args.plan)
        row.logs = row.logs if Path(row.logs).exists() else "-"  # a trainer run alone has no launcher's log
        print(format_status([row]))
        return 0
    plan = jobs.load(args.plan)
    if args.logs:
        names = [r["name"] for r in plan["rungs"]]
        if args.logs not in names:
            raise LadderError(f"--logs: no rung named {args.logs!r} in {args.plan}; rungs: {', '.join(names)}")
        print(log_tail(storage.join(run_root(args), args.logs), args.lines))
        return 0
    root = run_root(args)
    print(format_status(ladder_status(plan, root)))
    if "://" not in str(root) and not Path(root).is_dir():  # a typo'd --run-root reads as "all pending"
        print(f"ladder status: note: {root} does not exist, so no rung has started there; check --run-root "
              "(the launch's)", file=sys.stderr)
    return 0
