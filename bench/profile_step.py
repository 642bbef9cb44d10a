"""Where a small CPU rung's train step spends its user time: ablations timed by CPU-seconds in one process.

The rung is the smoke ladder's 160k shape (d 64, 2 layers, 4 heads of 16, seq 128, batch 32, vocab 259 padded
to 384). Each variant is a jitted program stepped --steps times after two warm-up calls; the cost is
resource.getrusage user and system time per call. The variants peel the step apart:

  full step        ladder.step's train step as the trainer runs it (donated state)
  fwd+bwd          value_and_grad of the same objective, no optimizer
  fwd              the objective's value only
  optimizer        clip + AdamW update + apply_updates alone, on the real parameter tree
  full, no z-loss / no RoPE / no QK-norm / no attention-mask   the step with one piece taken out
                   (module functions patched at trace time: numbers differ, for timing only)

`--mode` runs the full step alone in another process setup, and prints a hash of the final state, so two runs
can be compared for bit-identity: `one_thread` holds the process to one core while XLA's CPU client is created
(its worker pools then have one thread; the affinity is restored after), `sync` turns off async dispatch.

Absolute CPU-seconds drift with the neighbours' load on a shared machine: compare the ratios of one run.
The per-op picture (which fusion is which) needs a trace instead: `--trace DIR` writes a jax.profiler trace of
the full step (open with TensorBoard/xprof; per-thunk wall times, not CPU times).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/profile_step.py [--steps 30] [--only full,fwd]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/profile_step.py --mode one_thread   # then --mode default
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
MODES = ("default", "one_thread", "sync")
MODE = sys.argv[sys.argv.index("--mode") + 1] if "--mode" in sys.argv[:-1] else None
ALL_CPUS = os.sched_getaffinity(0)
if MODE == "one_thread":  # before jax exists: XLA sizes its pools from the affinity when the client is made
    os.sched_setaffinity(0, {min(ALL_CPUS)})

import jax  # noqa: E402

if MODE == "sync":
    jax.config.update("jax_cpu_enable_async_dispatch", False)
jax.devices()
os.sched_setaffinity(0, ALL_CPUS)
import numpy as np  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from ladder import attention, model as model_lib, sharding  # noqa: E402
from ladder.arch import arch_of  # noqa: E402
from ladder.data import make_source  # noqa: E402
from ladder.loss import token_weights  # noqa: E402
from ladder.optimizer import make_optimizer, schedule_fn, schedule_inputs  # noqa: E402
from ladder.step import make_train_step  # noqa: E402
from ladder.train_config import default_config  # noqa: E402


def rung_config(z_loss=None):
    cfg = default_config()
    cfg.model.update(vocab_size=259, seq_len=128, d_model=64, n_layers=2, n_heads=4, scan_layers=False)
    cfg.train.update(global_batch=32, total_steps=1000)
    if z_loss is not None:
        cfg.train.z_loss = z_loss
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    return cfg


def cpu_per_call(fn, args_list, steps):
    """(user ms, system ms) per call of fn over args_list[2:], after two warm-up calls."""
    out = None
    for a in args_list[:2]:
        out = fn(*a)
    jax.block_until_ready(out)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for a in args_list[2:steps + 2]:
        out = fn(*a)
    jax.block_until_ready(out)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (r1.ru_utime - r0.ru_utime) / steps * 1e3, (r1.ru_stime - r0.ru_stime) / steps * 1e3


@contextlib.contextmanager
def patched(name):
    """Take one piece out of the model at trace time (timing only: the numbers change)."""
    saved = []

    def swap(obj, attr, value):
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    if name == "no RoPE":
        swap(model_lib, "rope", lambda x, angles: x)
    elif name == "no QK-norm":
        original = model_lib.RMSNorm.__call__
        swap(model_lib.RMSNorm, "__call__", lambda self, x: x if self.axis == "heads" else original(self, x))
    elif name == "no attention mask":
        def unmasked(q, k, v, qs, ks, off):
            K = q.shape[-1]
            s = jnp.einsum("bqhk,bthk->bhqt", q, k) / jnp.sqrt(K)
            return jnp.einsum("bhqt,bthk->bqhk", jax.nn.softmax(s, axis=-1), v)
        swap(attention, "_dense_block", unmasked)
    try:
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--trace", help="also write a jax.profiler trace of the full step here")
    parser.add_argument("--mode", choices=MODES, help="time the full step alone in this setup; print a state hash")
    args = parser.parse_args()
    steps = args.steps
    cfg = rung_config()
    mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:1])
    a = arch_of(cfg)
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.vocab_size = a.vocab_size
    source = make_source(data_cfg, a.seq_len, cfg.train.global_batch)
    program = make_train_step(cfg, mesh)
    shard = program.batch_shardings["inputs"]
    batches = [sharding.to_global(source.batch(k), shard, cfg.train.global_batch) for k in range(steps + 2)]
    model = model_lib.make_model(cfg.model, a)
    params = program.init_fn(jax.random.key(0))["params"]
    z_coef = float(cfg.train.z_loss)

    def objective(p, batch):
        w = token_weights(batch["segment_ids"])
        n = jnp.maximum(w.sum(), 1.0)
        ce, z = model.apply({"params": p}, batch["inputs"], batch["segment_ids"], batch["positions"],
                            batch["targets"], w)
        return ce / n + z_coef * z / n

    tx = make_optimizer(cfg.optim, schedule_fn(cfg.optim.schedule, schedule_inputs(cfg.optim, 1000)))

    def opt_step(p, o, g):
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    final = {}

    def full(cfg_, label):
        with patched(label):
            prog = make_train_step(cfg_, mesh)
            state = prog.init_fn(jax.random.key(0))

            def call(b):
                nonlocal state
                state, m = prog.step_fn(state, b)
                return m
            cost = cpu_per_call(call, [(b,) for b in batches], steps)
            final["state"] = state
            return cost

    if args.mode:
        user, system = full(cfg, "")
        digest = hashlib.sha256()
        for leaf in jax.tree.leaves(jax.device_get(final["state"])):
            digest.update(np.asarray(leaf).tobytes())
        print(f"{args.mode:<10} threads in process {len(os.listdir('/proc/self/task'))}: user {user:6.1f} "
              f"sys {system:5.1f} ms per step; state sha256 {digest.hexdigest()[:16]}")
        return

    variants = {
        "full step": lambda: full(cfg, ""),
        "fwd+bwd": lambda: cpu_per_call(jax.jit(jax.value_and_grad(objective)), [(params, b) for b in batches],
                                        steps),
        "fwd": lambda: cpu_per_call(jax.jit(objective), [(params, b) for b in batches], steps),
        "optimizer": lambda: cpu_per_call(jax.jit(opt_step), [(params, tx.init(params), params)] * (steps + 2),
                                          steps),
        "full, no z-loss": lambda: full(rung_config(z_loss=0.0), ""),
        "full, no RoPE": lambda: full(cfg, "no RoPE"),
        "full, no QK-norm": lambda: full(cfg, "no QK-norm"),
        "full, no attention mask": lambda: full(cfg, "no attention mask"),
    }
    chosen = [v for v in variants if not args.only or any(o.strip() == v for o in args.only.split(","))]
    print(f"160k rung, {steps} calls per variant, jax {jax.__version__}; CPU ms per call (user + system)")
    base = None
    for name in chosen:
        user, system = variants[name]()
        base = base or user
        print(f"{name:<26} user {user:7.1f}  sys {system:6.1f}  user/first {user / base:5.2f}", flush=True)
    if args.trace:
        state = program.init_fn(jax.random.key(0))
        for b in batches[:2]:
            state, m = program.step_fn(state, b)
        jax.block_until_ready(m)
        with jax.profiler.trace(args.trace):
            for b in batches[2:]:
                state, m = program.step_fn(state, b)
            jax.block_until_ready(m)


if __name__ == "__main__":
    main()
