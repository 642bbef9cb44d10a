"""`ladder compile PLAN --topology v5e-16`: compile each rung's real train step for a Cloud TPU slice on this
machine (no TPU needed; `pip install 'ladder[tpu]'`) and report per-device HBM use and compiled FLOPs."""

from __future__ import annotations

import json

from ladder import aot, compile_report, topology
from ladder.commands.common import add_out, check_out, whole
from ladder.errors import LadderError

TAKES_CONFIG = True  # train-config overrides for every compiled rung
EXAMPLES = """
ladder compile plan.json --topology v5e-16
ladder compile plan.json --chip v5p
ladder compile plan.json --targets --rung 7b-4t --topology v5p-512 -o 7b.json
ladder compile plan.json --topology v5e-16 --config.model.remat=full
"""


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file written by `ladder plan -o`")
    parser.add_argument("--topology", help="Cloud TPU accelerator type for every rung, e.g. v5litepod-16 "
                                           "(v5e-16), v4-32, v5p-8, v6e-64, 2xv5p-8 (multislice) "
                                           "(default: the planner's slice on --chip)")
    parser.add_argument("--chip", help="chip for the planner's slice choice when --topology is not given: v4, "
                                       "v5e, v5p, v6e (default: the plan's, as `ladder plan` and `launch` use)")
    parser.add_argument("--num-slices", type=whole(1), default=1, help="multislice: this many slices joined over "
                                                                  "the data-center network (data axis)")
    parser.add_argument("--rung", action="append", metavar="NAME", help="compile only this rung (repeatable)")
    parser.add_argument("--targets", action="store_true", help="also compile the plan's targets (e.g. 7B-4T)")
    parser.add_argument("--no-flops", action="store_true",
                        help="skip counting FLOPs (cost analysis of the compiled step with each loop body x its "
                             "trips, docs/tpu-compile.md; seconds after the compile)")
    add_out(parser, "also write every report as JSON here")


def run(args) -> int:
    from ladder.launch.jobs import plan_chip
    from ladder.plan import load_plan

    if args.topology and args.chip:
        raise LadderError("compile: --chip only picks the planner's slice when --topology is not given; "
                          f"drop --chip {args.chip} (the topology {args.topology} names its chip)")
    if args.topology:
        topology.parse_topology(args.topology, args.num_slices)  # bad names fail before anything is compiled
    if args.out:
        check_out(args.out, args.overwrite)
    plan = load_plan(args.plan)
    print(compile_report.TABLE_HEADER)
    reports = aot.check_plan(plan, args.topology, chip=plan_chip(plan, args.chip), num_slices=args.num_slices, rungs=args.rung,
                             targets=args.targets, overrides=args.config_overrides,
                             count_flops=not args.no_flops,
                             log=lambda r: print(compile_report.format_reports([r], header=False), flush=True))
    if args.out:
        from ladder import storage

        storage.write_text(args.out, json.dumps([r.to_dict() for r in reports], indent=2))
    bad = [r.rung for r in reports if not r.fits]
    if bad:
        raise LadderError(f"compile: {', '.join(bad)} do not fit; see the suggestions above")
    return 0
