"""`python -m ladder.launch.preflight --devices N [--distributed | --coordinator H:P --num-processes K --process-id I]`

Run by every worker before training: start JAX the way the trainer will (same distributed flags) and check
that it sees the slice's N devices on the platform JAX_PLATFORMS names (the worker script sets `tpu`, so a
missing libtpu or a busy TPU fails here instead of training on CPU). One clear line either way; exit 1 on
a mismatch, so the worker script stops before a rung starts on the wrong hardware.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ladder.launch.preflight")
    p.add_argument("--devices", type=int, required=True, help="devices JAX must see in all (chips x slices)")
    p.add_argument("--distributed", action="store_true", help="jax.distributed.initialize() from the TPU env")
    p.add_argument("--coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("--timeout-s", type=int, default=300)
    args = p.parse_args(argv)
    platform = (os.environ.get("JAX_PLATFORMS") or "tpu").split(",")[0]
    try:
        import jax

        if args.coordinator:
            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                       initialization_timeout=args.timeout_s)
        elif args.distributed:
            jax.distributed.initialize(initialization_timeout=args.timeout_s)
        devices = jax.devices()
    except Exception as e:  # noqa: BLE001 (backend start-up raises many types; all mean "no devices")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"ladder preflight: FAILED: JAX could not start on {platform} ({first}); is libtpu installed "
              "(ladder[tpu]) and is no other process holding the TPU (sudo lsof -w /dev/accel*)?", flush=True)
        return 1
    got = devices[0].platform
    kind = devices[0].device_kind
    where = f"{jax.process_count()} host(s), this is host {jax.process_index()} with {jax.local_device_count()}"
    if got != platform or len(devices) != args.devices:
        print(f"ladder preflight: FAILED: JAX sees {len(devices)} {got} device(s) ({kind}; {where}), expected "
              f"{args.devices} {platform} devices (the slice's chips x slices): check the accelerator type "
              "(--slice), that every worker started, and that libtpu matches jax", flush=True)
        return 1
    print(f"ladder preflight: ok: {len(devices)} {got} devices ({kind}) on {where}", flush=True)
    if args.coordinator or args.distributed:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
