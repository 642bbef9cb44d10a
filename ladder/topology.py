"""Slice topology and memory facts, in one place: Cloud TPU slice shapes, hosts per slice, how a mesh fills a
slice, the suite's default mesh, and the share of HBM a rung may use. No JAX here: the planner
(ladder.plan.resources), the launcher, the trainer's mesh (ladder.sharding) and the compile check
(ladder.aot) all read these, so an estimate, a compile and a launch cannot disagree on a slice.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Mapping

from ladder import chips
from ladder.errors import LadderError

# One "fits in memory" threshold for the planner's estimate and the compiled program alike: a rung may use
# 85% of a chip's HBM. XLA reserves some HBM itself (it allows 15.75 of v5e's 16 GiB), and the runtime,
# fragmentation and program growth across libtpu versions take more; for the planner the margin also covers
# the estimate's error (docs/planning.md, "Memory"). A compile that fits at 85% leaves room for them all.
HBM_USABLE_FRACTION = 0.85
# What a rung's memory recipe (remat policy x microbatches, ladder.plan.resources.fit_recipe) aims for: the
# least recompute whose estimate stays within 55% of HBM. Issue 15's bar for a comfortable fit is 60% of HBM
# compiled; the estimate has run up to 10% low (1.3B-1xC on v5litepod-8 with 6 microbatches: 9.22 GiB
# estimated, 10.30 compiled, 64%), so it aims 5 points lower. Only where no recipe gets there does the least
# recompute within HBM_USABLE_FRACTION do. The slice choice uses the ceiling.
HBM_TARGET_FRACTION = 0.55

MESH_AXES = ("data", "fsdp", "tensor")
DEFAULT_MESH = {"data": 1, "fsdp": -1, "tensor": 1}  # the train config's mesh: everything on fsdp
TENSOR_SIZES = (2, 4, 8)  # tensor-parallel sizes default_mesh tries, smallest first

# Cloud TPU slice shapes (chips). v5e/v6e are 2-D tori; v4/v5p 3-D, grown by doubling the smallest axis.
_GRID_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}
_GRID_3D = {4 * 2**i: s for i, s in enumerate([(2, 2, 1), (2, 2, 2), (2, 2, 4), (2, 4, 4), (4, 4, 4), (4, 4, 8),
                                                (4, 8, 8), (8, 8, 8), (8, 8, 16), (8, 16, 16), (16, 16, 16)])}
GRIDS = {"v5e": _GRID_2D, "v6e": _GRID_2D, "v4": _GRID_3D, "v5p": _GRID_3D}


def chips_per_host(chip: chips.Chip, n_chips: int) -> int:
    """Chips one host (TPU VM, one trainer process) drives: a single-host v5e/v6e slice (up to 8 chips)
    is one host; every other Cloud TPU host has 4 chips (v4, v5p, multi-host v5e/v6e). Not a TPU: all n."""
    if not chip.type_prefix:
        return n_chips
    if chip.name in ("v5e", "v6e") and n_chips <= 8:
        return n_chips
    return min(n_chips, 4)


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
    def chips_per_host(self) -> int:
        return chips_per_host(self.chip, self.chips_per_slice)

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        """A host's chips as JAX's topology description wants them: (2, 2, 1) on 4-chip hosts, else the grid."""
        n = self.chips_per_host
        return (2, 2, 1) if n == 4 else {1: (1, 1, 1), 8: (2, 4, 1)}[n]

    @property
    def hosts(self) -> int:
        """TPU VM hosts (one trainer process each) across the topology's slices."""
        return max(self.n_devices // self.chips_per_host, 1)

    def __str__(self) -> str:
        return self.accelerator_type if self.num_slices == 1 else f"{self.num_slices}x{self.accelerator_type}"


def parse_topology(accelerator_type: str, num_slices: int = 1) -> Topology:
    """'v5litepod-16' (or 'v5e-16', 'v4-32', 'v5p-8', 'v6e-64'), optionally as `num_slices` slices; a
    '2xv5p-256' prefix (the planner's and launcher's spelling of multislice) sets the number of slices."""
    m = re.fullmatch(r"(\d+)x(\S+)", accelerator_type)
    if m:
        if num_slices not in (1, int(m.group(1))):  # `--topology 2xv5p-8 --num-slices 3` compiled 2, silently
            raise LadderError(f"num_slices: {accelerator_type} says {m.group(1)} slices but {num_slices} were asked "
                              f"for; give the count once (--topology {m.group(2)} --num-slices {num_slices})")
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


def fill_mesh(mesh: Mapping[str, int], n_devices: int) -> dict[str, int]:
    """{'data', 'fsdp', 'tensor'} sizes with the one -1 filled so they multiply to n_devices; LadderError
    (naming the axis) when they cannot. The trainer's mesh and the planner's estimate both fill this way."""
    unknown = set(mesh) - set(MESH_AXES)
    if unknown:
        raise LadderError(f"mesh: unknown axis {', '.join(sorted(unknown))}; use data, fsdp and tensor")
    sizes = {a: int(mesh.get(a, DEFAULT_MESH[a])) for a in MESH_AXES}
    for axis, size in sizes.items():
        if size == 0 or size < -1:
            raise LadderError(f"mesh.{axis}: size {size} is invalid; use a positive size or -1 (fill)")
    fills = [a for a, s in sizes.items() if s == -1]
    if len(fills) > 1:
        raise LadderError(f"mesh: {' and '.join('mesh.' + a for a in fills)} are both -1; at most one axis may fill")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if fills:
        if n_devices % fixed:
            raise LadderError(f"mesh.{fills[0]}: cannot fill {n_devices} devices when the other axes multiply to "
                              f"{fixed}; make {n_devices} divisible by the fixed sizes")
        sizes[fills[0]] = n_devices // fixed
    elif fixed != n_devices:
        raise LadderError(f"mesh: data*fsdp*tensor = {fixed} but there are {n_devices} devices; "
                          "set the sizes to multiply to the device count or set one to -1")
    return sizes


def default_mesh(arch, batch: int, n_devices: int, max_tensor: int) -> dict | None:
    """The mesh a rung of `arch` with `batch` sequences trains with on n_devices when the user gives none.

    Pure fsdp ({data 1, fsdp n, tensor 1}) when the batch and d_model split over all n devices. Otherwise
    the smallest tensor size t in TENSOR_SIZES with t <= max_tensor (chips per host: tensor-parallel
    groups stay inside a host, on its fastest links), t dividing n, n_heads, mlp_hidden and the padded
    vocabulary, and the batch and d_model splitting over fsdp = n / t. The batch fixes how many devices
    can hold distinct rows (13b-5t: 1984 = 31 x 64 rows, so 64 of v5p-512's 256 chips); tensor
    parallelism puts the rest to work on the same rows. None when nothing works: the caller then reports
    pure fsdp's divisibility error. Every host holds whole rows, as the trainer requires, because t
    divides the chips per host (both powers of two).
    """
    for t in (1,) + TENSOR_SIZES:
        if t > 1 and (t > max_tensor or any(k % t for k in (n_devices, arch.n_heads, arch.mlp_hidden,
                                                               arch.padded_vocab))):
            continue
        fsdp = n_devices // t
        if batch % fsdp == 0 and arch.d_model % fsdp == 0:
            return {"data": 1, "fsdp": fsdp, "tensor": t}
    return None


def default_mesh_overrides(config, topo: Topology) -> tuple[str, ...]:
    """`mesh.*` train-config overrides that give `config` the suite's default mesh on `topo` (default_mesh:
    tensor-parallel when the batch cannot split over every chip).

    Empty when the config's mesh is not the default (data 1, fsdp -1, tensor 1: a user's mesh always wins),
    when pure fsdp works, and when no mesh works (the trainer's own check then names the problem). The
    compile check and the launcher both call this, so a launched rung trains with the mesh it compiled with.
    """
    from ladder.arch import arch_of

    if {axis: config.mesh[axis] for axis in DEFAULT_MESH} != DEFAULT_MESH:
        return ()
    batch = config.train.global_batch
    if batch % topo.num_slices:
        return ()
    mesh = default_mesh(arch_of(config), batch // topo.num_slices, topo.chips_per_slice, topo.chips_per_host)
    if mesh is None or mesh["tensor"] == 1:
        return ()
    return tuple(f"mesh.{axis}={mesh[axis]}" for axis in ("fsdp", "tensor"))
