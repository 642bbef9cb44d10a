"""The plan file (JSON) that `ladder train --plan` and `ladder launch` read unchanged, and its printed table."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ladder.arch import Arch
from ladder.errors import LadderError, require_path_name

VERSION = 1
PLAN_KEYS = ("version", "preset", "targets", "fraction", "defaults", "rungs")
TARGET_KEYS = ("name", "n", "tokens", "flops_6nd", "arch")
RUNG_FIELDS = (  # every key a plan rung carries (train_config.RUNG_KEYS maps some onto the config)
    "name", "size", "multiple", "d_model", "n_layers", "n_heads", "mlp_hidden", "vocab_size", "seq_len", "n",
    "n_total", "tokens", "batch_sequences", "batch_tokens", "peak_lr", "final_lr_ratio", "warmup_steps",
    "total_steps", "schedule", "beta1", "beta2", "eps", "weight_decay", "clip", "z_loss", "seed", "eval_steps",
    "checkpoint_steps", "flops", "flops_6n", "flops_6nd", "flops_per_token", "flops_per_token_6n", "share",
)


def write_plan(plan: dict, path: str | os.PathLike) -> Path:
    """Validate, then write atomically (ladder.rundir.write_json) so a reader never sees half a plan."""
    validate_plan(plan, "plan")
    from ladder import rundir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rundir.write_json(path, plan, indent=1)
    return path


def load_plan(path: str | os.PathLike) -> dict:
    """A plan file, checked for version and keys (LadderError naming the file and the key otherwise)."""
    from ladder.errors import read_utf8

    try:
        plan = json.loads(read_utf8(path, "plan"))
    except FileNotFoundError:
        raise LadderError(f"plan: no such file {str(path)!r}; write one with `ladder plan ... --out PLAN.json`")
    except (OSError, json.JSONDecodeError) as e:
        raise LadderError(f"plan: cannot read {str(path)!r} as JSON ({e}); rewrite it with `ladder plan`")
    validate_plan(plan, str(path))
    return plan


def validate_plan(plan, where: str) -> None:
    def need(obj, keys, what):
        if not isinstance(obj, dict):
            raise LadderError(f"{where}: {what} is not a JSON object; rewrite the plan with `ladder plan`")
        missing = [k for k in keys if k not in obj]
        if missing:
            raise LadderError(f"{where}: {what} lacks key {', '.join(missing)}; rewrite the plan with `ladder plan`")

    need(plan, PLAN_KEYS, "the plan")
    if plan["version"] != VERSION:
        raise LadderError(f"{where}: version is {plan['version']!r}, this ladder reads version {VERSION}; "
                          "re-plan with this version of `ladder plan`")
    if not plan["rungs"]:
        raise LadderError(f"{where}: rungs is empty; re-plan with at least one size and multiple")
    for t in plan["targets"]:
        need(t, TARGET_KEYS, f"target {t.get('name', '?') if isinstance(t, dict) else t!r}")
    names = set()
    for r in plan["rungs"]:
        need(r, RUNG_FIELDS, f"rung {r.get('name', '?') if isinstance(r, dict) else r!r}")
        require_path_name(r["name"], f"{where}: rung name")  # it becomes <run root>/<name>
        if r["name"] in names:
            raise LadderError(f"{where}: rung name {r['name']!r} appears twice; rung names must be unique")
        names.add(r["name"])


def rung_arch(rung: dict) -> Arch:
    return Arch(rung["d_model"], rung["n_layers"], rung["n_heads"], rung["vocab_size"], rung["seq_len"],
                rung["mlp_hidden"])


def _sci(x: float) -> str:
    return f"{x:.3g}"


def format_table(plan: dict) -> str:
    """Sizes, budgets, FLOPs (both accountings), each rung's % of the targets' 6ND, and the total."""
    head = ("rung", "N", "d", "L", "H", "batch", "peak LR", "warmup", "steps", "tokens", "FLOPs 6ND",
            "FLOPs ref", "% target")
    rows = [head]
    for r in plan["rungs"]:
        rows.append((r["name"], f"{r['n']:,}", str(r["d_model"]), str(r["n_layers"]), str(r["n_heads"]),
                     str(r["batch_sequences"]), f"{r['peak_lr']:.4g}", f"{r['warmup_steps']:,}",
                     f"{r['total_steps']:,}", _sci(r["tokens"]), _sci(r["flops_6nd"]), _sci(r["flops"]),
                     f"{100 * r['share']:.4f}%"))
    total_6nd = sum(r["flops_6nd"] for r in plan["rungs"])
    total_ref = sum(r["flops"] for r in plan["rungs"])
    tokens = sum(r["tokens"] for r in plan["rungs"])
    rows.append(("total", "", "", "", "", "", "", "", f"{sum(r['total_steps'] for r in plan['rungs']):,}",
                 _sci(tokens), _sci(total_6nd), _sci(total_ref), f"{100 * plan['fraction']:.4f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    targets = " + ".join(f"{t['name']} (N {t['n']:,}, D {t['tokens']:,}, 6ND {_sci(t['flops_6nd'])})"
                         for t in plan["targets"])
    target_ref = sum(t["flops"] for t in plan["targets"])
    lines = [f"targets: {targets}", ""] + lines + [
        "",
        f"ladder compute: {100 * plan['fraction']:.3f}% of the targets' combined 6ND "
        f"({len(plan['rungs'])} rungs, 6ND accounting on both sides); reference accounting (2N + 4N_total + "
        f"attention, both sides): {100 * total_ref / target_ref:.3f}%",
    ]
    return "\n".join(lines)


def print_table(plan: dict, file=None) -> None:
    print(format_table(plan), file=file)
