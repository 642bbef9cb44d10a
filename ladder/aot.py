"""Compile a rung's real train step for a Cloud TPU slice on a machine without TPUs, and read its cost.

With `libtpu` installed (`pip install 'ladder[tpu]'`), JAX can describe a TPU topology and compile for it
ahead of time on CPU. We build the trainer's own step (`ladder.train.make_train_step`) over a Mesh of the
topology's compile-only devices, lower it on ShapeDtypeStructs and compile it, so the sharding, the fusion
and the memory plan are the ones XLA would produce on the real slice. From the compiled program we report,
per device: parameter and optimizer-state bytes (from the state shardings), the rest of the arguments, the
temporaries (activations and workspace) and the generated code, against the chip's HBM; and the compiled
FLOPs per step against ladder.arch's formula. Method and measured tables: docs/tpu-compile.md.

Facts this module relies on (libtpu 0.0.51, jax 0.10.2, measured):
  - `memory_analysis().temp_size_in_bytes` is always 0 for TPU compile-only programs; `peak_memory_in_bytes`
    is the HBM the program needs (arguments + live temporaries + outputs that do not alias arguments).
  - `cost_analysis()['flops']` counts one device's SPMD program; the step's total is that times the devices.
    It counts a while loop's body ONCE: a scanned layer stack, and the "windowed einsums" (collective
    matmuls) libtpu makes of large fsdp matmuls, read low. FLOPs therefore come from probes (see
    unrolled_flops): 1 and 2 unrolled layers, compiled with windowed einsums off.
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
import time

from ladder import chips
from ladder.arch import Arch, flops_per_token_6n, flops_per_token_reference, n_params, n_params_per_layer
from ladder.errors import LadderError

# Cloud TPU slice shapes (chips). v5e/v6e are 2-D tori; v4/v5p 3-D, grown by doubling the smallest axis.
_GRID_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}
_GRID_3D = {4 * 2**i: s for i, s in enumerate([(2, 2, 1), (2, 2, 2), (2, 2, 4), (2, 4, 4), (4, 4, 4), (4, 4, 8),
                                                (4, 8, 8), (8, 8, 8), (8, 8, 16), (8, 16, 16), (16, 16, 16)])}
GRIDS = {"v5e": _GRID_2D, "v6e": _GRID_2D, "v4": _GRID_3D, "v5p": _GRID_3D}

# A compile "fits" when its per-device total stays under this fraction of HBM: XLA's own reservations,
# fragmentation and the runtime take the rest.
HBM_USABLE_FRACTION = 0.94
GiB = float(1 << 30)

# Compiler options for the FLOPs probes only. On a large fsdp mesh libtpu turns each all-gathered (or
# reduce-scattered) matmul into a while loop over the shards that overlaps the collective with partial
# matmuls; cost analysis counts that body once (190M rung on v5p-16: 0.889 of the 1-layer FLOPs instead of
# 1.063). Off, the same matmuls compile as one collective + one dot: same FLOPs, all of them counted.
# The memory compile keeps libtpu's defaults, so its memory plan is the one the slice will run.
FLOPS_PROBE_OPTIONS = {"xla_tpu_enable_windowed_einsum_for_all_gather": False,
                       "xla_tpu_enable_windowed_einsum_for_reduce_scatter": False}
# compiled / expected FLOPs (expected_flops_per_token) must fall in this band: XLA also counts elementwise
# work (norms, RoPE, softmax, SwiGLU, loss, AdamW) the formula leaves out, +0.5% at the ladder's widths,
# ~+5% at d=64. A lost layer, a lost or duplicated recompute, or replicated work reads outside it.
FLOPS_RATIO_BAND = (0.98, 1.10)


@dataclasses.dataclass(frozen=True)
class Topology:
    """One or more identical Cloud TPU slices (multislice: slices joined over the data-center network)."""

    chip: chips.Chip
    chips_per_slice: int
    num_slices: int = 1

    @property
    def accelerator_type(self) -> str:
        return chips.slice_name(self.chip, self.chips_per_slice)

    @property
    def grid(self) -> tuple[int, ...]:
        return GRIDS[self.chip.name][self.chips_per_slice]

    @property
    def n_devices(self) -> int:  # one JAX device per chip (v4 and v5p in megacore mode)
        return self.chips_per_slice * self.num_slices

    @property
    def jax_topology_name(self) -> str:
        return f"{self.chip.name}:{'x'.join(map(str, self.grid))}"

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        if self.chip.name in ("v5e", "v6e") and self.chips_per_slice <= 8:  # single-host slices
            return {1: (1, 1, 1), 4: (2, 2, 1), 8: (2, 4, 1)}[self.chips_per_slice]
        return (2, 2, 1)  # 4-chip hosts: v4, v5p, and multi-host v5e/v6e

    def __str__(self) -> str:
        return self.accelerator_type if self.num_slices == 1 else f"{self.num_slices}x{self.accelerator_type}"


def parse_topology(accelerator_type: str, num_slices: int = 1) -> Topology:
    """'v5litepod-16' (or 'v5e-16', 'v4-32', 'v5p-8', 'v6e-64'), optionally as `num_slices` slices; a
    '2xv5p-256' prefix (the planner's and launcher's spelling of multislice) sets the number of slices."""
    m = re.fullmatch(r"(\d+)x(\S+)", accelerator_type)
    if m:
        accelerator_type, num_slices = m.group(2), int(m.group(1))
    chip, n_chips = chips.parse_slice(accelerator_type)
    if chip.name not in GRIDS:
        raise LadderError(f"topology: {accelerator_type!r} is not a Cloud TPU slice")
    if n_chips not in GRIDS[chip.name]:
        sizes = ", ".join(chips.slice_name(chip, n) for n in GRIDS[chip.name])
        raise LadderError(f"topology: {accelerator_type!r} is not a {chip.name} slice shape; use one of {sizes}")
    if num_slices < 1:
        raise LadderError(f"num_slices: {num_slices} is invalid; use 1 (one slice) or more (multislice)")
    return Topology(chip, n_chips, num_slices)


def next_topology(topo: Topology) -> Topology | None:
    """The next larger slice of the same chip (same number of slices), or None at the largest."""
    bigger = [n for n in GRIDS[topo.chip.name] if n > topo.chips_per_slice]
    return dataclasses.replace(topo, chips_per_slice=bigger[0]) if bigger else None


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


def default_mesh_overrides(config, topo: Topology) -> tuple[str, ...]:
    """`mesh.*` train-config overrides that give `config` the suite's default mesh on `topo`
    (ladder.plan.resources.default_mesh: tensor-parallel when the batch cannot split over every chip).

    Empty when the config's mesh is not the default (data 1, fsdp -1, tensor 1: a user's mesh always wins),
    when pure fsdp works, and when no mesh works (the trainer's own check then names the problem). The
    compile check and the launcher both call this, so a launched rung trains with the mesh it compiled with.
    """
    from ladder.plan import resources
    from ladder.train_config import arch_of

    if {axis: config.mesh[axis] for axis in resources.DEFAULT_MESH} != resources.DEFAULT_MESH:
        return ()
    batch = config.train.global_batch
    if batch % topo.num_slices:
        return ()
    mesh = resources.default_mesh(arch_of(config), batch // topo.num_slices, topo.chips_per_slice,
                                  resources.chips_per_host(topo.chip, topo.chips_per_slice))
    if mesh is None or mesh["tensor"] == 1:
        return ()
    return tuple(f"mesh.{axis}={mesh[axis]}" for axis in ("fsdp", "tensor"))


def per_device_bytes(abstract_tree, shardings) -> int:
    """Bytes one device holds of a pytree of ShapeDtypeStructs laid out by matching shardings."""
    import jax

    sizes = jax.tree.map(lambda a, s: math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize, abstract_tree, shardings)
    return int(sum(jax.tree.leaves(sizes)))


@dataclasses.dataclass
class CompileReport:
    """What one rung's train step needs per device on one topology (bytes), and its FLOPs per step."""

    rung: str
    topology: str
    mesh: dict  # axis -> size
    n_devices: int
    params: int
    opt_state: int
    other_args: int  # batch, step counter, RNG
    temp: int  # activations and XLA workspace live at the peak beyond arguments and outputs
    code: int
    peak: int  # XLA's peak (arguments + temporaries + non-aliased outputs)
    total: int  # peak + generated code
    hbm: int
    fits: bool
    flops_compiled: float  # whole step, all devices (nan when not counted)
    flops_6n: float  # ladder.arch 6N + attention, x tokens per step
    flops_reference: float
    flops_expected: float  # flops_6n plus the rematerialised forward when remat is on
    tokens_per_step: int
    compile_s: float  # the memory compile
    flops_s: float = 0.0  # the FLOPs probes
    suggestions: list[str] = dataclasses.field(default_factory=list)
    mesh_note: str = ""  # set when the mesh was chosen for the user (default_mesh_overrides)
    kernel_flops: float = 0.0  # of flops_compiled: counted by hand inside custom calls (splash attention)
    error: str = ""  # XLA's out-of-memory message when it refused to compile

    @property
    def hbm_fraction(self) -> float:
        return self.total / self.hbm

    @property
    def flops_ratio(self) -> float:
        """compiled / 6N accounting (remat reads ~1.2-1.33 here: the recompute is real work)."""
        return self.flops_compiled / self.flops_6n

    @property
    def flops_vs_expected(self) -> float:
        return self.flops_compiled / self.flops_expected

    @property
    def flops_ok(self) -> bool | None:
        """None when not counted; else whether compiled/expected lies in FLOPS_RATIO_BAND."""
        if math.isnan(self.flops_compiled):
            return None
        return FLOPS_RATIO_BAND[0] <= self.flops_vs_expected <= FLOPS_RATIO_BAND[1]

    def fit_lines(self) -> list[str]:
        """One line saying whether the rung fits its slice (per-device GiB), then any suggestions."""
        mesh = "/".join(str(self.mesh[a]) for a in ("data", "fsdp", "tensor"))
        verdict = "fits" if self.fits else "does NOT fit"
        line = (f"{self.rung} on {self.topology} (mesh data/fsdp/tensor {mesh}): {verdict}, "
                f"{self.total / GiB:.2f} of {self.hbm / GiB:.0f} GiB HBM per device ({self.hbm_fraction:.0%}; "
                f"params {self.params / GiB:.2f}, optimizer {self.opt_state / GiB:.2f}, temp {self.temp / GiB:.2f})")
        notes = [f"  {self.mesh_note}"] if self.mesh_note else []
        if self.kernel_flops:
            notes.append(f"  FLOPs include {self.kernel_flops / self.flops_compiled:.1%} counted by hand inside the "
                         "splash attention kernel (a custom call XLA's cost analysis reads as zero)")
        return [line] + notes + [f"  suggestion: {s}" for s in self.suggestions]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"hbm_fraction": self.hbm_fraction, "flops_ratio": self.flops_ratio,
                                           "flops_vs_expected": self.flops_vs_expected, "flops_ok": self.flops_ok}


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


