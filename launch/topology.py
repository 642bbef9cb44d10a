"""How many hosts (TPU VM workers) a Cloud TPU slice has, and how many JAX devices it gives a job.

Single-host slices: v5e/v6e up to 8 chips (v5litepod-1/4/8, v6e-1/4/8). Every other slice has 4 chips per
host (v4, v5p, and multi-host v5e/v6e), per the Cloud TPU system-architecture pages. JAX sees one device
per chip (v4 and v5p in megacore mode), so a job's device count is chips x slices. The rehearsal starts one
local process per host with this many CPU devices each.
"""

from __future__ import annotations

from ladder import chips


def chips_per_host(accelerator: str) -> int:
    chip, n = chips.parse_slice(accelerator)
    if chip.name in ("v5e", "v6e") and n <= 8:
        return n
    return min(n, 4)


def hosts(accelerator: str) -> int:
    """Workers of one slice: v4-16 -> 2, v5litepod-16 -> 4, v5litepod-8 -> 1."""
    return chips.parse_slice(accelerator)[1] // chips_per_host(accelerator)


def devices(accelerator: str, num_slices: int = 1) -> int:
    """JAX devices of the whole job (every host of every slice): chips x slices."""
    return chips.parse_slice(accelerator)[1] * num_slices
