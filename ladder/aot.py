"""Compile a rung's real train step for a Cloud TPU slice on a machine without TPUs, and read its cost.

With `libtpu` installed (`pip install 'ladder[tpu]'`), JAX can describe a TPU topology and compile for it
ahead of time on CPU. We build the trainer's own step (`ladder.step.make_train_step`) over a Mesh of the
topology's compile-only devices, lower it on ShapeDtypeStructs and compile it, so the sharding, the fusion
and the memory plan are the ones XLA would produce on the real slice. From the compiled program we report,
per device: parameter and optimizer-state bytes (from the state shardings), the rest of the arguments, the
temporaries (activations and workspace) and the generated code, against the chip's HBM; and the compiled
FLOPs per step against ladder.arch's formula. Method and measured tables: docs/tpu-compile.md.
Slice shapes, hosts and the default mesh: ladder.topology; the report, suggestions and table:
ladder.compile_report (neither imports JAX).

Facts this module relies on (libtpu 0.0.51, jax 0.10.2, measured):
  - `memory_analysis().temp_size_in_bytes` is always 0 for TPU compile-only programs; `peak_memory_in_bytes`
    is the HBM the program needs (arguments + live temporaries + outputs that do not alias arguments).
  - `cost_analysis()['flops']` counts one device's SPMD program; the step's total is that times the devices.
    It counts a while loop's body ONCE: a scanned layer stack, the chunked loss, gradient accumulation and
    the "windowed einsums" (collective matmuls) libtpu makes of large fsdp matmuls read low. FLOPs therefore
    come from the same compiled program with each loop body counted x its trip count (ladder.hlo_flops).
  - libtpu takes /tmp/libtpu_lockfile on load: ALLOW_MULTIPLE_LIBTPU_LOAD=1 lets compiles run beside other
    JAX processes; TPU_SKIP_MDS_QUERY=1 skips the GCE metadata probe. CPU stays JAX's default backend.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import re
import tempfile
import time

from ladder import chips, topology
from ladder.arch import Arch, arch_of, flops_per_token_6n, flops_per_token_reference, n_params, n_params_per_layer
from ladder.compile_report import CompileReport, suggestions
from ladder.cpu_threads import native_stderr_quiet
from ladder.errors import LadderError
from ladder.topology import GRIDS, Topology, default_mesh_overrides, next_topology, parse_topology

def libtpu_available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def require_libtpu() -> None:
    if not libtpu_available():
        raise LadderError("compile: libtpu is not installed, so JAX cannot compile for Cloud TPU here; "
                          "install the extra: pip install 'ladder[tpu]' (libtpu==0.0.51)")


@functools.cache
def topology_devices(topo: Topology) -> tuple:
    """Compile-only TPU devices for the topology (loads libtpu once; CPU stays the default backend)."""
    require_libtpu()
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    try:
        with native_stderr_quiet():
            desc = topologies.get_topology_desc(
                platform="tpu", topology_name=topo.jax_topology_name,
                chip_config_name="megacore" if topo.chip.name == "v4" else "default",
                chips_per_host_bounds=topo.chips_per_host_bounds, num_slices=topo.num_slices)
    except Exception as e:  # JaxRuntimeError from libtpu: version mismatch, lockfile, bad shape
        raise LadderError(f"topology: libtpu could not describe {topo} ({topo.jax_topology_name}): "
                          f"{str(e).splitlines()[0]}; check that libtpu==0.0.51 matches jax") from e
    devices = tuple(desc.devices)
    assert len(devices) == topo.n_devices, (topo, len(devices))
    return devices


def topology_mesh(mesh_cfg, topo: Topology):
    """The trainer's (data, fsdp, tensor) mesh over the topology's devices (ladder.sharding.make_mesh).

    The config's mesh sizes describe ONE slice (-1 fills it); with several slices the `data` axis also
    spans the slices (data-parallel replicas over the data-center network, MaxText's dcn_data), so only
    gradients cross slices.
    """
    from ladder import sharding

    devices = topology_devices(topo)
    try:
        return sharding.make_mesh(mesh_cfg, devices, num_slices=topo.num_slices)
    except LadderError as e:
        raise LadderError(f"{e} (on {topo.accelerator_type}: {topo.chips_per_slice} chips per slice)") from None


def per_device_bytes(abstract_tree, shardings) -> int:
    """Bytes one device holds of a pytree of ShapeDtypeStructs laid out by matching shardings."""
    import jax

    sizes = jax.tree.map(lambda a, s: math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize, abstract_tree, shardings)
    return int(sum(jax.tree.leaves(sizes)))


def expected_flops_per_token(arch: Arch, remat, attention: str = "xla", loss_chunked: bool = False) -> float:
    """What the chips should execute per token: ladder.arch's 6N + attention, adjusted for how it is computed.

    remat (model.remat) recomputes in the backward pass: full, each layer's whole forward (2 x the layer
    parameters, plus the attention forward); save_dots (weight matmuls saved), the attention forward only.
    attention "splash": the attention term is the kernel's own count (ladder.attention.splash_flops: causal
    tiles only, its backward recomputing q k^T; the forward again under remat) instead of the dense
    12 L d seq. loss_chunked: the chunked loss recomputes the LM head's forward in the backward pass
    (2 V d). The LM head is not otherwise rematerialised. (`remat` True/False: the old boolean.)
    """
    from ladder import attention as attention_lib

    remat = {True: "full", False: "none"}.get(remat, remat)
    base = float(flops_per_token_6n(arch))
    dense_attention = base - 6 * n_params(arch)
    out = 6 * n_params(arch) + (2 * arch.n_layers * n_params_per_layer(arch) if remat == "full" else 0)
    if attention == "splash":
        per_layer = attention_lib.splash_flops(1, arch.n_heads, arch.seq_len, arch.head_dim,
                                               recompute_forward=remat != "none")
        out += arch.n_layers * per_layer / arch.seq_len
    else:
        out += dense_attention * (4 / 3 if remat != "none" else 1)
    if loss_chunked:
        out += 2 * arch.padded_vocab * arch.d_model
    return out


def compile_step(program, global_batch: int, seq_len: int, compiler_options: dict | None = None):
    """Lower the program's step on ShapeDtypeStructs (the state and batch as the trainer lays them out)."""
    import jax
    import jax.numpy as jnp

    state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                         program.abstract_state, program.state_shardings)
    batch = {k: jax.ShapeDtypeStruct((global_batch, seq_len), jnp.int32, sharding=s)
             for k, s in program.batch_shardings.items()}
    try:
        return program.step_fn.lower(state, batch).compile(compiler_options)
    except Exception as e:  # XLA reports an HBM overflow at compile time as a RESOURCE_EXHAUSTED error
        if "RESOURCE_EXHAUSTED" in str(e):
            raise _DoesNotFit(str(e).splitlines()[0]) from e
        raise


