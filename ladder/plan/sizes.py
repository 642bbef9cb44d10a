"""Sizes by name ("60M", "1.3B", "2e8") and the architecture search that turns a parameter budget into a shape.

The search rule (docs/planning.md, "Architecture search"): among d_model on a hardware-friendly grid and
any layer count, keep the shapes whose N (ladder.arch.n_params) is within 5% of the request and pick the one
whose aspect ratio d_model/n_layers is closest to the reference ladder's, which grows from 64 (190M, 370M)
through 96 (760M) to 128 (1.3B, 7B, 13B): r*(N) = clamp(64 (N/3.7e8)^0.56, 64, 128). Kaplan et al. (2020,
fig. 5) found loss within a few percent over aspect ratios 20..200, so the rule is about matching the
reference ladder's shapes, not about a sharp optimum.
"""

from __future__ import annotations

import math
import re

from ladder.arch import Arch, n_params, n_params_per_layer
from ladder.errors import LadderError, require

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
TOLERANCE = 0.05  # arch search must land within 5% of the requested N
MIN_ASPECT = 8  # d_model / n_layers below this is a stack of slivers, not a model


MAX_COUNT = 1e30  # a parameter or token count above this is a unit error (also results.py's bound on n, d)


def parse_count(text: str | float | int, field: str) -> float:
    """'60M' -> 6e7, '1.3B' -> 1.3e9, '150k' -> 1.5e5, '2e8' -> 2e8, 7e9 -> 7e9; must be positive."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*", str(text).lower())
        if not m:
            raise LadderError(f"{field}: cannot read {text!r} as a count; write e.g. 60M, 1.3B, 150k or 2e8")
        value = float(m.group(1)) * _UNITS[m.group(2)]
    if not (value > 0 and math.isfinite(value)):
        raise LadderError(f"{field}: {text!r} must be a positive number; write e.g. 60M, 1.3B, 150k or 2e8")
    # the results table's bound on n and d: 1e300 predicted 1.000 after numpy overflow warnings
    if value > MAX_COUNT:
        raise LadderError(f"{field}: {text!r} is above {MAX_COUNT:.0e}, beyond any model or corpus; check the "
                          "exponent")
    return value


# A run whose final D is under N/100 is a count in other units (billions of tokens, tokens per parameter), not a
# run: even a smoke rung sees 5 tokens per parameter, and one checkpoint early in a run about 1. The importer
# (import_checks.require_counts) and the predictor (laws/predict.py) refuse such a run's table alike.
MIN_RUN_TOKENS_PER_PARAM = 0.01


def require_tokens_per_parameter(name, n: float, tokens: float, field: str = "target") -> None:
    """A target trained on fewer tokens than it has parameters is a unit slip, not a run: '7b-4' (4 tokens,
    meant 4T), '7B=7:4' (N and D in billions and trillions). Before, `ladder predict` fitted such a target
    and flagged it IN ("inside the ladder's range"). Every rung of every preset sees >= 10 tokens per
    parameter (0.5xC), and a target below 1 lies far below the ladder in D."""
    if not tokens >= n:
        raise LadderError(f"{field} {name}: {format_count(tokens)} tokens for {format_count(n)} parameters, fewer "
                          "tokens than parameters (is a count in other units?); write the tokens with a suffix "
                          "or in full, e.g. 7b-4t or 7B=6.9e9:4e12")


MAX_FLOPS_PER_PARAM = 6e3  # F / N above this (1000 x 6N) is the total compute, not FLOPs per token


def require_flops_per_token(name, n: float, f: float, field: str = "--target") -> None:
    """A target's FLOPs per token F lies between one forward pass (2N) and 1000 x 6N: attention adds at most a
    few times 6N even for tiny long-context models, while the total training FLOPs given by mistake is 6ND,
    about 10^12 x 6N (before: `7B=6.89e9:3.95e12:1.7e23` was predicted from that compute, no flag)."""
    require(f >= 2 * n, f"{field} {name}", f"FLOPs per token F = {f:.4g} is below 2N = {2 * n:.4g}, less than one "
            "forward pass", f"give training FLOPs per token, about 6N = {6 * n:.4g} plus attention, or drop F to "
            "extrapolate it from the ladder")
    require(f <= MAX_FLOPS_PER_PARAM * n, f"{field} {name}", f"FLOPs per token F = {f:.4g} is {f / (6 * n):.3g} x 6N "
            "(is it the total training FLOPs?)", f"give training FLOPs per token, about 6N = {6 * n:.4g} plus "
            "attention, or drop F to extrapolate it from the ladder")


def format_count(value: float) -> str:
    """Two significant digits and a unit: 1.396e9 -> '1.4B', 1.75e8 -> '180M', 4.6e4 -> '46k'."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale * 0.9995:
            return f"{float(f'{value / scale:.2g}'):g}{unit}"
    return f"{float(f'{value:.2g}'):g}"


