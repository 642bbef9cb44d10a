"""The ladder planner: from target runs and a compute fraction (or explicit sizes and multiples) to rungs.

Pure Python and instant (no JAX). `plan_ladder` returns the plan dict that `write_plan` stores and that the
trainer (`ladder train --plan`) and the launcher read unchanged; docs/planning.md has every formula.

    plan = plan_ladder(["7b-4t", "13b-5t"], preset="olmo-ladder")
    print_table(plan); write_plan(plan, "plan.json")
"""

from __future__ import annotations

import re

from ladder.arch import Arch, flops_per_token_reference, n_params
from ladder.errors import LadderError
from ladder.plan.budget import choose_rungs
from ladder.plan.planfile import (VERSION, format_table, load_plan, print_table, rung_arch, validate_plan,
                                 write_plan)
from ladder.plan.presets import FAMILIES, LADDERS, OLMO, TARGETS, Family, ladder_preset, preset_flops_per_token
from ladder.plan.resources import MFU, check_rung, choose_slice, estimate_memory, estimate_seconds
from ladder.plan.rungs import TOKENS_PER_PARAM, make_rung
from ladder.plan.sizes import arch_for_size, format_count, parse_count, require_tokens_per_parameter

__all__ = [
    "plan_ladder", "resolve_target", "write_plan", "load_plan", "rung_arch", "estimate_memory", "estimate_seconds", "choose_slice",
    "check_rung", "print_table", "FAMILIES", "MFU", "format_table", "parse_count", "arch_for_size", "LADDERS", "TARGETS", "VERSION",
    "preset_flops_per_token",
]

DEFAULT_FRACTION = 0.01


def _tokens_hint(text: str) -> str:
    """A size alone ('1b') names no token count, and there is no default: suggest 20 tokens per parameter
    (Chinchilla) as an example of the form, not a choice made for the user."""
    try:
        n = parse_count(text, "target")
    except LadderError:
        return ""
    tokens = format_count(20 * n)
    tokens = tokens.lower() if text == text.lower() else tokens  # 1b-20b, 7B-140B: the way it was written
    return f"; a size alone gives no tokens: e.g. {text}-{tokens} for 20 tokens per parameter"


def _target(spec, family: Family) -> tuple[dict, Family]:
    """A preset name ('7b-4t'), 'SIZE-TOKENS' ('3b-60b', shape by arch search), or a dict
    {'name', 'tokens', and 'arch' (Arch fields) or 'n'}."""
    if isinstance(spec, str) and spec.lower() in TARGETS:
        preset = TARGETS[spec.lower()]
        name, arch, tokens, family = spec.lower(), preset.arch, preset.tokens, preset.family
    elif isinstance(spec, str):
        m = re.fullmatch(r"([^-]+)-([^-]+)", spec.strip())
        if not m:
            hint = _tokens_hint(spec.strip())
            raise LadderError(f"target: {spec!r} is neither a preset ({', '.join(TARGETS)}) nor SIZE-TOKENS "
                              f"such as 3b-60b{hint}")
        n, tokens = parse_count(m.group(1), "target"), parse_count(m.group(2), "target")
        name, arch = spec.lower(), arch_for_size(n, family.vocab_size, family.seq_len, field="target")
    elif isinstance(spec, dict) and "tokens" in spec and ("arch" in spec or "n" in spec):
        name, tokens = str(spec.get("name", "target")), parse_count(spec["tokens"], "target")
        arch = (Arch(**spec["arch"]) if "arch" in spec else
                arch_for_size(parse_count(spec["n"], "target"), family.vocab_size, family.seq_len, field="target"))
    else:
        raise LadderError(f"target: cannot read {spec!r}; give a preset name, SIZE-TOKENS, or a dict with "
                          "tokens and arch or n")
    tokens, n = int(tokens), n_params(arch)
    require_tokens_per_parameter(name, n, tokens)
    return {"name": name, "n": n, "tokens": tokens, "flops_6nd": 6 * n * tokens,
            "flops": flops_per_token_reference(arch) * tokens, "arch": arch.to_dict()}, family


