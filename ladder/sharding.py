"""The device mesh and the one table that maps logical axis names to mesh axes (MaxText style).

Mesh axes are named by role: `data` (pure data parallelism: replicas), `fsdp` (data parallelism whose
replicas also shard parameters and optimizer state), `tensor` (Megatron-style splits of heads, MLP width and
vocabulary). The batch is split over data x fsdp. Changing a parallelism strategy means editing RULES,
never the model.

Sequence parallelism (MaxText's): the residual stream [batch, length, embed] between the tensor-parallel
matmuls is split over the sequence on `tensor` rather than replicated, so the layer inputs saved for the
backward pass take 1/tensor of the memory (13b-5t on v5p-512: 97.2 -> 55.8 GiB per device,
docs/tpu-compile.md). Flax gives a mesh axis to the first rule, in RULES order, naming a logical axis the
array carries, and skips later rules whose mesh axis is taken: an array naming both `heads` and
`act_length` keeps its length whole, and no PartitionSpec names `tensor` twice.

Multislice (MaxText's dcn_data): with `mesh.dcn_data = S > 1` the mesh sizes describe ONE slice (-1 fills
it) and the `data` axis also spans the S slices, so only gradient all-reduces cross the data-center network.
The trainer and the ahead-of-time compiler (ladder/aot.py) build meshes with the same make_mesh.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from ladder.errors import LadderError
from ladder.topology import MESH_AXES, fill_mesh

BATCH_AXES = ("data", "fsdp")

# logical name -> mesh axis (or axes, or None = replicated). Parameters: model.py; activations: "act_*".
RULES = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("norm", None),
    ("layers", None),
    ("act_batch", BATCH_AXES),
    ("act_length", "tensor"),  # after heads/mlp/vocab: those keep `tensor` where an array has both
    ("act_embed", None),
)


def mesh_shape(mesh_cfg, n_devices: int) -> tuple[int, int, int]:
    """Config sizes (one may be -1 = fill) resolved against the device count (ladder.topology.fill_mesh, the
    planner's rule too); LadderError when they cannot fit."""
    sizes = fill_mesh({a: mesh_cfg[a] for a in MESH_AXES}, n_devices)
    return tuple(sizes[a] for a in MESH_AXES)


def make_mesh(mesh_cfg, devices=None, *, num_slices: int | None = None) -> Mesh:
    """A mesh over `devices` (default: all devices of all processes) with Auto axis types.

    `num_slices` (default `mesh_cfg.dcn_data`, else 1): slices the data axis spans, the other sizes
    describing one slice. Devices are grouped into slices by their `slice_index` (TPU); devices without one
    (CPU, tests) are cut into equal consecutive blocks.
    """
    from jax.experimental import mesh_utils

    devices = available_devices() if devices is None else list(devices)
    slices = int(num_slices if num_slices is not None else (mesh_cfg.get("dcn_data", 1) or 1))
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    if slices < 1 or len(devices) % slices:
        raise LadderError(f"mesh.dcn_data: {slices} slices do not split {len(devices)} devices evenly; "
                          "set it to the number of slices the job runs on")
    if slices == 1:
        return jax.make_mesh(mesh_shape(mesh_cfg, len(devices)), MESH_AXES, axis_types=axis_types, devices=devices)
    per_slice = len(devices) // slices
    try:
        ici = mesh_shape(mesh_cfg, per_slice)
    except LadderError as e:
        raise LadderError(f"{e} (mesh sizes describe one of {slices} slices: {per_slice} devices)") from None
    dcn = (slices,) + (1,) * (len(ici) - 1)
    if hasattr(devices[0], "slice_index"):
        grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
    else:
        blocks = [np.array(devices[i * per_slice:(i + 1) * per_slice]).reshape(ici) for i in range(slices)]
        grid = np.concatenate(blocks, axis=0)
    return Mesh(grid, MESH_AXES, axis_types=axis_types)


def available_devices() -> list:
    """jax.devices(), or one line naming JAX_PLATFORMS when the backend it asks for cannot start (gpu on a
    machine without one: a RuntimeError traceback from deep inside jax before)."""
    import os

    from ladder.cpu_threads import quiet_start

    try:
        with quiet_start():
            return jax.devices()
    except RuntimeError as e:
        if "backend" not in str(e).lower():
            raise
        asked = os.environ.get("JAX_PLATFORMS", "")
        first = str(e).strip().splitlines()[0].split(" (set JAX_PLATFORMS")[0].rstrip(". ")
        where = f"JAX_PLATFORMS={asked}" if asked else "the accelerator backend"
        raise LadderError(f"{where}: {first}; unset JAX_PLATFORMS (or set it to cpu, or to a backend this "
                          "machine has)") from None


def logical_shardings(logical_specs, mesh: Mesh):
    """A pytree of logical PartitionSpecs -> NamedShardings on `mesh` through RULES."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, RULES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """[batch, length] arrays: rows split over data x fsdp, replicated over tensor."""
    return NamedSharding(mesh, P(BATCH_AXES, None))


def local_rows(sharding: NamedSharding, global_batch: int, seq_len: int) -> tuple[int, int]:
    """The contiguous block of global batch rows this process's devices hold, as [start, stop)."""
    index_map = sharding.addressable_devices_indices_map((global_batch, seq_len))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [global_batch if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
    return min(starts), max(stops)


def to_global(local_batch: dict[str, np.ndarray], sharding: NamedSharding, global_batch: int) -> dict:
    """Host-local rows -> global jax.Arrays (the multi-host path; also right on one host)."""
    return {k: jax.make_array_from_process_local_data(sharding, v, (global_batch,) + v.shape[1:])
            for k, v in local_batch.items()}
