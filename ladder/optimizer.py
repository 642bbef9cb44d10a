"""AdamW with global-norm clipping and the ladder's two learning-rate schedules.

Schedules (step s counts updates from 0; W warmup steps, T total steps, floor = peak * final_lr_ratio):
  warmup:  lr(s) = peak * (s + 1) / W for s < W (the first update already moves: no wasted step)
  cosine:  then floor + (peak - floor) * (1 + cos(pi * (s - W) / (T - W))) / 2, reaching the floor at s = T
  wsd:     then peak until the last `decay_fraction` of T, then linear to the floor at s = T
           (warmup-stable-decay; Hu et al. 2024, MiniCPM)
Weight decay is decoupled (AdamW, scaled by the lr as in PyTorch) and applies to projection kernels only:
never to the input embedding or to norm scales.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax



def make_schedule(optim_cfg, total_steps: int):
    peak, floor = optim_cfg.peak_lr, optim_cfg.peak_lr * optim_cfg.final_lr_ratio
    warmup, kind = optim_cfg.warmup_steps, optim_cfg.schedule
    decay_start = total_steps - int(round(optim_cfg.decay_fraction * total_steps)) if kind == "wsd" else warmup
    decay_start = max(decay_start, warmup)

    def schedule(step):
        s = jnp.asarray(step, jnp.float32)
        warm = peak * jnp.minimum(1.0, (s + 1.0) / max(warmup, 1))
        frac = jnp.clip((s - decay_start) / max(total_steps - decay_start, 1), 0.0, 1.0)
        if kind == "cosine":
            decayed = floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            decayed = peak + (floor - peak) * frac
        return jnp.where(s < warmup, warm, decayed)

    return schedule


def decay_mask(params):
    """True for projection kernels; False for the input embedding and every norm scale."""

    def is_kernel(path, _):  # the last dict key names the leaf; boxed (logically partitioned) leaves add a .value
        return [p.key for p in path if isinstance(p, jax.tree_util.DictKey)][-1] == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(optim_cfg, total_steps: int) -> tuple[optax.GradientTransformation, callable]:
    """(transformation, schedule): clip by global norm (0 = off), then AdamW."""
    schedule = make_schedule(optim_cfg, total_steps)
    adamw = optax.adamw(schedule, b1=optim_cfg.beta1, b2=optim_cfg.beta2, eps=optim_cfg.eps,
                        weight_decay=optim_cfg.weight_decay, mask=decay_mask)
    if optim_cfg.clip > 0:
        return optax.chain(optax.clip_by_global_norm(optim_cfg.clip), adamw), schedule
    return adamw, schedule