def resolve_target(spec, family: Family = OLMO) -> dict:
    """A target as the planner sees it ({name, n, tokens, flops_6nd, flops, arch}); `family` shapes
    SIZE-TOKENS and {n, tokens} targets (presets carry their own)."""
    return _target(spec, family)[0]


def _multiples(values) -> tuple[float, ...]:
    out = []
    for v in values:
        try:
            c = float(v)
        except (TypeError, ValueError):
            raise LadderError(f"multiples: cannot read {v!r} as a number; write e.g. 1,2,5,10")
        if not c > 0 or c != c or c == float("inf"):
            raise LadderError(f"multiples: {v!r} is not positive; Chinchilla multiples are > 0, e.g. 0.5,1,2,5")
        c = int(c) if c.is_integer() else c
        if c in out:
            raise LadderError(f"multiples: {v!r} is listed twice (rung names would collide); list each once")
        out.append(c)
    if not out:
        raise LadderError("multiples: the list is empty; write e.g. 1,2,5,10")
    return tuple(sorted(set(out)))


def _sizes(values, family: Family) -> list[tuple[str, Arch]]:
    out = {}
    for v in values:
        label = v if isinstance(v, str) and v in family.named_archs else None
        if label:
            arch = family.named_archs[label]
        else:
            n = parse_count(v, "sizes")
            arch = arch_for_size(n, family.vocab_size, family.seq_len, field="sizes")
            label = v.strip() if isinstance(v, str) and not re.fullmatch(r"[0-9.e+]+", v.strip()) else format_count(n)
        twin = [k for k, a in out.items() if k == label or n_params(a) == n_params(arch)]
        if twin:
            raise LadderError(f"sizes: {v!r} repeats size {twin[0]} ({n_params(arch):,} parameters); list each "
                              "size once")
        out[label] = arch
    if not out:
        raise LadderError("sizes: the list is empty; write e.g. 60M,150M,370M")
    return sorted(out.items(), key=lambda kv: n_params(kv[1]))


def plan_ladder(targets=None, fraction: float | None = None, sizes=None, multiples=None, preset: str | None = None,
                *, seed: int = 0, schedule: str = "cosine", eval_fractions=None) -> dict:
    """The plan for `targets` (names, SIZE-TOKENS strings or dicts; default: the preset's own targets).

    Rungs come from, in order: explicit `sizes` (names like '60M', '1.3B' or numbers; a family's published
    sizes keep their published shape), the preset's sizes, or, when neither is given, the widest ladder that
    `fraction` (default 1%) of the targets' combined 6ND buys. `multiples` likewise. With explicit sizes a
    given `fraction` is a cap: a plan that spends more is an error. `eval_fractions` (default: the family's)
    places each rung's evaluations as fractions of its steps.
    """
    ladder = ladder_preset(preset) if preset is not None else None
    # one target or a comma string where a list is meant (a notebook's plan_ladder("7b-4t", sizes="60M,150M")):
    # before, the string was taken character by character ("target: '7' is neither a preset ...")
    targets = [targets] if isinstance(targets, (str, dict)) else targets
    sizes, multiples = (v.split(",") if isinstance(v, str) else v for v in (sizes, multiples))
    if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise LadderError(f"fraction: {fraction!r} is outside (0, 1]; give a share of the targets' compute, "
                          "e.g. 0.01")
    if schedule not in ("cosine", "wsd"):
        raise LadderError(f"schedule: {schedule!r} is unknown; choose cosine or wsd")
    target_list, family = _targets_and_family(targets, ladder)
    total_6nd = sum(t["flops_6nd"] for t in target_list)
    smallest = min(t["n"] for t in target_list)
    chosen, mults = _sizes_and_multiples(sizes, multiples, fraction, ladder, family, total_6nd, smallest)
    too_big = [label for label, a in chosen if n_params(a) >= smallest]
    if too_big:
        raise LadderError(f"target: the smallest target ({smallest:,} parameters) is not larger than rung size "
                          f"{', '.join(too_big)}; a ladder predicts a larger model: use smaller --sizes")
    fracs = _eval_fractions(eval_fractions)
    rungs = [make_rung(label, a, c, family, seed=seed, schedule=schedule, eval_fractions=fracs)
             for label, a in chosen for c in mults]
    _check_whole_batches(rungs)
    for r in rungs:
        r["share"] = r["flops_6nd"] / total_6nd
    spent = sum(r["share"] for r in rungs)
    if fraction is not None and spent > fraction * (1 + 1e-9):
        raise LadderError(f"fraction: these rungs spend {spent:.3%} of the targets' compute, more than the "
                          f"--fraction cap {fraction:.3%}; drop sizes or multiples, or raise --fraction")
    if spent > 1:  # without a cap (explicit sizes and multiples), e.g. --multiples 1e12 (a rung of 10^21 tokens)
        raise LadderError(f"multiples: these rungs spend {spent:.3g}x the targets' compute: a ladder costs a small "
                          "share of what it predicts; use smaller --multiples or --sizes (e.g. 1,2,5,10)")
    plan = {"version": VERSION, "preset": preset, "family": family.name, "targets": target_list,
            "fraction": spent, "defaults": dict(family.defaults), "rungs": rungs}
    # the plan file reader's checks, here too: a plan shown or returned is one `ladder launch` accepts (before,
    # --seed 2**40 was planned and written, and refused by every rung at launch)
    validate_plan(plan, "plan")
    return plan


