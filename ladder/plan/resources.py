"""Will a rung fit, and where: per-device memory, batch divisibility, run time, and the slice to launch it on.

These are first-order estimates for planning (formulas in docs/planning.md); `ladder compile` measures the
real per-device memory from XLA for a Cloud TPU topology.
"""

from __future__ import annotations

import math

from ladder import chips
from ladder.arch import pad_vocab
from ladder.errors import LadderError

# The 2-core CPU of these machines: tiny models train at 60-130 GFLOP/s of 6N+attention (measured with a
# jitted train step, d 64..256 at seq 128..256; /work/shared/notes/jax-stack.md). Host memory stands in for HBM.
CPU = chips.Chip("cpu", 6e10, 4 * chips.GiB)
HEADROOM = 0.85  # plan to use at most 85% of HBM: XLA temporaries, fragmentation, the compiler's own buffers
MFU = 0.4  # assumed model FLOP utilisation for time estimates (6N + attention accounting)
MAX_HOURS = 24.0  # choose_slice grows the slice until a rung finishes within this, if memory allows


def chip_for(name: str) -> chips.Chip:
    return CPU if name.lower() == "cpu" else chips.chip(name)


def resolve_mesh(n_devices: int, mesh: dict | None = None) -> dict:
    """{'data', 'fsdp', 'tensor'} with one -1 filled so the product is n_devices (default: all fsdp)."""
    m = {"data": 1, "fsdp": -1, "tensor": 1, **(mesh or {})}
    unknown = set(m) - {"data", "fsdp", "tensor"}
    if unknown:
        raise LadderError(f"mesh: unknown axis {', '.join(sorted(unknown))}; use data, fsdp and tensor")
    fixed = math.prod(v for v in m.values() if v != -1)
    fill = [k for k, v in m.items() if v == -1]
    if len(fill) > 1 or any(v == 0 or v < -1 for v in m.values()):
        raise LadderError(f"mesh: {m} must hold positive sizes and at most one -1; e.g. data=2,fsdp=-1")
    if fill:
        if n_devices % fixed:
            raise LadderError(f"mesh: {n_devices} devices do not divide into {m}; change --mesh or --devices")
        m[fill[0]] = n_devices // fixed
    if math.prod(m.values()) != n_devices:
        raise LadderError(f"mesh: {m} holds {math.prod(m.values())} devices, not {n_devices}; fix --mesh")
    return m


def estimate_memory(rung: dict, n_devices: int, mesh: dict | None = None, *, remat: bool = True,
                    activation_bytes: int = 2) -> dict:
    """Bytes per device for training `rung` on n_devices with the given mesh (ZeRO-3-style sharding).

    params, grads: 4 bytes per parameter (fp32), AdamW moments: 8, all sharded over fsdp * tensor.
    activations per token (activation_bytes each, split over tensor): with remat, each layer's input (d)
    for every layer plus one layer's working set (9d + 3 * mlp_hidden values, and heads * seq attention
    scores in fp32 and probabilities); without remat, the working set of every layer.
    logits: fp32 logits and their gradient over the padded vocabulary. Tokens per device = batch / (data * fsdp).
    """
    m = resolve_mesh(n_devices, mesh)
    replicas = m["data"] * m["fsdp"]
    if rung["batch_sequences"] % replicas:
        raise LadderError(f"batch: {rung['name']} has {rung['batch_sequences']} sequences, not divisible by "
                          f"data*fsdp = {replicas}; choose another device count or mesh")
    shards, t = m["fsdp"] * m["tensor"], m["tensor"]
    d, h, layers, seq = rung["d_model"], rung["mlp_hidden"], rung["n_layers"], rung["seq_len"]
    tokens = rung["batch_sequences"] // replicas * seq
    working = (activation_bytes * (9 * d + 3 * h) + (4 + activation_bytes) * rung["n_heads"] * seq) / t
    per_token = layers * activation_bytes * d / t + working if remat else layers * working
    out = {
        "params": 4 * rung["n_total"] / shards,
        "grads": 4 * rung["n_total"] / shards,
        "optimizer": 8 * rung["n_total"] / shards,
        "activations": tokens * per_token,
        "logits": tokens * pad_vocab(rung["vocab_size"]) * 8 / t,
    }
    out["total"] = sum(out.values())
    return {k: int(v) for k, v in out.items()}


