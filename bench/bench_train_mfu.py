"""CPU model-FLOP utilisation of the real train step for a ~10M-parameter model.

MFU = (ladder.arch 6N+attention FLOPs per token x tokens/s) / (jitted matmul FLOP/s), both measured in this
run, right after each other, so machine load cancels to first order. Prints one line per variant, best last.

    .venv/bin/python bench/bench_train_mfu.py [--steps 6] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from ladder import arch as arch_lib  # noqa: E402
from ladder import metrics, sharding  # noqa: E402
from ladder.data import make_source  # noqa: E402
from ladder.train import arch_of, default_config, make_train_step  # noqa: E402

# (label, model overrides, global batch, seq len). d=320, 6 layers, SwiGLU 4d: N = 9.95M.
VARIANTS = [
    ("scan, B=16 L=256", dict(scan_layers=True), 16, 256),
    ("no scan, B=16 L=256", dict(scan_layers=False), 16, 256),
    ("no scan, B=32 L=128", dict(scan_layers=False), 32, 128),
    ("no scan, B=64 L=128", dict(scan_layers=False), 64, 128),
]


def measure(model_overrides, global_batch, seq_len, steps):
    cfg = default_config()
    cfg.model.update(d_model=320, n_layers=6, n_heads=5, vocab_size=259, seq_len=seq_len, **model_overrides)
    cfg.train.update(global_batch=global_batch, total_steps=1000)
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    a = arch_of(cfg)
    program = make_train_step(cfg, sharding.make_mesh(cfg.mesh, jax.devices()[:1]))
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.vocab_size = a.vocab_size
    source = make_source(data_cfg, seq_len, global_batch)
    batches = [sharding.to_global(source.batch(k), program.batch_shardings["inputs"], global_batch)
               for k in range(steps + 2)]
    state = program.init_fn(jax.random.key(0))
    for b in batches[:2]:  # compile and warm up
        state, m = program.step_fn(state, b)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for b in batches[2:]:
        state, m = program.step_fn(state, b)
    jax.block_until_ready(m)
    step_s = (time.perf_counter() - start) / steps
    peak = metrics.measure_matmul_peak()
    achieved = arch_lib.flops_per_token_6n(a) * global_batch * seq_len / step_s
    return arch_lib.n_params(a), step_s, achieved, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="only the fastest variant (no scan, B=32 L=128)")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {os.cpu_count()} cpus")
    for label, overrides, batch, seq in VARIANTS[2:3] if args.quick else VARIANTS:
        n, step_s, achieved, peak = measure(overrides, batch, seq, args.steps)
        print(f"{label:<22} N={n / 1e6:.1f}M  step {step_s * 1e3:7.1f} ms  {achieved / 1e9:6.1f} GFLOP/s  "
              f"matmul peak {peak / 1e9:6.1f} GFLOP/s  MFU {achieved / peak:.2f}", flush=True)


if __name__ == "__main__":
    main()
