"""A train config against the devices it will run on, checked before anything is compiled (no JAX here: the
mesh shape, process count and bytes per device come in as plain values, so the TPU compile check can ask
the same questions for a slice it does not have).

train_config.validate checks the values a config may take anywhere; these checks need the mesh: the batch
and every sharded dimension must split evenly over their axes, and the training state must fit a device.
"""

from __future__ import annotations

import math

from ladder import arch as arch_lib
from ladder.arch import arch_of
from ladder.errors import require

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def validate_for_mesh(config, mesh_shape: dict, process_count: int) -> None:
    """Checks that need the mesh: batch and parameter dimensions must split evenly over their mesh axes."""
    m, t = config.model, config.train
    a = arch_of(config)
    dp = mesh_shape["data"] * mesh_shape["fsdp"]
    require(t.global_batch % dp == 0, "train.global_batch",
            f"{t.global_batch} is not divisible by data*fsdp = {dp}", f"use a multiple of {dp}")
    require(t.global_batch % (dp * t.microbatches) == 0, "train.microbatches",
            f"{t.microbatches} microbatches of global_batch={t.global_batch} do not split over data*fsdp = {dp}",
            f"use microbatches dividing {t.global_batch // dp}")
    require(t.global_batch % process_count == 0, "train.global_batch",
            f"{t.global_batch} is not divisible by {process_count} processes", f"use a multiple of {process_count}")
    require(m.d_model % mesh_shape["fsdp"] == 0, "mesh.fsdp",
            f"fsdp={mesh_shape['fsdp']} does not divide d_model={m.d_model}", "choose a divisor of d_model")
    tp = mesh_shape["tensor"]
    for field, size in (("model.n_heads", m.n_heads), ("model.mlp_hidden", a.mlp_hidden),
                        ("model.vocab_size", a.padded_vocab)):
        require(size % tp == 0, "mesh.tensor", f"tensor={tp} does not divide {field}={size}",
                "choose a tensor size dividing heads, MLP width and padded vocab")


def estimate_memory(config, mesh_shape: dict) -> dict:
    """The planner's per-device memory estimate for a train config on a mesh (plan.resources.estimate_memory:
    bytes of params, grads, optimizer, activations and their total), so the trainer's check and the compile
    report judge a config by the same numbers the slice choice rested on (docs/planning.md)."""
    from ladder.plan import resources  # plan comes before train; imported where it is used

    m, t = config.model, config.train
    a = arch_of(config)
    rung = {"name": config.name, "d_model": m.d_model, "n_layers": m.n_layers, "mlp_hidden": a.mlp_hidden,
            "seq_len": m.seq_len, "vocab_size": m.vocab_size, "batch_sequences": t.global_batch,
            "n_total": arch_lib.n_params_total(a)}
    return resources.estimate_memory(rung, math.prod(mesh_shape.values()), dict(mesh_shape), remat=m.remat,
                                     microbatches=t.microbatches, activation_bytes=DTYPE_BYTES.get(m.dtype, 4),
                                     loss_chunk=m.loss_chunk)


def check_fits_memory(config, mesh_shape: dict, bytes_per_device: float | None) -> None:
    """Refuse a model whose training state cannot fit before compiling it: XLA would spend minutes (for 10^5
    layers, longer than anyone waits) on a program that then fails in the allocator. The estimate is the
    planner's (plan.resources.estimate_memory, docs/planning.md: parameters, gradients, AdamW moments and
    the activations the remat policy keeps), a lower bound here (CPU attention may also hold its scores),
    so only a model the estimate alone overflows is refused. bytes_per_device: what one device may hold
    (None: unknown, nothing checked)."""
    if not bytes_per_device:
        return
    need = estimate_memory(config, mesh_shape)
    n_total = arch_lib.n_params_total(arch_of(config))
    gib = 2**30
    require(need["total"] <= bytes_per_device, "model",
            f"{config.name} needs at least {need['total'] / gib:,.1f} GiB per device ({n_total:.3g} "
            f"parameters with their gradients and AdamW moments: {(need['params'] + need['grads'] + need['optimizer']) / gib:,.1f} GiB; "
            f"activations {need['activations'] / gib:,.1f} GiB) but a device here holds {bytes_per_device / gib:,.1f} GiB",
            "shrink model.n_layers / d_model / seq_len or train.global_batch, raise train.microbatches or "
            "model.remat, or use more devices (ladder plan sizes rungs for a slice)")
    if config.eval.tasks:
        check_eval_batch_fits(config, mesh_shape, bytes_per_device, config.eval.batch_size or config.train.global_batch,
                              "eval.batch_size")


def check_eval_batch_fits(config, mesh_shape: dict, bytes_per_device: float | None, batch_size: int,
                          field: str) -> None:
    """An evaluation batch's float32 logits [batch / (data*fsdp), seq_len, vocab] and their log-softmax must fit
    one device: `eval.batch_size=100000000` (a typo's extra zeros) passed every check and asked the allocator
    for terabytes at the run's first evaluation, after the training before it."""
    if not bytes_per_device:
        return
    a = arch_of(config)
    dp = mesh_shape["data"] * mesh_shape["fsdp"]
    need = 2 * math.ceil(batch_size / dp) * a.seq_len * a.padded_vocab * 4
    gib = 2**30
    require(need <= bytes_per_device, field, f"{batch_size:,} rows per evaluation batch need {need / gib:,.1f} GiB "
            f"per device for their logits alone ({math.ceil(batch_size / dp):,} rows x seq_len {a.seq_len} x vocab "
            f"{a.padded_vocab} x float32, twice) but a device here holds {bytes_per_device / gib:,.1f} GiB",
            "use a smaller evaluation batch (0 = train.global_batch)")
