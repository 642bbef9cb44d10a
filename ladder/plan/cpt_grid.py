"""Continual-pretraining (CPT) rungs planned from a ladder's base rungs: every base x domain share x token
budget, each a copy of its base with its own length, re-warmup and the keys the trainer reads to start from
the base's final checkpoint (pure Python). The study that trains them: ladder/cpt.py; docs/specialization.md.
"""

from __future__ import annotations

import copy
import math

from ladder.errors import require


def cpt_grid(base_rungs: list[dict], ratios: list[float], budgets: list[float], *, per_param: bool = True,
             warmup_fraction: float = 0.02, lr_factor: float = 1.0, restore_optimizer: bool = False) -> list[dict]:
    """Plan-like CPT rungs: every base rung x domain share r x token budget.

    Each rung is a copy of its base rung (architecture, batch, optimizer) with its own length and schedule:
    `tokens` = budget (times N when `per_param`, so budgets are tokens per parameter), a re-warmup of
    `warmup_fraction` of its steps, peak LR times `lr_factor`, plus CPT keys the trainer reads:
    `base_run` (the base rung's name), `init_from` {run, step: "final", restore_optimizer}, `r` (domain share),
    `mixture` {general: 1 - r, domain: r}, `d_cpt` (= tokens) and `kind` ("general" at r = 0, else "domain").
    """
    for i, r in enumerate(ratios):
        require(0 <= r <= 1, f"ratios[{i}]", f"{r} is outside [0, 1]", "give domain shares of the CPT mixture in [0, 1]")
    for i, b in enumerate(budgets):
        require(b > 0, f"budgets[{i}]", f"{b} is not > 0", "give CPT budgets as tokens per parameter (or tokens)")
    require(0 <= warmup_fraction < 1, "warmup_fraction", f"{warmup_fraction} is outside [0, 1)", "use e.g. 0.02")
    needed = ("name", "size", "n", "tokens", "batch_tokens", "peak_lr", "flops_per_token", "flops_per_token_6n")
    rungs = []
    for base in base_rungs:
        for key in needed:
            require(key in base, f"rung.{key}", f"missing from base rung {base.get('name', '?')!r}", "pass rungs of a plan file")
        for budget in budgets:
            tokens = budget * base["n"] if per_param else budget
            steps = max(1, math.ceil(tokens / base["batch_tokens"]))
            tokens = steps * base["batch_tokens"]
            for r in ratios:
                rung = copy.deepcopy(base)
                tag = f"{budget:g}xN" if per_param else f"{tokens:.3g}tok"
                rung.update(
                    name=f"{base['name']}-cpt-r{r:g}-{tag}", tokens=tokens, total_steps=steps,
                    warmup_steps=max(1, round(warmup_fraction * steps)), peak_lr=base["peak_lr"] * lr_factor,
                    eval_steps=[steps], checkpoint_steps=[steps],
                    flops=base["flops_per_token"] * tokens, flops_6n=base["flops_per_token_6n"] * tokens,
                    base_run=base["name"], init_from={"run": base["name"], "step": "final", "restore_optimizer": restore_optimizer},
                    r=float(r), mixture={"general": 1.0 - r, "domain": float(r)}, d_cpt=tokens,
                    kind="general" if r == 0 else "domain",
                )
                if "share" in base and base.get("flops"):
                    rung["share"] = base["share"] * rung["flops"] / base["flops"]
                rungs.append(rung)
    return rungs