def _targets_and_family(targets, ladder) -> tuple[list[dict], Family]:
    """The targets (given, else the preset's) and the family they share: without a preset the targets' family
    decides vocab, seq_len and the batch/LR rules, so targets from two families cannot share one plan."""
    family = ladder.family if ladder else OLMO
    specs = list(targets) if targets else list(ladder.targets if ladder else [])
    if not specs:
        raise LadderError("target: no target given; pass --target (e.g. 7b-4t) or a --preset")
    resolved = [_target(s, family) for s in specs]
    if ladder is None:
        families = {f.name for _, f in resolved}
        if len(families) > 1:
            raise LadderError(f"target: targets from different families ({', '.join(sorted(families))}); plan "
                              "them separately or pass --preset")
        family = resolved[0][1]
    target_list = [t for t, _ in resolved]
    if len({t["name"] for t in target_list}) < len(target_list):
        raise LadderError("target: the same target is listed twice; list each once")
    return target_list, family


def _sizes_and_multiples(sizes, multiples, fraction, ladder, family, total_6nd: float, smallest: int):
    """([(label, arch)], multiples) in plan_ladder's order of precedence: explicit sizes, the preset's, else
    the widest ladder `fraction` of the targets' compute buys (which may choose the multiples too)."""
    mults = _multiples(multiples) if multiples is not None else None
    if sizes is not None:
        chosen = _sizes(sizes, family)
    elif ladder is not None and fraction is None:
        chosen = [(s, family.named_archs[s]) for s in ladder.sizes]
    else:
        chosen, mults = choose_rungs(fraction or DEFAULT_FRACTION, total_6nd, family, smallest, mults)
    if mults is None:
        mults = ladder.multiples if ladder else (1, 2, 5, 10)
    return chosen, mults


def _check_whole_batches(rungs: list[dict]) -> None:
    """A rung asked to train less than one batch would be rounded up to one step, training many times the
    tokens its label (e.g. `1e-09xC`) says: refused, naming the smallest multiple every size can train."""
    short = [r for r in rungs if r["multiple"] * TOKENS_PER_PARAM * r["n"] < r["batch_tokens"]]
    if short:
        need = max(r["batch_tokens"] / (TOKENS_PER_PARAM * r["n"]) for r in rungs)
        r = short[0]
        raise LadderError(f"multiples: {r['multiple']:g}xC gives rung {r['name']} "
                          f"{r['multiple'] * TOKENS_PER_PARAM * r['n']:.3g} tokens, less than one batch "
                          f"({r['batch_tokens']:,} tokens); use --multiples of at least {need:.3g}")


def _eval_fractions(fractions) -> tuple[float, ...] | None:
    if fractions is None or len(fractions) == 0:
        return None
    try:
        out = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise LadderError(f"eval_fractions: {fractions!r} is not a list of numbers; e.g. 0.25,0.5,0.9,1") from None
    bad = [f for f in out if not 0 < f <= 1]
    if bad:
        raise LadderError(f"eval_fractions: {bad} outside (0, 1]; give fractions of a rung's steps, e.g. 0.5,0.9,1")
    return out
