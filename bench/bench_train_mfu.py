"""CPU model-FLOP utilisation of the real train step for a ~10M-parameter model.

MFU = (ladder.arch 6N+attention FLOPs per token x tokens/s) / (jitted matmul FLOP/s), both measured in this
run. The matmul peak is measured before and after every variant and the highest value seen in the run is the
denominator for all of them (on a shared machine a single reading can be halved by a neighbour's job, which
would inflate MFU). Prints one line per variant, then the table again against the run's best peak.

    .venv/bin/python bench/bench_train_mfu.py [--steps 6] [--only d512]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from ladder import arch as arch_lib  # noqa: E402
from ladder import metrics, sharding  # noqa: E402
from ladder.arch import arch_of  # noqa: E402
from ladder.data import make_source  # noqa: E402
from ladder.step import make_train_step  # noqa: E402
from ladder.train_config import default_config  # noqa: E402

# (label, model overrides, global batch, seq len). All 9.8-10.3M parameters (16 d^2 per layer with SwiGLU F = 4d,
# plus the 384-row LM head). Wider, shallower shapes spend more of each step in big matmuls and less in the
# elementwise work (norms, RoPE, softmax, SwiGLU gate) that XLA:CPU runs far below the matmul peak.
VARIANTS = [
    ("d320 x6, scan, 16x256", dict(d_model=320, n_layers=6, n_heads=5, scan_layers=True), 16, 256),
    ("d320 x6, 16x256", dict(d_model=320, n_layers=6, n_heads=5, scan_layers=False), 16, 256),
    ("d320 x6, 32x128", dict(d_model=320, n_layers=6, n_heads=5, scan_layers=False), 32, 128),
    ("d448 x3, 32x128", dict(d_model=448, n_layers=3, n_heads=7, scan_layers=False), 32, 128),
    ("d560 x2, 32x128", dict(d_model=560, n_layers=2, n_heads=10, scan_layers=False), 32, 128),
]


def measure(model_overrides, global_batch, seq_len, steps):
    cfg = default_config()
    cfg.model.update(vocab_size=259, seq_len=seq_len, **model_overrides)
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
    achieved = arch_lib.flops_per_token_6n(a) * global_batch * seq_len / step_s
    return arch_lib.n_params(a), step_s, achieved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--only", help="run only variants whose label contains this text, e.g. d512")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {os.cpu_count()} cpus")
    peaks, rows = [metrics.measure_matmul_peak()], []
    for label, overrides, batch, seq in [v for v in VARIANTS if not args.only or args.only in v[0]]:
        n, step_s, achieved = measure(overrides, batch, seq, args.steps)
        peaks.append(metrics.measure_matmul_peak())
        rows.append((label, n, step_s, achieved))
        print(f"{label:<22} N={n / 1e6:.1f}M  step {step_s * 1e3:7.1f} ms  {achieved / 1e9:6.1f} GFLOP/s  "
              f"(matmul peak readings so far {min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f} GFLOP/s)", flush=True)
    peak = max(peaks)
    print(f"\nMFU against the run's best matmul peak, {peak / 1e9:.0f} GFLOP/s (fp32, 2048^2):")
    print("| variant | N | step ms | GFLOP/s | MFU |\n|---|---|---|---|---|")
    for label, n, step_s, achieved in rows:
        print(f"| {label} | {n / 1e6:.1f}M | {step_s * 1e3:.0f} | {achieved / 1e9:.0f} | {achieved / peak:.2f} |")


if __name__ == "__main__":
    main()
