"""Will a rung fit, and where: per-device memory, batch divisibility, run time, and the slice to launch it on.

These are first-order estimates for planning (formulas in docs/planning.md); `ladder compile` measures the
real per-device memory from XLA for a Cloud TPU topology. Slice, host and mesh facts: ladder.topology.
"""

from __future__ import annotations

from ladder import chips
from ladder.arch import Arch, n_params, pad_vocab
from ladder.errors import LadderError
from ladder.plan.planfile import rung_arch
from ladder.topology import (GRIDS, HBM_TARGET_FRACTION, HBM_USABLE_FRACTION, chips_per_host, default_mesh, fill_mesh,
                             parse_topology)

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


REMATS = ("none", "save_dots", "full")  # model.remat, least recompute (fastest) first
LOSS_CHUNK = 256  # model.loss_chunk's default: sequence positions per loss chunk


def estimate_memory(rung: dict, n_devices: int, mesh: dict | None = None, *, remat: str = "full",
                    microbatches: int = 1, activation_bytes: int = 2, loss_chunk: int = LOSS_CHUNK) -> dict:
    """Bytes per device for training `rung` on n_devices with the given mesh (ZeRO-3-style sharding), with
    fused attention (no [L, L] scores), the chunked loss and the remat policy; formulas in docs/planning.md.

    state: parameters 4 bytes each (fp32), gradients 4 (8 with microbatches > 1: the accumulator), AdamW
    moments 8, all sharded over fsdp * tensor. Activations for T = rows per device / microbatches x seq tokens
    (a = activation_bytes), split over tensor: what every layer keeps for the backward pass (remat full: its
    input, a d per token; save_dots: also its weight-matmul outputs, a (6d + 2 mlp); none: everything,
    a (12d + 5 mlp) + 8d of fp32 norm statistics). On top, the larger of the two phases of the backward pass:
    the loss (two fp32 [rows, chunk, V] logit buffers, plus the LM head's fp32 gradient, 4 V d: with 6 V d,
    counting a whole bf16 copy of the head too, 13b-5t in one-row microbatches read +15% of compiled)
    and one layer's working set (a (8d + 4 mlp) per token) with one fp32 logits chunk still allocated (the
    compiled layer phase exceeds the working set by about that: 3.8 GiB at 370M and 4.3 at 1.3B against a
    4.6 GiB chunk, both 48 rows of 256 positions). Checked against `ladder compile` (docs/tpu-compile.md;
    tests/test_plan.py COMPILED). (`remat` True/False: the old boolean, full/none.)
    """
    remat = {True: "full", False: "none"}.get(remat, remat)
    m = resolve_mesh(n_devices, mesh)
    replicas = m["data"] * m["fsdp"]
    if rung["batch_sequences"] % replicas:
        raise LadderError(f"batch: {rung['name']} has {rung['batch_sequences']} sequences, not divisible by "
                          f"data*fsdp = {replicas}; choose another device count or mesh")
    rows = rung["batch_sequences"] // replicas
    if rows % microbatches:
        raise LadderError(f"microbatches: {microbatches} do not split the {rows} rows per device of {rung['name']}")
    shards, t, a = m["fsdp"] * m["tensor"], m["tensor"], activation_bytes
    d, h, layers, seq = rung["d_model"], rung["mlp_hidden"], rung["n_layers"], rung["seq_len"]
    vocab = pad_vocab(rung["vocab_size"])
    rows_mb = rows // microbatches
    tokens = rows_mb * seq
    kept = {"full": a * d, "save_dots": a * (6 * d + 2 * h), "none": a * (12 * d + 5 * h) + 8 * d}[remat]
    chunk = seq if loss_chunk <= 0 or loss_chunk >= seq else loss_chunk
    logits_buffer = rows_mb * chunk * vocab * 4  # one chunk's fp32 logits (or their gradient)
    loss_phase = (2 * logits_buffer + 4 * vocab * d) / t
    layer_phase = (tokens * a * (8 * d + 4 * h) + logits_buffer) / t
    out = {
        "params": 4 * rung["n_total"] / shards,
        "grads": 4 * rung["n_total"] / shards * (2 if microbatches > 1 else 1),
        "optimizer": 8 * rung["n_total"] / shards,
        "activations": tokens * layers * kept / t,
        "backward_peak": max(loss_phase, layer_phase),
    }
    out["total"] = sum(out.values())
    return {k: int(v) for k, v in out.items()}