class _DoesNotFit(Exception):
    pass


def compile_program(program, topo: Topology, arch: Arch, global_batch: int, *, rung: str = "",
                    remat="none", attention: str = "xla", loss_chunked: bool = False,
                    hand_counted_flops: float | None = None) -> CompileReport:
    """Lower and compile a TrainProgram (built over topology_mesh) on abstract inputs; measure its memory and,
    unless hand_counted_flops is None, its FLOPs per step: XLA's cost analysis of this program with every loop
    body counted x its trips (ladder.hlo_flops), x devices, plus hand_counted_flops (custom calls' FLOPs,
    which cost analysis reads as zero: kernel_flops)."""
    params, opt_state = _split_state_bytes(program.abstract_state, program.state_shardings)
    tokens = global_batch * arch.seq_len
    common = dict(rung=rung, topology=str(topo), mesh=dict(program.mesh.shape), n_devices=topo.n_devices,
                  params=params, opt_state=opt_state, hbm=topo.chip.hbm_bytes,
                  flops_6n=float(flops_per_token_6n(arch)) * tokens,
                  flops_reference=float(flops_per_token_reference(arch)) * tokens,
                  flops_expected=expected_flops_per_token(arch, remat, attention, loss_chunked) * tokens,
                  tokens_per_step=tokens,
                  flops_compiled=float("nan"))
    with tempfile.TemporaryDirectory(prefix="ladder-hlo-") as dump:
        options = _dump_options(dump) if hand_counted_flops is not None else None
        start = time.perf_counter()
        try:
            compiled = compile_step(program, global_batch, arch.seq_len, options)
        except _DoesNotFit as e:  # XLA refused: report what it said it needs
            m = re.search(r"required for HLO temporaries \(([\d.]+)([KMGT])\)", str(e))
            need = int(float(m.group(1)) * 1024 ** "KMGT".index(m.group(2)) * 1024) if m else 0
            return CompileReport(**common, other_args=0, temp=max(need - params - opt_state, 0), code=0, peak=need,
                                 total=need, fits=False, compile_s=time.perf_counter() - start, error=str(e))
        compile_s = time.perf_counter() - start

        mem = compiled.memory_analysis()
        unaliased_out = mem.output_size_in_bytes - mem.alias_size_in_bytes
        peak = int(mem.peak_memory_in_bytes)
        total = peak + int(mem.generated_code_size_in_bytes)
        report = CompileReport(
            **common, other_args=int(mem.argument_size_in_bytes) - params - opt_state,
            temp=max(peak - int(mem.argument_size_in_bytes) - unaliased_out, 0),
            code=int(mem.generated_code_size_in_bytes), peak=peak, total=total,
            fits=total <= topology.HBM_USABLE_FRACTION * topo.chip.hbm_bytes, compile_s=compile_s)
        if options:
            start = time.perf_counter()
            count_compiled_flops(report, _optimised_hlo(dump), topo.n_devices, hand_counted_flops)
            report.flops_s = time.perf_counter() - start
    return report


