"""One rung from (size, Chinchilla multiple, family): batch, LR, schedule, steps and exact FLOP accounting.

Batch and LR follow the reference ladder (Bhagia et al. 2024, after Porian et al. 2024 / DeepSeek LLM):
  batch tokens = 2048 * 160 * (N / 1.08e8)^(2/3)   (160 sequences of 2048 at N = 108M)
  peak LR      = 0.0047 * (N / 1.08e8)^(-1/3) / 4
rounded/capped per family (docs/planning.md). Every N and FLOP figure comes from ladder.arch.
"""

from __future__ import annotations

import math

from ladder.arch import Arch, flops_per_token_6n, flops_per_token_reference, n_params, n_params_total
from ladder.plan.presets import Family
from ladder.plan.sizes import format_multiple

TOKENS_PER_PARAM = 20  # 1xC (Hoffmann et al. 2022)
OPTIMIZER = dict(beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, z_loss=1e-5)
FINAL_LR_RATIO = 0.1
CHECKPOINT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def batch_sequences(n: float, seq_len: int, multiple: int) -> int:
    """Reference batch rule in sequences of seq_len, rounded to `multiple` (64 for the OLMo family), >= multiple."""
    tokens = 2048 * 160 * (n / 1.08e8) ** (2 / 3)
    return max(multiple, multiple * round(tokens / seq_len / multiple))


def peak_lr(n: float, cap: float) -> float:
    return min(cap, 0.0047 * (n / 1.08e8) ** (-1 / 3) / 4)


def steps_at(fractions, total_steps: int) -> list[int]:
    """Distinct steps ceil(f * total), at least 1; always ends at total_steps."""
    return sorted({max(1, min(total_steps, math.ceil(f * total_steps))) for f in fractions} | {total_steps})


def make_rung(size: str, arch: Arch, multiple: float, family: Family, *, seed: int = 0,
              schedule: str = "cosine", eval_fractions=None) -> dict:
    """A plan rung (docs/planning.md lists every key). Tokens are what the run trains: whole batches, so
    total_steps = ceil(c * 20 * N / batch_tokens) and tokens = total_steps * batch_tokens."""
    n = n_params(arch)
    batch = batch_sequences(n, arch.seq_len, family.batch_multiple)
    batch_tokens = batch * arch.seq_len
    total_steps = math.ceil(multiple * TOKENS_PER_PARAM * n / batch_tokens)
    tokens = total_steps * batch_tokens
    warmup = min(max(1, round(n / batch_tokens)), max(1, total_steps // 2))  # N tokens of warmup
    fpt, fpt_6n = flops_per_token_reference(arch), flops_per_token_6n(arch)
    return {
        "name": f"{size}-{format_multiple(multiple)}", "size": size, "multiple": multiple,
        "d_model": arch.d_model, "n_layers": arch.n_layers, "n_heads": arch.n_heads,
        "mlp_hidden": arch.mlp_hidden, "vocab_size": arch.vocab_size, "seq_len": arch.seq_len,
        "n": n, "n_total": n_params_total(arch),
        "tokens": tokens, "batch_sequences": batch, "batch_tokens": batch_tokens,
        "peak_lr": peak_lr(n, family.max_lr), "final_lr_ratio": FINAL_LR_RATIO,
        "warmup_steps": warmup, "total_steps": total_steps, "schedule": schedule,
        **OPTIMIZER, "seed": seed,
        "eval_steps": steps_at(eval_fractions or family.eval_fractions, total_steps),
        "checkpoint_steps": steps_at(CHECKPOINT_FRACTIONS, total_steps),
        "flops": fpt * tokens, "flops_6n": fpt_6n * tokens, "flops_6nd": 6 * n * tokens,
        "flops_per_token": fpt, "flops_per_token_6n": fpt_6n,
        "share": None,  # filled in by plan_ladder: flops_6nd / targets' combined 6ND
    }