def _compile(program, global_batch: int, seq_len: int, compiler_options: dict | None = None):
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
                    remat="none", attention: str = "xla", loss_chunked: bool = False) -> CompileReport:
    """Lower and compile a TrainProgram (built over topology_mesh) on abstract inputs; measure its memory.

    FLOPs are left nan: this program's count misses loop bodies (see unrolled_flops, which compile_config
    runs)."""
    params, opt_state = _split_state_bytes(program.abstract_state, program.state_shardings)
    tokens = global_batch * arch.seq_len
    common = dict(rung=rung, topology=str(topo), mesh=dict(program.mesh.shape), n_devices=topo.n_devices,
                  params=params, opt_state=opt_state, hbm=topo.chip.hbm_bytes,
                  flops_6n=float(flops_per_token_6n(arch)) * tokens,
                  flops_reference=float(flops_per_token_reference(arch)) * tokens,
                  flops_expected=expected_flops_per_token(arch, remat, attention, loss_chunked) * tokens, tokens_per_step=tokens,
                  flops_compiled=float("nan"))
    start = time.perf_counter()
    try:
        compiled = _compile(program, global_batch, arch.seq_len)
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
    return CompileReport(
        **common, other_args=int(mem.argument_size_in_bytes) - params - opt_state,
        temp=max(peak - int(mem.argument_size_in_bytes) - unaliased_out, 0), code=int(mem.generated_code_size_in_bytes),
        peak=peak, total=total, fits=total <= HBM_USABLE_FRACTION * topo.chip.hbm_bytes, compile_s=compile_s)


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

    chosen = default_mesh_overrides(config, topo)
    config = apply_overrides(config, chosen)
    train.validate(config)
    mesh = topology_mesh(config.mesh, topo)
    train.validate_for_mesh(config, dict(mesh.shape), process_count=_hosts(topo))
    arch = train.arch_of(config)
    report = compile_program(train.make_train_step(config, mesh), topo, arch, config.train.global_batch,
                             rung=name or config.name, remat=config.model.remat,
                             attention=attention.resolve(config.model.attention, "tpu", arch.seq_len),
                             loss_chunked=loss.chunk_size(arch.seq_len, config.model.loss_chunk) < arch.seq_len)
    if count_flops:
        start = time.perf_counter()
        try:
            report.flops_compiled = unrolled_flops(config, mesh, topo)
            report.kernel_flops = config.model.n_layers * kernel_flops(config, topo)
        except _DoesNotFit:  # even one layer overflows HBM: FLOPs stay uncounted
            pass
        report.flops_s = time.perf_counter() - start
    if chosen:
        batch, d = config.train.global_batch, config.model.d_model
        reason = (f"{batch} sequences do not split over {topo.n_devices} chips" if batch % topo.n_devices
                  else f"d_model {d} does not split over {topo.chips_per_slice} chips")
        report.mesh_note = f"mesh chosen: {reason}; trains with {' '.join('--config.' + o for o in chosen)}"
    report.suggestions = suggestions(report, config, topo) if not report.fits else []
    return report