def _dump_options(directory: str) -> dict:
    """Compiler options that make XLA write the optimised program as text (nothing else about the compile
    changes). The text comes from the compiler itself: `Compiled.as_text()` rebuilds it from the executable's
    proto, which fails for some libtpu programs (190M-1xC on v5p-8: "async-update instruction should have 1
    operands but sees 3")."""
    return {"xla_dump_to": directory, "xla_dump_hlo_as_text": True, "xla_dump_hlo_as_proto": False}


def _optimised_hlo(directory: str) -> str:
    """The train step's optimised HLO text from the dump. libtpu may dump other modules beside it (kernels it
    compiles on the way), so the step is the largest program named after the jitted function."""
    paths = [os.path.join(directory, p) for p in os.listdir(directory)
             if p.endswith(".after_optimizations.txt") and ".jit_train_step." in p]
    if not paths:
        raise LadderError(f"compile: XLA wrote no optimised train step to {directory} "
                          f"({', '.join(sorted(os.listdir(directory))[:8])}); run with --no-flops")
    with open(max(paths, key=os.path.getsize)) as f:
        return f.read()


def count_compiled_flops(report: CompileReport, hlo_text: str, n_devices: int, hand_counted: float) -> None:
    """Fill report.flops_compiled (all devices), kernel_flops and flops_note from the optimised program's text."""
    from ladder import hlo_flops

    try:
        counted = hlo_flops.loop_corrected_flops(hlo_text, hlo_flops.xla_cost_of)
    except hlo_flops.UncountedLoop as e:
        report.flops_note = f"FLOPs not counted: {e}"
        return
    report.flops_compiled = counted["flops"] * n_devices + hand_counted
    report.kernel_flops = hand_counted
    trips = sorted({trips for _, trips, _ in counted["loops"]})
    report.flops_note = (f"FLOPs: XLA cost analysis of this program with {len(counted['loops'])} loop bodies x their "
                         f"trips ({', '.join(map(str, trips))}); counted once {counted['flops_once'] * n_devices:.4g}"
                         if counted["loops"] else "FLOPs: XLA cost analysis (no loops)")


def _split_state_bytes(abstract_state, shardings) -> tuple[int, int]:
    """(parameter bytes, everything-else-in-the-state bytes) per device."""
    total = per_device_bytes(abstract_state, shardings)
    params = per_device_bytes(_field(abstract_state, "params"), _field(shardings, "params"))
    return params, total - params


def _field(tree, name):
    return tree[name] if isinstance(tree, dict) else getattr(tree, name)


def compile_config(config, topo: Topology, *, name: str = "", count_flops: bool = True) -> CompileReport:
    """Compile the trainer's step for `config` on `topo` and report per-device memory and FLOPs per step.

    A config with the default mesh compiles with default_mesh_overrides (the report's `mesh_note` says so)."""
    from ladder import attention, loss, train
    from ladder.config import apply_overrides
    from ladder.step import make_train_step

    chosen = default_mesh_overrides(config, topo)
    config = apply_overrides(config, chosen)
    train.validate(config)
    mesh = topology_mesh(config.mesh, topo)
    train.validate_for_mesh(config, dict(mesh.shape), process_count=topo.hosts)
    arch = arch_of(config)
    report = compile_program(make_train_step(config, mesh), topo, arch, config.train.global_batch,
                             rung=name or config.name, remat=config.model.remat,
                             attention=attention.resolve(config.model.attention, "tpu", arch.seq_len),
                             loss_chunked=loss.chunk_size(arch.seq_len, config.model.loss_chunk) < arch.seq_len,
                             hand_counted_flops=config.model.n_layers * kernel_flops(config, topo) if count_flops
                             else None)
    report.recipe = f"remat {config.model.remat} x {config.train.microbatches}"
    report.estimate = planner_estimate(config, dict(mesh.shape))
    if chosen:
        batch, d = config.train.global_batch, config.model.d_model
        reason = (f"{batch} sequences do not split over {topo.n_devices} chips" if batch % topo.n_devices
                  else f"d_model {d} does not split over {topo.chips_per_slice} chips")
        report.mesh_note = f"mesh chosen: {reason}; trains with {' '.join('--config.' + o for o in chosen)}"
    report.suggestions = suggestions(report, config, topo) if not report.fits else []
    return report