def estimate_seconds(rung: dict, chip: chips.Chip, n_devices: int, mfu: float = MFU) -> float:
    """Training time at `mfu` of the chip's peak, counting 6N + attention FLOPs (what MFU is measured in)."""
    if chip is CPU:
        mfu = 1.0  # CPU.peak_flops is already the measured effective rate
    return rung["flops_6n"] / (n_devices * chip.peak_flops * mfu)


def slice_sizes(chip: chips.Chip) -> list[int]:
    """Chip counts of the single slices considered, smallest first (v4/v5p slices start at 4 chips)."""
    if chip is CPU:
        return [1]
    first = 4 if chip.cores_per_chip_in_type > 1 else 1
    return [first] + [2 ** k for k in range(3, 12 if first == 4 else 9)]


def choose_slice(rung: dict, chip: str = "v5e", *, mesh: dict | None = None, headroom: float = HEADROOM,
                 max_hours: float = MAX_HOURS) -> str:
    """The smallest slice of `chip` on which the rung fits HBM with headroom and finishes within max_hours;
    if none finishes that fast, the largest slice it fits on. The launcher's `--slice` overrides it."""
    c = chip_for(chip)
    if not c.type_prefix:
        raise LadderError(f"chip: {c.name} is not a Cloud TPU; choose_slice knows v4, v5e, v5p, v6e")
    fitting = []
    for n in slice_sizes(c):
        try:
            mem = estimate_memory(rung, n, mesh)["total"]
        except LadderError:
            continue  # batch or mesh does not divide over n devices
        if mem <= headroom * c.hbm_bytes:
            fitting.append(n)
            if estimate_seconds(rung, c, n) <= max_hours * 3600:
                return chips.slice_name(c, n)
    if not fitting:
        raise LadderError(f"chip: {rung['name']} does not fit any single {c.name} slice by the memory estimate; "
                          "pick a chip with more HBM or a mesh with tensor parallelism")
    return chips.slice_name(c, fitting[-1])


def check_rung(rung: dict, chip: str, n_devices: int | None = None, mesh: dict | None = None) -> dict:
    """One dry-run row: devices, per-device batch, memory, time, and problems (errors) / warnings."""
    c = chip_for(chip)
    row = {"name": rung["name"], "chip": c.name, "errors": [], "warnings": []}
    try:
        if n_devices is None:
            n_devices = 1 if c is CPU else chips.parse_slice(choose_slice(rung, chip, mesh=mesh))[1]
        row["slice"] = chips.slice_name(c, n_devices) if c.type_prefix else f"{n_devices}x{c.name}"
        m = resolve_mesh(n_devices, mesh)
        mem = estimate_memory(rung, n_devices, m)
    except LadderError as e:
        row["errors"].append(str(e))
        return row
    row.update(devices=n_devices, mesh=m, rows_per_device=rung["batch_sequences"] // (m["data"] * m["fsdp"]),
               memory=mem, hbm=c.hbm_bytes, hours=estimate_seconds(rung, c, n_devices) / 3600)
    if mem["total"] > c.hbm_bytes:
        row["warnings"].append(f"needs {mem['total'] / chips.GiB:.1f} GiB per device, more than the "
                               f"{c.hbm_bytes / chips.GiB:.0f} GiB of a {c.name}")
    elif mem["total"] > HEADROOM * c.hbm_bytes:
        row["warnings"].append(f"uses {mem['total'] / c.hbm_bytes:.0%} of HBM (headroom below {1 - HEADROOM:.0%})")
    if rung["warmup_steps"] >= rung["total_steps"]:
        row["errors"].append(f"warmup {rung['warmup_steps']} >= total steps {rung['total_steps']}")
    return row