def unrolled_flops(config, mesh, topo: Topology) -> float:
    """FLOPs per step (all devices) from probes: the step compiled with 1 and 2 unrolled layers, same mesh.

    XLA's cost analysis counts a while loop's body once. Two kinds of loop hide FLOPs: a scanned layer stack
    (reads as one layer: ratio 0.35 for 4 scanned layers vs 1.05 unrolled), and libtpu's windowed einsums
    on a large fsdp mesh (FLOPS_PROBE_OPTIONS turns them off in the probes). Unrolled FLOPs are exactly
    linear in L (everything but the layers is the same), so F(L) = F(1) + (L - 1) * (F(2) - F(1)): two
    small compiles instead of one of the whole unrolled model.
    """
    from ladder import train
    from ladder.config import apply_overrides

    # Gradient accumulation is a while loop too: the probes run the whole batch at once (same FLOPs).
    # The chunked loss's scan is unrolled in the probes for the same reason (ladder.loss).
    def flops(n_layers: int) -> float:
        from ladder import loss

        cfg = apply_overrides(config, [f"model.n_layers={n_layers}", "model.scan_layers=False",
                                       "train.microbatches=1"])
        program = train.make_train_step(cfg, mesh)
        loss.UNROLL_FOR_COST_ANALYSIS = True
        try:
            compiled = _compile(program, cfg.train.global_batch, cfg.model.seq_len, FLOPS_PROBE_OPTIONS)
        finally:
            loss.UNROLL_FOR_COST_ANALYSIS = False
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) * topo.n_devices

    one = flops(1)
    total = one if config.model.n_layers == 1 else one + (config.model.n_layers - 1) * (flops(2) - one)
    return total + config.model.n_layers * kernel_flops(config, topo)


