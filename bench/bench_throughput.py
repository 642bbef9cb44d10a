"""Training throughput and MFU of a 1B-class rung in bf16 on whatever accelerator JAX sees (one command).

    .venv/bin/python bench/bench_throughput.py                       # OLMo 1B shape on GPU/TPU; small on CPU
    .venv/bin/python bench/bench_throughput.py --batch 16 --remat full --attention xla --steps 20

The step is the trainer's own (ladder.step.make_train_step: model.attention=auto picks cuDNN on GPU, splash
on TPU; chunked loss; fsdp over every device), fed synthetic batches. MFU = ladder.arch 6N + attention FLOPs
per token (docs/flops.md; remat's recompute is not counted as useful work) x tokens/s / the devices' dense
bf16 peak (ladder.chips: H100/H200 989 TFLOP/s, v5p 459, v5e 197 ...). On CPU there is no datasheet peak: the
script measures a jitted bf16 matmul, and runs a scaled-down shape (d 256, 2 layers, seq 256, byte vocab)
so it finishes in a minute; the CPU figure checks the script, not the model's speed.
"""

from __future__ import annotations

import argparse
import time

import jax

from ladder import arch as arch_lib
from ladder import metrics, sharding
from ladder.arch import arch_of
from ladder.data import make_source
from ladder.step import make_train_step
from ladder.train_config import default_config

# OLMo-2 1B (ladder.plan.presets "1B": d 2048, 16 layers, 16 heads, OLMo vocabulary, 4096 tokens).
FULL = dict(d_model=2048, n_layers=16, n_heads=16, vocab_size=100278, seq_len=4096)
CPU = dict(d_model=256, n_layers=2, n_heads=4, vocab_size=259, seq_len=256)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=0, help="sequences per device (default 8 on GPU/TPU, 4 on CPU)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--remat", default="save_dots", choices=("none", "save_dots", "full"))
    p.add_argument("--attention", default="auto", choices=("auto", "xla", "splash", "cudnn"))
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--full", action="store_true", help="the 1B shape even on CPU (slow)")
    args = p.parse_args()

    devices = jax.devices()
    on_cpu = devices[0].platform == "cpu"
    shape = CPU if on_cpu and not args.full else FULL
    per_device = args.batch or (4 if on_cpu else 8)
    cfg = default_config()
    cfg.model.update(dtype="bfloat16", remat=args.remat, attention=args.attention, scan_layers=True, **shape)
    cfg.train.update(global_batch=per_device * len(devices), total_steps=1000, microbatches=args.microbatches)
    cfg.mesh.update(data=1, fsdp=-1, tensor=1)
    a = arch_of(cfg)
    program = make_train_step(cfg, sharding.make_mesh(cfg.mesh, devices))
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.vocab_size = a.vocab_size
    source = make_source(data_cfg, a.seq_len, cfg.train.global_batch)
    batches = [sharding.to_global(source.batch(k), program.batch_shardings["inputs"], cfg.train.global_batch)
               for k in range(min(args.steps, 4) + 2)]
    print(f"jax {jax.__version__}: {len(devices)} x {devices[0].device_kind}; N={arch_lib.n_params(a) / 1e6:,.0f}M "
          f"d={a.d_model} layers={a.n_layers} seq={a.seq_len} batch {per_device}/device, bf16, "
          f"remat={args.remat}, attention={args.attention}", flush=True)
    t0 = time.perf_counter()
    state = program.init_fn(jax.random.key(0))
    for b in batches[:2]:  # compile and warm up
        state, m = program.step_fn(state, b)
    jax.block_until_ready(m)
    print(f"compile + 2 warm-up steps: {time.perf_counter() - t0:.1f} s", flush=True)
    start = time.perf_counter()
    for k in range(args.steps):
        state, m = program.step_fn(state, batches[2 + k % (len(batches) - 2)])
    jax.block_until_ready(m)
    step_s = (time.perf_counter() - start) / args.steps

    tokens_per_s = cfg.train.global_batch * a.seq_len / step_s
    if on_cpu:
        peak, source_note = metrics.measure_matmul_peak(dtype=jax.numpy.bfloat16), "measured bf16 matmul (cpu)"
    else:
        peak, source_note = metrics.peak_flops(devices)
    mfu = arch_lib.flops_per_token_6n(a) * tokens_per_s / peak
    print(f"step {step_s * 1e3:.1f} ms, {tokens_per_s:,.0f} tokens/s ({tokens_per_s / len(devices):,.0f} per device), "
          f"loss {float(m['loss']):.3f}, MFU {mfu:.1%} of {peak / 1e12:.3g} TFLOP/s ({source_note})")


if __name__ == "__main__":
    main()
