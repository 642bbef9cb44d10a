"""Choosing rungs for a compute fraction: the widest ladder the budget buys, or a clear refusal.

What is traded (docs/planning.md, "Choosing rungs for a budget"): for a fixed budget, more sizes and more
multiples force every rung smaller (cost ~ sum(c) * sum(N^2)). Bhagia et al. (2024) find that ladders of
fewer or smaller rungs predict worse, and that larger rungs matter most; this chooser keeps the paper's
shape (4 sizes, 2x apart; multiples 1, 2, 5, 10) while the budget allows the smallest rung to stay useful,
and only then drops to 3 sizes and/or multiples 1, 2, 5. The largest rung is capped at 1/4 of the smallest
target (the reference ladder's 1.3B is 1/5 of 7B); budget left over by the cap stays unspent.
"""

from __future__ import annotations

import math

from ladder.arch import n_params
from ladder.errors import LadderError
from ladder.plan.presets import Family
from ladder.plan.rungs import TOKENS_PER_PARAM, make_rung
from ladder.plan.sizes import arch_for_size, format_count

SIZE_STEP = 2.0  # neighbouring sizes differ by 2x in N (the reference ladder: 1.9x, 2.0x, 1.7x)
MAX_SHARE_OF_TARGET = 0.25
SHAPES = ((4, (1, 2, 5, 10)), (3, (1, 2, 5, 10)), (4, (1, 2, 5)), (3, (1, 2, 5)))  # preferred first


def _cost(n_max: float, n_sizes: int, multiples) -> float:
    """6ND of the whole ladder at nominal tokens: 6 * 20 * sum(c) * sum_i (n_max / 2^i)^2."""
    ratios = sum(SIZE_STEP ** (-2 * i) for i in range(n_sizes))
    return 6 * TOKENS_PER_PARAM * sum(multiples) * ratios * n_max ** 2


def _sizes(n_max: float, n_sizes: int, family: Family):
    """[(label, arch)] smallest first, or None when two sizes collapse onto one shape."""
    archs = [arch_for_size(n_max / SIZE_STEP ** i, family.vocab_size, family.seq_len, tolerance=None)
             for i in reversed(range(n_sizes))]
    labels = [format_count(n_params(a)) for a in archs]
    return None if len(set(labels)) < n_sizes else list(zip(labels, archs))


def choose_rungs(fraction: float, targets_6nd: float, family: Family, smallest_target_n: float, multiples=None):
    """(sizes [(label, arch)], multiples) spending at most fraction * targets_6nd, or a LadderError saying
    what fraction the smallest useful ladder would need."""
    budget_6nd = fraction * targets_6nd
    shapes = SHAPES if multiples is None else ((4, tuple(multiples)), (3, tuple(multiples)))
    cap = MAX_SHARE_OF_TARGET * smallest_target_n
    for n_sizes, mults in shapes:
        n_max = min(cap, math.sqrt(budget_6nd / _cost(1.0, n_sizes, mults)))
        for _ in range(200):  # shapes land within a few % of the asked N: shrink until the exact cost fits
            if n_max / SIZE_STEP ** (n_sizes - 1) < family.min_n:
                break
            sizes = _sizes(n_max, n_sizes, family)
            if sizes is not None and min(n_params(a) for _, a in sizes) >= family.min_n:
                spent = sum(make_rung(s, a, c, family)["flops_6nd"] for s, a in sizes for c in mults)
                if spent <= budget_6nd:
                    return sizes, mults
            n_max *= 0.99
    n_sizes, mults = shapes[-1]
    need = _cost(family.min_n * SIZE_STEP ** (n_sizes - 1), n_sizes, mults)
    raise LadderError(
        f"fraction: the budget buys no useful ladder: {n_sizes} sizes from {format_count(family.min_n)} "
        f"(the smallest useful rung of the {family.name} family) x multiples {', '.join(f'{c:g}' for c in mults)} "
        f"need {100 * need / targets_6nd:.3g}% of the targets' compute, more than {100 * fraction:.3g}%; raise --fraction "
        "or list --sizes and --multiples yourself")