def planner_estimate(config, mesh_shape: dict) -> int:
    """The planner's per-device memory estimate (ladder.plan.resources.estimate_memory) for this config on
    this mesh, so every compile also checks the estimate the slice choice rests on (docs/planning.md)."""
    from ladder.device_checks import estimate_memory

    mesh = {axis: mesh_shape.get(axis, 1) for axis in ("data", "fsdp", "tensor")}
    try:
        return estimate_memory(config, mesh)["total"]
    except LadderError:
        return 0


def kernel_flops(config, topo: Topology) -> float:
    """FLOPs per layer per step inside custom calls that cost analysis reads as zero: the splash attention
    kernel when model.attention resolves to it on TPU (counted from its tiles: ladder.attention.splash_flops)."""
    from ladder import attention

    arch = arch_of(config)
    if attention.resolve(config.model.attention, "tpu", arch.seq_len) != "splash":
        return 0.0
    return attention.splash_flops(config.train.global_batch, arch.n_heads, arch.seq_len, arch.head_dim,
                                  recompute_forward=config.model.remat != "none")


def choose_slice(config, chip: str = "v5e", *, start: str | None = None,
                 num_slices: int = 1) -> tuple[str, CompileReport]:
    """The smallest slice, from `start` up, on which the compiled train config (a rung's, from
    train_config.resolve_rung) fits: the planner's choice (`ladder.plan.choose_slice`, which also weighs
    time) checked, and grown when XLA needs more HBM than the estimate said. Never shrinks the planner's
    choice. Each slice compiles with its default mesh unless the config sets one (compile_config).
    LadderError when no slice of `chip` fits."""
    c = chips.chip(chip)
    topo = parse_topology(start or chips.slice_name(c, min(GRIDS[c.name])), num_slices)
    while True:
        try:
            report = compile_config(config, topo, name=config.name, count_flops=False)
        except LadderError:  # e.g. the batch does not split over this many chips: try the next size
            report = None
        if report is not None and report.fits:
            return topo.accelerator_type, report
        topo = next_topology(topo)
        if topo is None:
            raise LadderError(f"slice: rung {config.name} fits no {c.name} slice; use a larger chip or multislice")


_SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "mlp_hidden", "vocab_size", "seq_len", "batch_sequences")


def check_plan(plan: dict, topology: str | None = None, *, chip: str = "v5e", num_slices: int = 1,
               rungs: list[str] | None = None, targets: bool = False, overrides=(),
               count_flops: bool = True, log=None) -> list[CompileReport]:
    """Compile every (selected) rung of a plan, and its targets if asked: on `topology`, or else on the
    planner's slice for `chip` (see check_rungs)."""
    from ladder import plan as plan_lib
    from ladder.plan.resources import refit_rung, target_rungs

    require_libtpu()
    candidates = plan["rungs"] + (target_rungs(plan) if targets else [])
    known = [r["name"] for r in candidates]
    unknown = sorted(set(rungs or ()) - set(known))
    if unknown:
        raise LadderError(f"--rung: {', '.join(unknown)} not in the plan; its rungs (and targets, with "
                          f"--targets): {', '.join(known)}")
    selected = [r for r in candidates if not rungs or r["name"] in rungs]
    placements = []
    for r in selected:
        accelerator = topology or plan_lib.choose_slice(r, chip=chip)
        # the recipe for the slice it compiles on (resources.refit_rung, shared with `ladder launch`);
        # --config overrides still win, and a slice where nothing fits keeps the stamp (reported as overflow)
        placements.append((refit_rung(r, accelerator, num_slices)[0], accelerator, num_slices, tuple(overrides)))
    return check_rungs(plan, placements, count_flops=count_flops, log=log)


def check_rungs(plan: dict, placements, *, count_flops: bool = True, log=None) -> list[CompileReport]:
    """Compile each (rung, accelerator type, number of slices, train-config overrides) placement.

    The launcher calls this with its jobs (each rung on its own slice). Rungs that differ only in length
    (Chinchilla multiple) share one program, so each shape (and memory recipe) compiles once per placement."""
    from ladder.train_config import resolve_rung

    require_libtpu()
    reports, done = [], {}
    for rung, accelerator_type, num_slices, overrides in placements:
        key = ((accelerator_type, num_slices, tuple(overrides)) + tuple(rung[k] for k in _SHAPE_KEYS)
               + (rung.get("remat"), rung.get("microbatches")))
        if key in done:
            report = dataclasses.replace(done[key], rung=rung["name"], compile_s=0.0, flops_s=0.0)
        else:
            config, _ = resolve_rung(plan, rung, overrides)
            report = compile_config(config, parse_topology(accelerator_type, num_slices), name=rung["name"],
                                    count_flops=count_flops)
            done[key] = report
        if log:
            log(report)
        reports.append(report)
    return reports
