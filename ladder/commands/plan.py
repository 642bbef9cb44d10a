"""`ladder plan`: print a ladder's rungs and FLOP budget, write the plan file, optionally dry-run it on a mesh."""

from __future__ import annotations

import json
import sys

from ladder import plan as plan_lib
from ladder.chips import GiB
from ladder.rundir import format_duration
from ladder.errors import LadderError


def add_arguments(parser) -> None:
    parser.add_argument("--target", action="append", metavar="T",
                        help=f"a target run: preset ({', '.join(plan_lib.TARGETS)}) or SIZE-TOKENS such as "
                             "3b-60b; repeat for several (default: the preset's targets)")
    parser.add_argument("--preset", help=f"ladder preset: {', '.join(plan_lib.LADDERS)}")
    parser.add_argument("--fraction", type=float,
                        help="share of the targets' combined 6ND to spend (default 0.01 when choosing sizes; "
                             "a cap when sizes are given)")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 60M,150M,370M or 2e8")
    parser.add_argument("--multiples", help="comma-separated Chinchilla multiples, e.g. 1,2,5,10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", default="cosine", choices=("cosine", "wsd"))
    parser.add_argument("--eval-fractions", metavar="F,F,...",
                        help="where each rung is evaluated, as fractions of its steps, e.g. 0.25,0.5,0.9,1 "
                             "(default: the family's; docs/planning.md)")
    parser.add_argument("--out", "-o", help="write the plan file (JSON) here")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every rung on --chip/--devices/--mesh: batch divisibility, memory, time")
    parser.add_argument("--chip", help="chip for --dry-run (v4, v5e, v5p, v6e, cpu; default: the family's, "
                                       "v5p for the OLMo ladder, cpu for smoke)")
    parser.add_argument("--devices", type=int, help="devices per rung for --dry-run (default: choose_slice)")
    parser.add_argument("--mesh", help="mesh for --dry-run, e.g. data=2,fsdp=-1,tensor=1 (default: fsdp over "
                                       "every chip, or tensor-parallel where the batch cannot split that far)")


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [s for s in text.split(",") if s.strip()]


def _mesh(text: str | None) -> dict | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = int(value)
        except ValueError:
            raise LadderError(f"mesh: cannot read {item!r}; write AXIS=SIZE items such as data=2,fsdp=-1")
    return out


def _mesh_text(mesh: dict) -> str:
    return "/".join(str(mesh[a]) for a in ("data", "fsdp", "tensor"))


def _row_line(row: dict) -> str:
    if "memory" not in row:
        return (f"{row['name']:<12} {'-':<14} {'':<10} {'':>8} {'':<12} {'':>8} {'':>7} {'':>9}  "
                f"{'; '.join(row['errors'])}")
    recipe = f"{row['remat']}" + (f" x{row['microbatches']}" if row["microbatches"] > 1 else "")
    return (f"{row['name']:<12} {row['slice']:<14} {_mesh_text(row['mesh']):<10} {row['rows_per_device']:>8} "
            f"{recipe:<12} {row['memory']['total'] / GiB:>8.2f} {row['memory']['total'] / row['hbm']:>7.0%} "
            f"{format_duration(row['hours'] * 3600):>9}  {'; '.join(row['errors'] + row['warnings'])}")


def dry_run(plan: dict, chip: str, devices: int | None, mesh: dict | None) -> int:
    """One line per rung (slice, mesh data/fsdp/tensor, rows per device, the remat policy and microbatches the
    memory estimate needs (resources.fit_recipe), GiB per device, time), then the targets
    placed the same way for reference (they are not part of the ladder's time or its pass/fail)."""
    from ladder.plan.resources import target_rungs

    if devices is not None and devices < 1:
        raise LadderError(f"devices: {devices} must be at least 1")
    rows = [plan_lib.check_rung(r, chip, devices, mesh) for r in plan["rungs"]]
    head = (f"{'rung':<12} {'slice':<14} {'mesh d/f/t':<10} {'rows/dev':>8} {'remat x mb':<12} {'GiB/dev':>8} {'of HBM':>7} "
            f"{'time':>9}  notes")
    print(f"\ndry run on {chip}:")
    print(head)
    for row in rows:
        print(_row_line(row))
    timed = [row for row in rows if "hours" in row]
    print(f"total time if run one after another: {format_duration(3600 * sum(row['hours'] for row in timed))} "
          f"({'measured CPU rate' if chip == 'cpu' else f'at {plan_lib.MFU:.0%} MFU'})")
    if devices is None:
        print(f"targets on {chip} (for reference, not in the total):")
        for target in target_rungs(plan):
            print(_row_line(plan_lib.check_rung(target, chip, None, mesh)))
    bad = [row for row in rows if row["errors"]]
    if bad:
        raise LadderError(f"dry-run: {len(bad)} of {len(rows)} rungs fail ({bad[0]['name']}: {bad[0]['errors'][0]})")
    return 0


def run(args) -> int:
    plan = plan_lib.plan_ladder(args.target, fraction=args.fraction, sizes=_split(args.sizes),
                                multiples=_split(args.multiples), preset=args.preset, seed=args.seed,
                                schedule=args.schedule, eval_fractions=_split(args.eval_fractions))
    plan_lib.print_table(plan)
    if args.out:  # the plan does not depend on hardware: write it even if the dry run finds problems
        plan_lib.write_plan(plan, args.out)
        print(f"\nwrote {args.out}", file=sys.stderr)
    if args.dry_run:
        dry_run(plan, args.chip or plan_lib.FAMILIES[plan["family"]].chip, args.devices, _mesh(args.mesh))
    return 0
