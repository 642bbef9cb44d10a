"""Accelerator facts used for MFU, memory checks and slice choice (peak dense bf16 FLOP/s, HBM per chip).

Sources: Cloud TPU system-architecture pages (v4, v5e, v5p, v6e) and NVIDIA datasheets (dense, no
sparsity). CPU has no fixed peak: the trainer measures a jitted matmul instead (docs/flops.md).
Cloud TPU accelerator-type names count TensorCores for v4/v5p (2 per chip) and chips for v5e/v6e.
"""

from __future__ import annotations

import dataclasses
import re

from ladder.errors import LadderError


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    peak_flops: float  # dense bf16 FLOP/s per chip
    hbm_bytes: int
    cores_per_chip_in_type: int = 1  # how the accelerator-type suffix counts (v4-8 = 4 chips)
    type_prefix: str = ""  # Cloud TPU accelerator-type prefix, e.g. "v5litepod"


GiB = 1 << 30
CHIPS: dict[str, Chip] = {
    "v4": Chip("v4", 275e12, 32 * GiB, 2, "v4"),
    "v5e": Chip("v5e", 197e12, 16 * GiB, 1, "v5litepod"),
    "v5p": Chip("v5p", 459e12, 95 * GiB, 2, "v5p"),
    "v6e": Chip("v6e", 918e12, 32 * GiB, 1, "v6e"),
    "a100": Chip("a100", 312e12, 80 * GiB),
    "h100": Chip("h100", 989e12, 80 * GiB),
    "h200": Chip("h200", 989e12, 141 * GiB),
}


# device_kind substrings (lower case) -> chip name; first match wins, so "v5 lite" precedes "v5".
DEVICE_KINDS = (("v5 lite", "v5e"), ("v5e", "v5e"), ("v6 lite", "v6e"), ("v6e", "v6e"), ("v5p", "v5p"),
                ("v5", "v5p"), ("v4", "v4"), ("h200", "h200"), ("h100", "h100"), ("a100", "a100"))


def chip_of_device_kind(device_kind: str) -> str | None:
    """A JAX device's `device_kind` ('TPU v5 lite', 'NVIDIA H100 80GB HBM3') -> its CHIPS name, or None."""
    kind = device_kind.lower()
    return next((name for key, name in DEVICE_KINDS if key in kind), None)


def chip(name: str) -> Chip:
    key = name.lower()
    if key not in CHIPS:
        raise LadderError(f"chip: unknown chip {name!r}; known: {', '.join(CHIPS)}")
    return CHIPS[key]


def parse_slice(accelerator_type: str) -> tuple[Chip, int]:
    """'v5litepod-16' -> (v5e, 16 chips); 'v4-32' -> (v4, 16 chips); 'v5e-16' accepted as an alias."""
    m = re.fullmatch(r"(v4|v5litepod|v5e|v5p|v6e)-(\d+)", accelerator_type.lower())
    if not m:
        raise LadderError(
            f"slice: unknown accelerator type {accelerator_type!r}; use Cloud TPU names such as "
            "v4-8, v5litepod-16 (or v5e-16), v5p-8, v6e-8"
        )
    prefix, count = m.group(1), int(m.group(2))
    c = CHIPS["v5e" if prefix in ("v5litepod", "v5e") else prefix]
    if count % c.cores_per_chip_in_type:
        raise LadderError(f"slice: {accelerator_type!r} is not a valid size for {c.name}")
    return c, count // c.cores_per_chip_in_type


def slice_name(c: Chip, n_chips: int) -> str:
    """The accelerator type gcloud expects for n_chips chips of kind c."""
    return f"{c.type_prefix}-{n_chips * c.cores_per_chip_in_type}"