def format_multiple(c: float) -> str:
    """Chinchilla multiple label: 1 -> '1xC', 0.5 -> '0.5xC'."""
    return f"{c:g}xC"


def target_aspect(n: float) -> float:
    """d_model / n_layers of the reference ladder, interpolated in log N: 64 at 370M, 96 at 760M, 128 from 1.3B."""
    return min(128.0, max(64.0, 64.0 * (n / 3.7e8) ** 0.56))


def head_dim_for(d_model: int) -> int:
    """64 up to d=1024, d/16 up to 128 above (the reference ladder: 768/12, 1024/16, 1536/16, 2048/16);
    32 (or 16 where 32 does not divide d) for the sub-256 widths of CPU smoke models."""
    if d_model < 256:
        return 32 if d_model % 32 == 0 else 16
    return int(min(128, max(64, d_model // 16)))


def d_model_grid(max_d: int = 16384):
    """Widths the search considers: multiples of 16 below 256, of 64 below 1024, of 128 above (TPU tiles)."""
    d = 32
    while d <= max_d:
        yield d
        d += 16 if d < 256 else 64 if d < 1024 else 128


def arch_for_size(n: float, vocab_size: int, seq_len: int, tolerance: float | None = TOLERANCE,
                  field: str = "sizes") -> Arch:
    """The shape with the reference aspect ratio whose N is within `tolerance` of n (None: no hard limit,
    the same score decides; the budget chooser uses this at tiny sizes where the grid is coarse)."""
    want = target_aspect(n)
    best, best_key = None, None
    for d in d_model_grid():
        probe = Arch(d, 1, d // head_dim_for(d), vocab_size, seq_len)
        fixed = n_params(probe) - n_params_per_layer(probe)  # final norm + LM head
        per_layer = n_params_per_layer(probe)
        if fixed >= n * (1 + (tolerance or 0.5)):
            break  # the LM head alone is too big; wider only gets worse
        for layers in {max(1, math.floor((n - fixed) / per_layer)), max(1, math.ceil((n - fixed) / per_layer))}:
            if d < MIN_ASPECT * layers:
                continue
            a = Arch(d, layers, d // head_dim_for(d), vocab_size, seq_len)
            error = abs(math.log(n_params(a) / n))
            if tolerance is not None and error > math.log1p(tolerance):
                continue
            # aspect and N error together: a 1% miss in N costs like a 10% miss in aspect ratio
            key = abs(math.log(d / layers / want)) + 10 * error
            if best_key is None or key < best_key:
                best, best_key = a, key
    if best is None:
        near = arch_for_size(n, vocab_size, seq_len, tolerance=None) if tolerance is not None else None
        hint = f"the nearest shape has {format_count(n_params(near))}" if near else "ask for a larger size"
        within = f"within {tolerance:.0%} " if tolerance is not None else ""
        raise LadderError(f"{field}: no shape hits {format_count(n)} parameters {within}at vocab "
                          f"{vocab_size} (d_model/n_layers >= {MIN_ASPECT}); {hint}, or ask for another size")
    return best
