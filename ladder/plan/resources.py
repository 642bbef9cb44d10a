"""Will a rung fit, and where: per-device memory, batch divisibility, run time, and the slice to launch it on.

These are first-order estimates for planning (formulas in docs/planning.md); `ladder compile` measures the
real per-device memory from XLA for a Cloud TPU topology. Slice, host and mesh facts: ladder.topology.
"""

from __future__ import annotations

from ladder import chips
from ladder.arch import Arch, n_params, pad_vocab
from ladder.errors import LadderError
from ladder.plan.planfile import rung_arch
from ladder.topology import HBM_USABLE_FRACTION, chips_per_host, default_mesh, fill_mesh

# The 2-core CPU of these machines: tiny models train at 60-130 GFLOP/s of 6N+attention (measured with a
# jitted train step, d 64..256 at seq 128..256; /work/shared/notes/jax-stack.md). Host memory stands in for HBM.
CPU = chips.Chip("cpu", 6e10, 4 * chips.GiB)
MFU = 0.4  # assumed model FLOP utilisation for time estimates (6N + attention accounting)
MAX_HOURS = 24.0  # choose_slice grows the slice until a rung finishes within this, if memory allows


def chip_for(name: str) -> chips.Chip:
    return CPU if name.lower() == "cpu" else chips.chip(name)


def resolve_mesh(n_devices: int, mesh: dict | None = None) -> dict:
    """{'data', 'fsdp', 'tensor'} with one -1 filled so the product is n_devices (default: all fsdp)."""
    return fill_mesh(mesh or {}, n_devices)


def slice_mesh(rung: dict, chip: chips.Chip, n_devices: int, mesh: dict | None = None) -> dict | None:
    """The mesh the planner assumes for `rung` on n_devices of `chip`: the user's `mesh` when given,
    else default_mesh (None when that finds none: estimate_memory then names the divisibility problem)."""
    if mesh is not None:
        return mesh
    return default_mesh(rung_arch(rung), rung["batch_sequences"], n_devices, chips_per_host(chip, n_devices))


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


def choose_slice(rung: dict, chip: str = "v5e", *, mesh: dict | None = None, headroom: float = HBM_USABLE_FRACTION,
                 max_hours: float = MAX_HOURS) -> str:
    """The smallest slice of `chip` on which the rung fits HBM with headroom and finishes within max_hours;
    if none finishes that fast, the largest slice it fits on. Each slice is weighed with `mesh`, else with
    its default_mesh (tensor-parallel where the batch cannot split over every chip); a slice with no
    workable mesh is skipped.

    Tensor parallelism makes a rung fit; it never grows a slice past the largest that fits with pure fsdp
    (the time estimate assumes one MFU on every mesh, which would overstate what the extra chips buy):
    7b-4t stays on v5p-512 with fsdp 256, 13b-5t (which fits no pure-fsdp slice) gets v5p-512 with
    fsdp 64 x tensor 4. The launcher's `--slice` overrides the choice."""
    c = chip_for(chip)
    if not c.type_prefix:
        raise LadderError(f"chip: {c.name} is not a Cloud TPU; choose_slice knows v4, v5e, v5p, v6e")
    fitting, fits_pure_fsdp = [], False
    for n in slice_sizes(c):
        m = slice_mesh(rung, c, n, mesh)
        if fits_pure_fsdp and mesh is None and m is not None and m["tensor"] > 1:
            break  # every larger slice needs tensor parallelism too: the batch or d_model stops dividing
        try:
            mem = estimate_memory(rung, n, m)["total"]
        except LadderError:
            continue  # batch or mesh does not divide over n devices
        if mem <= headroom * c.hbm_bytes:
            fitting.append(n)
            fits_pure_fsdp |= m is None or m["tensor"] == 1
            if estimate_seconds(rung, c, n) <= max_hours * 3600:
                return chips.slice_name(c, n)
    if not fitting:
        raise LadderError(f"chip: {rung['name']} does not fit any single {c.name} slice by the memory estimate; "
                          "pick a chip with more HBM, or give a mesh with more tensor parallelism")
    return chips.slice_name(c, fitting[-1])


def target_rungs(plan: dict) -> list[dict]:
    """The plan's targets as rungs (their family's batch rule), so they can be placed and compiled like any
    rung (`ladder plan --dry-run` lists them; `ladder compile --targets`)."""
    from ladder.plan.presets import FAMILIES
    from ladder.plan.rungs import make_rung

    family = FAMILIES[plan.get("family", "olmo")]
    out = []
    for t in plan["targets"]:
        arch = Arch(**t["arch"])
        out.append(make_rung(t["name"], arch, t["tokens"] / (20 * n_params(arch)), family) | {"name": t["name"]})
    return out


def check_rung(rung: dict, chip: str, n_devices: int | None = None, mesh: dict | None = None) -> dict:
    """One dry-run row: devices, per-device batch, memory, time, and problems (errors) / warnings."""
    c = chip_for(chip)
    row = {"name": rung["name"], "chip": c.name, "errors": [], "warnings": []}
    try:
        if n_devices is None:
            n_devices = 1 if c is CPU else chips.parse_slice(choose_slice(rung, chip, mesh=mesh))[1]
        row["slice"] = chips.slice_name(c, n_devices) if c.type_prefix else f"{n_devices}x{c.name}"
        m = resolve_mesh(n_devices, slice_mesh(rung, c, n_devices, mesh))
        mem = estimate_memory(rung, n_devices, m)
    except LadderError as e:
        row["errors"].append(str(e))
        return row
    row.update(devices=n_devices, mesh=m, rows_per_device=rung["batch_sequences"] // (m["data"] * m["fsdp"]),
               memory=mem, hbm=c.hbm_bytes, hours=estimate_seconds(rung, c, n_devices) / 3600)
    if mem["total"] > c.hbm_bytes:
        row["warnings"].append(f"needs {mem['total'] / chips.GiB:.1f} GiB per device, more than the "
                               f"{c.hbm_bytes / chips.GiB:.0f} GiB of a {c.name}")
    elif mem["total"] > HBM_USABLE_FRACTION * c.hbm_bytes:
        row["warnings"].append(f"uses {mem['total'] / c.hbm_bytes:.0%} of HBM (headroom below "
                               f"{1 - HBM_USABLE_FRACTION:.0%})")
    if rung["warmup_steps"] >= rung["total_steps"]:
        row["errors"].append(f"warmup {rung['warmup_steps']} >= total steps {rung['total_steps']}")
    return row
