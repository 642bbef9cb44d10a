"""AdamW with global-norm clipping and the ladder's two learning-rate schedules.

Schedules (step s counts updates from 0; W warmup steps, T total steps, floor = peak * final_lr_ratio):
  warmup:  lr(s) = peak * (s + 1) / W for s < W (the first update already moves: no wasted step)
  cosine:  then floor + (peak - floor) * (1 + cos(pi * (s - W) / (T - W))) / 2, reaching the floor at s = T
  wsd:     then peak until the last `decay_fraction` of T, then linear to the floor at s = T
           (warmup-stable-decay; Hu et al. 2024, MiniCPM)
Weight decay is decoupled (AdamW, scaled by the lr as in PyTorch) and applies to projection kernels only:
never to the input embedding or to norm scales.

The schedule's numbers (peak, W, T, floor...) are runtime inputs of the compiled step, not constants in it:
rungs of one model size differ only in them, so they share one compiled program (the persistent compilation
cache serves every rung after the first; docs/training.md, "Compilation").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def schedule_inputs(optim_cfg, total_steps: int) -> dict[str, np.float32]:
    """The numbers a schedule reads, as float32 scalars, chosen so the step computes the learning rates it
    computed when they were compile-time constants, bit for bit: each is the float32 of the Python expression
    the schedule then held, and the two divisions are multiplications by the float32 reciprocal (what XLA made
    of a division by a constant; tests/test_model.py compares against that closure)."""
    peak, floor = optim_cfg.peak_lr, optim_cfg.peak_lr * optim_cfg.final_lr_ratio
    warmup, kind = optim_cfg.warmup_steps, optim_cfg.schedule
    decay_start = total_steps - int(round(optim_cfg.decay_fraction * total_steps)) if kind == "wsd" else warmup
    decay_start = max(decay_start, warmup)
    numbers = {k: np.float32(v) for k, v in dict(
        peak=peak, warmup=warmup, decay_start=decay_start,
        floor=floor, half_range=(peak - floor) * 0.5,  # cosine
        drop=floor - peak).items()}  # wsd
    one = np.float32(1)
    numbers.update(inv_warmup=one / np.float32(max(warmup, 1)),
                   inv_decay_len=one / np.float32(max(total_steps - decay_start, 1)))
    return numbers


def schedule_fn(kind: str, inputs: dict):
    """step -> learning rate for schedule `kind` ("cosine" or "wsd") over `inputs` (schedule_inputs, as host
    numbers or as traced arrays inside the step)."""
    x = {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()}

    def schedule(step):
        s = jnp.asarray(step, jnp.float32)
        warm = x["peak"] * jnp.minimum(1.0, (s + 1.0) * x["inv_warmup"])
        frac = jnp.clip((s - x["decay_start"]) * x["inv_decay_len"], 0.0, 1.0)
        if kind == "cosine":
            decayed = x["floor"] + x["half_range"] * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            decayed = x["peak"] + x["drop"] * frac
        return jnp.where(s < x["warmup"], warm, decayed)

    return schedule


def make_schedule(optim_cfg, total_steps: int):
    """step -> learning rate of one run, on the host (tests check the schedules' shapes with it); the step itself
    uses schedule_fn on schedule_inputs, so a changed LR is an input, not a recompile."""
    return schedule_fn(optim_cfg.schedule, schedule_inputs(optim_cfg, total_steps))


def decay_mask(params):
    """True for projection kernels; False for the input embedding and every norm scale."""

    def is_kernel(path, _):  # the last dict key names the leaf; boxed (logically partitioned) leaves add a .value
        return [p.key for p in path if isinstance(p, jax.tree_util.DictKey)][-1] == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(optim_cfg, schedule) -> optax.GradientTransformation:
    """Clip by global norm (0 = off), then AdamW at `schedule` (step -> lr). The optimizer state's layout does
    not depend on the schedule, so init may pass any step -> lr callable."""
    adamw = optax.adamw(schedule, b1=optim_cfg.beta1, b2=optim_cfg.beta2, eps=optim_cfg.eps,
                        weight_decay=optim_cfg.weight_decay, mask=decay_mask)
    if optim_cfg.clip > 0:
        return optax.chain(optax.clip_by_global_norm(optim_cfg.clip), adamw)
    return adamw
