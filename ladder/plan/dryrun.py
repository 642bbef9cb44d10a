"""`ladder plan --dry-run` as values: every rung (and, for reference, every target) placed on a chip's slice
with its mesh, rows and bytes per device and time (ladder.plan.resources.check_rung), and its text table.

    result = dry_run(plan, "v5p")          # {"chip", "rungs": [...], "targets": [...], "hours", "failed"}
    print(format_dry_run(result))
    attach_recipes(plan, result)           # each rung's remat/microbatches, for the plan file
"""

from __future__ import annotations

import math

from ladder.chips import GiB
from ladder.errors import LadderError
from ladder.topology import fill_mesh
from ladder.plan.resources import MFU, check_rung, target_rungs
from ladder.formats import format_duration


def dry_run(plan: dict, chip: str, devices: int | None = None, mesh: dict | None = None) -> dict:
    """Each rung checked on `chip` (`devices` per rung, default: the planner's slice; `mesh`, default: the
    default mesh rule). The targets are placed the same way when `devices` is not fixed; they are not part of
    the total time or of "failed" (the rungs with errors)."""
    if devices is not None and devices < 1:
        raise LadderError(f"devices: {devices} must be at least 1")
    rows = [check_rung(r, chip, devices, mesh) for r in plan["rungs"]]
    targets = [check_rung(t, chip, None, mesh) for t in target_rungs(plan)] if devices is None else []
    return {"chip": chip, "rungs": rows, "targets": targets,
            "hours": sum(row["hours"] for row in rows if "hours" in row),
            "failed": [row for row in rows if row["errors"]]}


def attach_recipes(plan: dict, result: dict) -> dict:
    """Stamp each rung the dry run placed without errors with its memory recipe (fit_recipe: `remat` and
    `microbatches`), so the plan file carries it and train_config.resolve_rung applies it. Returns the plan."""
    rows = {row["name"]: row for row in result["rungs"]}
    for rung in plan["rungs"]:
        row = rows.get(rung["name"], {})
        if not row.get("errors") and "remat" in row:
            rung["remat"], rung["microbatches"] = row["remat"], row["microbatches"]
    return plan


def parse_mesh(text: str | None) -> dict | None:
    """'data=2,fsdp=-1' -> {"data": 2, "fsdp": -1}; None or '' -> None (the default mesh)."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        try:
            size = int(value)
        except ValueError:
            raise LadderError(f"mesh: cannot read {item!r}; write AXIS=SIZE items such as data=2,fsdp=-1") from None
        if key.strip() in out:
            raise LadderError(f"mesh: axis {key.strip()} is given twice; give each axis once, e.g. data=2,fsdp=-1")
        out[key.strip()] = size
    # the axes and sizes now, whatever the device count: before, an unknown axis, a 0 or two -1s without
    # --devices were reported as "does not fit any slice by the memory estimate", and a mesh without `tensor`
    # ended in a KeyError. fill_mesh on the fixed sizes' product checks exactly what does not depend on it.
    fill_mesh(out, math.prod(abs(v) for v in out.values() if v > 0))
    return out


def format_dry_run(result: dict) -> str:
    chip = result["chip"]

    lines = [f"dry run on {chip}:",
             f"{'rung':<12} {'slice':<14} {'mesh d/f/t':<10} {'rows/dev':>8} {'remat x mb':<12} {'GiB/dev':>8} {'of HBM':>7} "
             f"{'time':>9}  notes"]
    lines += [_row_line(row) for row in result["rungs"]]
    lines.append(f"total time if run one after another: {format_duration(3600 * result['hours'])} "
                 f"({'measured CPU rate' if chip == 'cpu' else f'at {MFU:.0%} MFU'})")
    if result["targets"]:
        lines.append(f"targets on {chip} (for reference, not in the total):")
        lines += [_row_line(row) for row in result["targets"]]
    return "\n".join(lines)


def _mesh_text(mesh: dict) -> str:
    return "/".join(str(mesh[a]) for a in ("data", "fsdp", "tensor"))


def _row_line(row: dict) -> str:
    if "memory" not in row:
        return (f"{row['name']:<12} {'-':<14} {'':<10} {'':>8} {'':<12} {'':>8} {'':>7} {'':>9}  "
                f"{'; '.join(row['errors'])}")
    recipe = f"{row['remat']}" + (f" x{row['microbatches']}" if row["microbatches"] > 1 else "")  # fit_recipe
    return (f"{row['name']:<12} {row['slice']:<14} {_mesh_text(row['mesh']):<10} {row['rows_per_device']:>8} "
            f"{recipe:<12} {row['memory']['total'] / GiB:>8.2f} {row['memory']['total'] / row['hbm']:>7.0%} "
            f"{format_duration(row['hours'] * 3600):>9}  {'; '.join(row['errors'] + row['warnings'])}")