def fit_recipe(rung: dict, n_devices: int, mesh: dict | None, budget: float, target: float | None = None) -> dict | None:
    """The fastest way to train `rung` on n_devices within `budget` bytes per device: the least recompute
    (remat none, then save_dots, then full) at the whole per-device batch; else full remat with the batch
    split into 2, 4, 8 ... microbatches (gradient accumulation). With a `target` (bytes, below the budget)
    the first recipe in that order within the target wins, and only if none reaches it the first within the
    budget: more recompute buys headroom where it is cheap to have. {remat, microbatches, memory}, or None
    when nothing fits the budget (even one row at a time). LadderError when the batch does not divide over
    the mesh."""
    m = resolve_mesh(n_devices, mesh)
    rows = rung["batch_sequences"] // (m["data"] * m["fsdp"])
    candidates = [(r, 1) for r in REMATS] + [("full", k) for k in range(2, rows + 1) if rows % k == 0]
    fitting = []
    for remat, k in candidates:
        mem = estimate_memory(rung, n_devices, mesh, remat=remat, microbatches=k)
        if mem["total"] <= budget:
            fitting.append({"remat": remat, "microbatches": k, "memory": mem})
            if target is None or mem["total"] <= target:
                return fitting[-1]
    return fitting[0] if fitting else None


def slice_recipe(rung: dict, accelerator_type: str, num_slices: int = 1) -> dict | None:
    """The memory recipe for `rung` on this slice ({remat, microbatches, memory}; fit_recipe at
    HBM_TARGET_FRACTION within HBM_USABLE_FRACTION, with the slice's default mesh), or None when none fits
    or the batch does not divide. A plan stamps each rung with the recipe for the planner's slice;
    `ladder compile` on another slice refits it with this."""
    c, n = chips.parse_slice(accelerator_type)
    n *= num_slices
    try:
        m = resolve_mesh(n, slice_mesh(rung, c, n))
        return fit_recipe(rung, n, m, HBM_USABLE_FRACTION * c.hbm_bytes, HBM_TARGET_FRACTION * c.hbm_bytes)
    except LadderError:
        return None


def refit_rung(rung: dict, accelerator_type: str, num_slices: int = 1, *,
               strict: bool = False) -> tuple[dict, dict | None]:
    """(the rung with the memory recipe for this slice, that recipe) - the one refit `ladder compile` and
    `ladder launch` share. The plan stamps the recipe for the planner's slice on the plan's chip (save_dots
    for 190M-1xC on v5p-8), which on another slice may not fit (10.1 GiB estimated, 63%, on v5litepod-16,
    where full remat needs 2.8) or recompute needlessly. Where no recipe fits, the rung keeps its stamp and
    the recipe is None (compile then reports the overflow); with `strict` (the launcher: a pod that OOMs
    costs money) that is a LadderError naming the rung, the slice and the least-memory estimate. A batch
    that does not split over the slice is left to the compile check and the trainer either way."""
    topo = parse_topology(accelerator_type, num_slices)
    recipe = slice_recipe(rung, topo.accelerator_type, topo.num_slices)
    if recipe is not None:
        return rung | {"remat": recipe["remat"], "microbatches": recipe["microbatches"]}, recipe
    least = least_memory(rung, topo.accelerator_type, topo.num_slices)
    if strict and least is not None:
        c = topo.chip
        raise LadderError(
            f"slice: {rung['name']} fits no memory recipe on {topo}: even full remat in one-row microbatches "
            f"needs an estimated {least['total'] / chips.GiB:.1f} GiB per device, {least['total'] / c.hbm_bytes:.0%} "
            f"of a {c.name}'s {c.hbm_bytes / chips.GiB:.0f} GiB HBM (limit {HBM_USABLE_FRACTION:.0%}); "
            f"choose a larger slice with --slice {rung['name']}=TYPE")
    return rung, None


def least_memory(rung: dict, accelerator_type: str, num_slices: int = 1) -> dict | None:
    """estimate_memory of the least-memory recipe on this slice (full remat, one row per microbatch), or None
    when the batch does not split over the slice's default mesh."""
    c, n = chips.parse_slice(accelerator_type)
    n *= num_slices
    try:
        m = resolve_mesh(n, slice_mesh(rung, c, n))
        rows = rung["batch_sequences"] // (m["data"] * m["fsdp"])
        return estimate_memory(rung, n, m, remat="full", microbatches=rows)
    except LadderError:
        return None


