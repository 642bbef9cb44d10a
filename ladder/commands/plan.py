"""`ladder plan`: print a ladder's rungs and FLOP budget, write the plan file, optionally dry-run it on a mesh.

Library: ladder.plan.plan_ladder (the plan), ladder.plan.dryrun.dry_run (the check on a chip)."""

from __future__ import annotations

import sys

from ladder import plan as plan_lib
from ladder.commands.common import add_out, add_targets, check_out, split_list, target_spec, whole
from ladder.errors import LadderError
from ladder.config_checks import MAX_INT32

EXAMPLES = """
ladder plan --target 7b-4t --target 13b-5t --preset olmo-ladder -o plan.json
ladder plan --target 7b-4t --fraction 0.005
ladder plan --target 3b-1t --sizes 60M,150M,370M --multiples 1,2,5,10
ladder plan --target my-2b=2e9:40e9 --fraction 0.01 -o my.json
ladder plan --preset smoke --dry-run
"""


def add_arguments(parser) -> None:
    add_targets(parser, extra_help=" (default: the preset's targets)")
    parser.add_argument("--preset", help=f"ladder preset: {', '.join(plan_lib.LADDERS)} (default: none; the "
                                                  "targets' family sets the rules)")
    parser.add_argument("--fraction", type=float,
                        help="share of the targets' combined 6ND to spend (default: 0.01 when choosing sizes; "
                             "a cap when sizes are given)")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 60M,150M,370M or 2e8 (default: the "
                                               "preset's, else the widest ladder --fraction buys)")
    parser.add_argument("--multiples", help="comma-separated Chinchilla multiples, e.g. 1,2,5,10 (default: "
                                                   "the preset's, else chosen with the sizes)")
    parser.add_argument("--seed", type=whole(0, MAX_INT32), default=0, help="the rungs' training seed")
    parser.add_argument("--schedule", default="cosine", choices=("cosine", "wsd"), help="learning-rate schedule")
    parser.add_argument("--eval-fractions", metavar="F,F,...",
                        help="where each rung is evaluated, as fractions of its steps, e.g. 0.25,0.5,0.9,1 "
                             "(default: the family's; docs/planning.md)")
    add_out(parser, "write the plan file (JSON) here")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every rung on --chip/--devices/--mesh: batch divisibility, memory, time")
    parser.add_argument("--chip", help="chip for --dry-run (v4, v5e, v5p, v6e, cpu; default: the family's, "
                                       "v5p for the OLMo ladder, cpu for smoke)")
    parser.add_argument("--devices", type=whole(1), help="devices per rung for --dry-run (default: the planner's slice for --chip)")
    parser.add_argument("--mesh", help="mesh for --dry-run, e.g. data=2,fsdp=-1,tensor=1 (default: fsdp over "
                                       "every chip, or tensor-parallel where the batch cannot split that far)")


def run(args) -> int:
    from ladder.plan.dryrun import attach_recipes, dry_run, format_dry_run, parse_mesh

    if args.out:
        check_out(args.out, args.overwrite)
    mesh = parse_mesh(args.mesh)
    plan = plan_lib.plan_ladder([target_spec(t) for t in args.target] if args.target else None,
                                fraction=args.fraction, sizes=split_list(args.sizes),
                                multiples=split_list(args.multiples), preset=args.preset, seed=args.seed,
                                schedule=args.schedule, eval_fractions=split_list(args.eval_fractions))
    plan_lib.print_table(plan)
    result = None
    if args.out or args.dry_run:  # the written plan carries each rung's memory recipe on the dry run's chip
        result = dry_run(plan, args.chip or plan_lib.FAMILIES[plan["family"]].chip, args.devices, mesh)
    if args.out:  # written even if the dry run finds problems (a rung that fits nowhere keeps the defaults)
        plan_lib.write_plan(attach_recipes(plan, result), args.out)
        print(f"\nwrote {args.out}", file=sys.stderr)
    if args.dry_run:
        print("\n" + format_dry_run(result))
        bad = result["failed"]
        if bad:
            raise LadderError(f"dry-run: {len(bad)} of {len(result['rungs'])} rungs fail "
                              f"({bad[0]['name']}: {bad[0]['errors'][0]})")
    return 0