def kernel_flops(config, topo: Topology) -> float:
    """FLOPs per layer per step inside custom calls that cost analysis reads as zero: the splash attention
    kernel when model.attention resolves to it on TPU (counted from its tiles: ladder.attention.splash_flops)."""
    from ladder import attention
    from ladder import train

    arch = train.arch_of(config)
    if attention.resolve(config.model.attention, "tpu", arch.seq_len) != "splash":
        return 0.0
    return attention.splash_flops(config.train.global_batch, arch.n_heads, arch.seq_len, arch.head_dim,
                                  recompute_forward=config.model.remat != "none")


def suggestions(report: CompileReport, config, topo: Topology) -> list[str]:
    """What to change when a rung does not fit, most direct first, with the per-device figures that argue it."""
    out = []
    state = report.params + report.opt_state
    batch, dp, tp = config.train.global_batch, report.mesh["data"] * report.mesh["fsdp"], report.mesh["tensor"]
    bigger = next_topology(topo)
    if bigger is not None and batch % _hosts(bigger):  # the trainer gives every host whole rows of the batch
        bigger = None
    fills = -1 in (config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    if bigger is not None and fills and batch % (2 * dp) == 0:
        # State and batch are both split over data x fsdp: doubling the chips roughly halves both.
        out.append(f"use {bigger} (about {report.total / 2 / GiB:.1f} GiB per device expected; "
                   f"`ladder compile PLAN --topology {bigger.accelerator_type}` to confirm)")
    elif bigger is not None and _divides_heads_and_mlp(config, 2 * tp):
        # The batch cannot split further (or the mesh is pinned): the extra chips go to tensor parallelism.
        out.append(f"use {bigger} with --config.mesh.tensor={2 * tp} (the batch of {batch} splits over at most "
                   f"{dp} data x fsdp devices here; tensor parallelism splits weights and activations, the saved "
                   f"layer inputs over the sequence; `ladder compile` to confirm)")
    if (config.mesh.data != 1 or config.mesh.tensor != 1) and batch % topo.chips_per_slice == 0:
        out.append(f"shard state over every chip: --config.mesh.data=1 --config.mesh.fsdp=-1 --config.mesh.tensor=1 "
                   f"(parameters + optimizer now {state / GiB:.1f} GiB per device)")
    if config.model.remat != "full":
        out.append(f"rematerialise each layer in the backward pass: --config.model.remat=full "
                   f"(temporaries now {report.temp / GiB:.1f} GiB per device; costs ~1/3 more FLOPs)")
    if config.model.dtype == "float32":
        out.append("compute in bfloat16 (master weights stay float32): --config.model.dtype=bfloat16")
    out.append(f"a smaller per-device batch ({batch // dp} sequences now) needs a larger "
               "slice: the global batch is part of the rung's recipe, so change it only by re-planning")
    return out


def _hosts(topo: Topology) -> int:
    """TPU VM hosts (one trainer process each) across the topology's slices."""
    return max(topo.n_devices // math.prod(topo.chips_per_host_bounds), 1)


def _divides_heads_and_mlp(config, tensor: int) -> bool:
    from ladder import train

    arch = train.arch_of(config)
    return arch.n_heads % tensor == 0 and arch.mlp_hidden % tensor == 0 and arch.padded_vocab % tensor == 0


def choose_slice(rung: dict, chip: str = "v5e", *, defaults: dict | None = None, start: str | None = None,
                 num_slices: int = 1, overrides=()) -> tuple[str, CompileReport]:
    """The smallest slice, from `start` up, on which the compiled rung fits: the planner's choice
    (`ladder.plan.choose_slice`, which also weighs time) checked, and grown when XLA needs more HBM than the
    estimate said. Never shrinks the planner's choice. Each slice compiles with its default mesh unless
    `defaults` or `overrides` set one (compile_config). LadderError when no slice of `chip` fits."""
    from ladder import train
    from ladder.config import apply_overrides

    c = chips.chip(chip)
    topo = parse_topology(start or chips.slice_name(c, min(GRIDS[c.name])), num_slices)
    config = apply_overrides(train.config_from_rung(rung, defaults), overrides)
    while True:
        try:
            report = compile_config(config, topo, name=rung["name"], count_flops=False)
        except LadderError:  # e.g. the batch does not split over this many chips: try the next size
            report = None
        if report is not None and report.fits:
            return topo.accelerator_type, report
        topo = next_topology(topo)
        if topo is None:
            raise LadderError(f"slice: rung {rung['name']} fits no {c.name} slice; use a larger chip or multislice")


_SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "mlp_hidden", "vocab_size", "seq_len", "batch_sequences")


def check_plan(plan: dict, topology: str | None = None, *, chip: str = "v5e", num_slices: int = 1,
               rungs: list[str] | None = None, targets: bool = False, overrides=(),
               count_flops: bool = True, log=None) -> list[CompileReport]:
    """Compile every (selected) rung of a plan, and its targets if asked: on `topology`, or else on the
    planner's slice for `chip` (see check_rungs)."""
    from ladder import plan as plan_lib
    from ladder.plan.resources import target_rungs

    require_libtpu()
    candidates = plan["rungs"] + (target_rungs(plan) if targets else [])
    known = [r["name"] for r in candidates]
    unknown = sorted(set(rungs or ()) - set(known))
    if unknown:
        raise LadderError(f"--rung: {', '.join(unknown)} not in the plan; its rungs (and targets, with "
                          f"--targets): {', '.join(known)}")
    selected = [r for r in candidates if not rungs or r["name"] in rungs]
    placements = [(r, topology or plan_lib.choose_slice(r, chip=chip), num_slices, tuple(overrides))
                  for r in selected]
    return check_rungs(plan, placements, count_flops=count_flops, log=log)


def check_rungs(plan: dict, placements, *, count_flops: bool = True, log=None) -> list[CompileReport]:
    """Compile each (rung, accelerator type, number of slices, train-config overrides) placement.

    The launcher calls this with its jobs (each rung on its own slice). Rungs that differ only in length
    (Chinchilla multiple) share one program, so each shape compiles once per placement."""
    from ladder import train
    from ladder.config import apply_overrides

    require_libtpu()
    reports, done = [], {}
    for rung, accelerator_type, num_slices, overrides in placements:
        key = (accelerator_type, num_slices, tuple(overrides)) + tuple(rung[k] for k in _SHAPE_KEYS)
        if key in done:
            report = dataclasses.replace(done[key], rung=rung["name"], compile_s=0.0, flops_s=0.0)
        else:
            config = apply_overrides(train.config_from_rung(rung, plan.get("defaults") or {}), overrides)
            report = compile_config(config, parse_topology(accelerator_type, num_slices), name=rung["name"],
                                    count_flops=count_flops)
            done[key] = report
        if log:
            log(report)
        reports.append(report)
    return reports



def format_reports(reports: list[CompileReport]) -> str:
    """A fixed-width table: one line per rung and topology, memory in GiB per device.

    `vs 6N` is compiled FLOPs / (6N + attention); `vs exp` divides by expected_flops_per_token instead
    (remat included) and is flagged `!` outside FLOPS_RATIO_BAND."""
    head = (f"{'rung':<16} {'topology':<16} {'mesh d/f/t':<11} {'params':>7} {'optim':>7} {'temp':>7} "
            f"{'total':>7} {'HBM':>5} {'use':>5} {'fits':<4} {'vs 6N':>6} {'vs exp':>7} {'compile s':>9}")
    lines = [head]
    for r in reports:
        mesh = "/".join(str(r.mesh[a]) for a in ("data", "fsdp", "tensor"))
        flag = {None: " ", True: " ", False: "!"}[r.flops_ok]
        lines.append(f"{r.rung:<16} {r.topology:<16} {mesh:<11} {r.params / GiB:7.2f} {r.opt_state / GiB:7.2f} "
                     f"{r.temp / GiB:7.2f} {r.total / GiB:7.2f} {r.hbm / GiB:5.0f} {r.hbm_fraction:5.0%} "
                     f"{'yes' if r.fits else 'NO':<4} {r.flops_ratio:6.3f} {r.flops_vs_expected:6.3f}{flag} "
                     f"{r.compile_s + r.flops_s:9.1f}")
        lines += [f"    {r.mesh_note}"] if r.mesh_note else []
        lines += [f"    {r.kernel_flops / r.flops_compiled:.1%} of the FLOPs counted by hand inside the splash "
                  "attention kernel (cost analysis reads a custom call as zero)"] if r.kernel_flops else []
        lines += [f"    suggestion: {s}" for s in r.suggestions]
    return "\n".join(lines)