def recipe_memory(rung: dict, accelerator_type: str, num_slices: int, remat: str, microbatches: int) -> dict | None:
    """estimate_memory of a given recipe (a --config override's) on this slice's default mesh; None when
    the batch or the microbatches do not split (the trainer names that)."""
    c, n = chips.parse_slice(accelerator_type)
    n *= num_slices
    try:
        return estimate_memory(rung, n, resolve_mesh(n, slice_mesh(rung, c, n)), remat=remat, microbatches=microbatches)
    except LadderError:
        return None


def estimate_seconds(rung: dict, chip: chips.Chip, n_devices: int, mfu: float = MFU) -> float:
    """Training time at `mfu` of the chip's peak, counting 6N + attention FLOPs (what MFU is measured in)."""
    if chip is CPU:
        mfu = 1.0  # CPU.peak_flops is already the measured effective rate
    return rung["flops_6n"] / (n_devices * chip.peak_flops * mfu)


def slice_sizes(chip: chips.Chip) -> list[int]:
    """Chip counts of the single slices considered, smallest first: the Cloud TPU shapes of ladder.topology
    (v5e/v6e 1, 4, 8, ..., 256; v4/v5p 4, 8, ..., 2048). v5litepod-4 was missing here until 2026-11-30, so a
    rung that fits 4 v5e chips was placed on 8."""
    if chip is CPU:
        return [1]
    return [n for n in sorted(GRIDS[chip.name]) if n <= 2048]


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
    fitting, fits_pure_fsdp, why = [], False, []
    for n in slice_sizes(c):
        m = slice_mesh(rung, c, n, mesh)
        if fits_pure_fsdp and mesh is None and m is not None and m["tensor"] > 1:
            break  # every larger slice needs tensor parallelism too: the batch or d_model stops dividing
        try:
            recipe = fit_recipe(rung, n, m, headroom * c.hbm_bytes)
        except LadderError as e:
            why.append(str(e))
            continue  # batch or mesh does not divide over n devices
        if recipe is not None:
            fitting.append(n)
            # a fit that needs gradient accumulation does not stop tensor parallelism from trying larger slices
            fits_pure_fsdp |= (m is None or m.get("tensor", 1) == 1) and recipe["microbatches"] == 1
            if estimate_seconds(rung, c, n) <= max_hours * 3600:
                return chips.slice_name(c, n)
    if not fitting and mesh is not None and len(why) == len(slice_sizes(c)):
        # no slice size divides as the given mesh asks: say that, not memory
        raise LadderError(f"mesh: no {c.name} slice ({', '.join(map(str, slice_sizes(c)))} chips) takes mesh "
                          f"{','.join(f'{k}={v}' for k, v in mesh.items())} for {rung['name']} ({why[-1]}); give "
                          "--devices, or a mesh with one axis -1")
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
        recipe = fit_recipe(rung, n_devices, m, HBM_USABLE_FRACTION * c.hbm_bytes, HBM_TARGET_FRACTION * c.hbm_bytes) or {
            "remat": "full", "microbatches": 1, "memory": estimate_memory(rung, n_devices, m)}
        mem = recipe["memory"]
    except LadderError as e:
        row["errors"].append(str(e))
        return row
    row.update(devices=n_devices, mesh=m, rows_per_device=rung["batch_sequences"] // (m["data"] * m["fsdp"]),
               memory=mem, hbm=c.hbm_bytes, hours=estimate_seconds(rung, c, n_devices) / 3600,
               remat=recipe["remat"], microbatches=recipe["microbatches"])
    if mem["total"] > c.hbm_bytes:
        row["warnings"].append(f"needs {mem['total'] / chips.GiB:.1f} GiB per device, more than the "
                               f"{c.hbm_bytes / chips.GiB:.0f} GiB of a {c.name}")
    elif mem["total"] > HBM_USABLE_FRACTION * c.hbm_bytes:
        row["warnings"].append(f"uses {mem['total'] / c.hbm_bytes:.0%} of HBM (headroom below "
                               f"{1 - HBM_USABLE_FRACTION:.0%})")
    if rung["warmup_steps"] >= rung["total_steps"]:
        row["errors"].append(f"warmup {rung['warmup_steps']} >= total steps {rung['total_steps']}")
    return row
