"""The plan file (JSON) that `ladder train --plan` and `ladder launch` read unchanged, and its printed table."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ladder.arch import Arch
from ladder.config_checks import MAX_INT32
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
    """Validate, then write atomically (ladder.storage.write_json) so a reader never sees half a plan."""
    validate_plan(plan, "plan")
    from ladder import storage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_json(path, plan, indent=1)
    return path


def load_plan(path: str | os.PathLike) -> dict:
    """A plan file, checked for version and keys (LadderError naming the file and the key otherwise)."""
    from ladder.errors import parse_json, read_utf8

    if not Path(path).exists():
        raise LadderError(f"plan: no such file {str(path)!r}; write one with `ladder plan ... --out PLAN.json`")
    plan = parse_json(read_utf8(path, "plan"), f"plan: {str(path)!r}", "rewrite it with `ladder plan`")
    validate_plan(plan, str(path))
    return plan


# A rung's values by kind, checked when a plan is read (a plan is a file a user may edit): whole counts > 0,
# whole numbers >= 0, finite reals, labels, step lists. The training fields' finer domains (heads dividing
# d_model, betas in [0, 1)) are train_config.validate's, applied to each rung by train_config.resolve_rung.
RUNG_COUNTS = ("d_model", "n_layers", "n_heads", "vocab_size", "seq_len", "n", "n_total", "tokens",
               "batch_sequences", "batch_tokens", "total_steps", "flops", "flops_6n", "flops_6nd",
               "flops_per_token", "flops_per_token_6n")
RUNG_WHOLE = ("mlp_hidden", "warmup_steps", "seed")  # at most MAX_INT32: the trainer keeps them in int32
RUNG_REALS = ("multiple", "peak_lr", "final_lr_ratio", "beta1", "beta2", "eps", "weight_decay", "clip", "z_loss",
              "share")
RUNG_STEPS = ("eval_steps", "checkpoint_steps")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_rung_values(r: dict, where: str) -> None:
    what = f"{where}: rung {r['name']!r}"

    def need(ok, key, rule):
        if not ok:
            raise LadderError(f"{what}: {key} is {r[key]!r}, {rule}; fix it or rewrite the plan with `ladder plan`")

    for key in RUNG_COUNTS:
        need(_number(r[key]) and r[key] == int(r[key]) and r[key] > 0, key, "not a whole number > 0")
    for key in RUNG_WHOLE:
        need(_number(r[key]) and r[key] == int(r[key]) and 0 <= r[key] <= MAX_INT32, key,
             f"not a whole number in [0, {MAX_INT32}]")
    for key in RUNG_REALS:
        need(_number(r[key]), key, "not a finite number")
    for key in ("size", "schedule"):
        need(isinstance(r[key], str), key, "not a string")
    for key in RUNG_STEPS:
        need(isinstance(r[key], list) and all(_number(s) and s == int(s) and 0 < s <= r["total_steps"]
                                               for s in r[key]), key, f"not a list of steps in [1, total_steps]")
    # the rung trains total_steps x batch_sequences x seq_len tokens whatever `tokens` says; a hand-edited
    # `tokens` (10, fewer than one batch) was launched and reported as the rung's D
    trained = r["total_steps"] * r["batch_sequences"] * r["seq_len"]
    need(_number(r["tokens"]) and r["tokens"] == trained, "tokens",
         f"but total_steps x batch_sequences x seq_len = {trained:,} tokens are trained")
    need(_number(r["batch_tokens"]) and r["batch_tokens"] == r["batch_sequences"] * r["seq_len"], "batch_tokens",
         f"not batch_sequences x seq_len = {r['batch_sequences'] * r['seq_len']:,}")


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
    for key in ("targets", "rungs"):
        if not isinstance(plan[key], list):
            raise LadderError(f"{where}: {key} is {type(plan[key]).__name__}, not a list; rewrite the plan with "
                              "`ladder plan`")
    if not (_number(plan["fraction"]) and plan["fraction"] > 0):  # the report prints it as a percentage
        raise LadderError(f"{where}: fraction is {plan['fraction']!r}, not a finite number > 0 (the rungs' share of "
                          "the targets' compute); fix it or rewrite the plan with `ladder plan`")
    if not isinstance(plan["defaults"], dict):
        raise LadderError(f"{where}: defaults is not a JSON object; rewrite the plan with `ladder plan`")
    if not plan["rungs"]:
        raise LadderError(f"{where}: rungs is empty; re-plan with at least one size and multiple")
    seen = set()
    for t in plan["targets"]:
        need(t, TARGET_KEYS, f"target {t.get('name', '?') if isinstance(t, dict) else t!r}")
        if t["name"] in seen:  # predictions are keyed by target name: the second silently replaced the first
            raise LadderError(f"{where}: target name {t['name']!r} appears twice; target names must be unique")
        seen.add(t["name"])
        for key in ("n", "tokens", "flops_6nd"):
            if not (_number(t[key]) and t[key] > 0):
                raise LadderError(f"{where}: target {t['name']!r}: {key} is {t[key]!r}, not a finite number > 0; "
                                  "fix it or rewrite the plan with `ladder plan`")
    names = set()
    for r in plan["rungs"]:
        need(r, RUNG_FIELDS, f"rung {r.get('name', '?') if isinstance(r, dict) else r!r}")
        require_path_name(r["name"], f"{where}: rung name")  # it becomes <run root>/<name>
        if r["name"] in names:
            raise LadderError(f"{where}: rung name {r['name']!r} appears twice; rung names must be unique")
        names.add(r["name"])
        _check_rung_values(r, where)
    _check_shares(plan, where)


# A hand-typed share or fraction rounded to a few digits is still the plan's; 5 where the rungs spend 0.9% is not.
SHARE_TOLERANCE = 1e-3


def _check_shares(plan: dict, where: str) -> None:
    """What `ladder plan` writes, and the report prints: each rung's share is its flops_6nd over the targets'
    combined flops_6nd, and fraction is the sum of the shares. No bound like fraction <= 1 holds (explicit
    --sizes and --multiples may spend more than the targets), so a hand-edited value is checked against the
    FLOPs it stands for: a fraction of 5 on a ladder that spends 0.9% was printed in the report as 500%."""
    if not plan["targets"]:  # nothing to take a share of (report and table need none)
        return
    total = sum(t["flops_6nd"] for t in plan["targets"])
    for r in plan["rungs"]:
        share = r["flops_6nd"] / total
        if not math.isclose(r["share"], share, rel_tol=SHARE_TOLERANCE):
            raise LadderError(f"{where}: rung {r['name']!r}: share is {r['share']!r}, but its flops_6nd over the "
                              f"targets' combined flops_6nd is {share:.6g}; set share to {share:.6g} or rewrite "
                              "the plan with `ladder plan`")
    spent = sum(r["share"] for r in plan["rungs"])
    if not math.isclose(plan["fraction"], spent, rel_tol=SHARE_TOLERANCE):
        raise LadderError(f"{where}: fraction is {plan['fraction']!r}, but the rungs' shares of the targets' "
                          f"compute sum to {spent:.6g}; set fraction to {spent:.6g} or rewrite the plan with "
                          "`ladder plan`")


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
