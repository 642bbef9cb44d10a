"""One XLA CPU thread per trainer against XLA's default (one per core): CPU time and wall time per train step,
and whether the trained bits depend on the setting (ladder/cpu_threads.py, docs/run.md "Threads").

Each reading is a fresh process (`--child`) that sizes its CPU client through ladder.cpu_threads exactly as a
trainer does (LADDER_XLA_CPU_THREADS), builds one smoke-family rung's real train step (ladder.step), takes two
warm-up steps, then times --steps steps by getrusage (user, system) and the clock (wall), and prints a sha256 of
the final state. Settings alternate (default, one, default, one, ...) --pairs times, so the machine's load
drifts over both alike; compare the ratios of one run, not the ms (the machine is shared).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_cpu_threads.py [--sizes 160k,330k] [--steps 40] [--pairs 2]

`--side-by-side` runs the two processes of one setting at the same time (as the launcher's two parallel
trainers do) and reports the pair's wall time: the figure that matters for `launch.parallel = 2`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

# (d_model, n_heads, batch sequences) of the smoke family's sizes (ladder/plan/presets.py; batch ~ N^(2/3))
SHAPES = {"45k": (32, 2, 16), "93k": (48, 3, 24), "160k": (64, 4, 32), "236k": (80, 5, 40), "330k": (96, 6, 56)}


def child(size: str, steps: int) -> dict:
    from ladder import cpu_threads

    applied = cpu_threads.create_backend(cpu_threads.requested())
    import jax
    import numpy as np

    from ladder import sharding
    from ladder.arch import arch_of
    from ladder.data import make_source
    from ladder.step import make_train_step
    from ladder.train_config import default_config

    d, heads, batch = SHAPES[size]
    cfg = default_config()
    cfg.model.update(vocab_size=259, seq_len=128, d_model=d, n_layers=2, n_heads=heads, scan_layers=False)
    cfg.train.update(global_batch=batch, total_steps=1000)
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:1])
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.vocab_size = arch_of(cfg).vocab_size
    source = make_source(data_cfg, 128, batch)
    program = make_train_step(cfg, mesh)
    shard = program.batch_shardings["inputs"]
    batches = [sharding.to_global(source.batch(k), shard, batch) for k in range(steps + 2)]
    state = program.init_fn(jax.random.key(0))
    for b in batches[:2]:
        state, m = program.step_fn(state, b)
    jax.block_until_ready(m)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for b in batches[2:]:
        state, m = program.step_fn(state, b)
        jax.device_get(m)  # the trainer fetches each step's metrics
    jax.block_until_ready(state)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(state)):
        digest.update(np.asarray(leaf).tobytes())
    return {"size": size, "threads": applied, "os_threads": len(os.listdir("/proc/self/task")),
            "user_ms": (r1.ru_utime - r0.ru_utime) / steps * 1e3, "sys_ms": (r1.ru_stime - r0.ru_stime) / steps * 1e3,
            "wall_ms": (t1 - t0) / steps * 1e3, "sha": digest.hexdigest()[:16]}


def spawn(size: str, steps: int, threads: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu", LADDER_XLA_CPU_THREADS=threads)
    from ladder.malloc_tunables import with_tunables

    return subprocess.Popen([sys.executable, __file__, "--child", size, "--steps", str(steps)],
                            env=with_tunables(env), stdout=subprocess.PIPE, text=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="160k,330k")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--side-by-side", action="store_true")
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.steps)))
        return
    print(f"steps {a.steps}, cores {len(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.1f}; per step:")
    for size in a.sizes.split(","):
        ratios = []
        for pair in range(a.pairs):
            got = {}
            for threads in ("0", "1"):
                t0 = time.perf_counter()
                procs = [spawn(size, a.steps, threads) for _ in range(2 if a.side_by_side else 1)]
                outs = [json.loads(pr.communicate()[0].strip().splitlines()[-1]) for pr in procs]
                pair_wall = time.perf_counter() - t0
                r = outs[0]
                got[threads] = r
                extra = f" pair wall {pair_wall:6.1f} s" if a.side_by_side else ""
                print(f"{size:>5} {'default' if threads == '0' else 'one':>7} ({r['os_threads']:2d} OS threads): "
                      f"user {r['user_ms']:6.1f} sys {r['sys_ms']:5.1f} wall {r['wall_ms']:6.1f} ms; "
                      f"state {r['sha']}{extra}  load {os.getloadavg()[0]:.1f}", flush=True)
            d, o = got["0"], got["1"]
            ratios.append(((o["user_ms"] + o["sys_ms"]) / (d["user_ms"] + d["sys_ms"]), o["wall_ms"] / d["wall_ms"]))
        cpu = sorted(r[0] for r in ratios)
        wall = sorted(r[1] for r in ratios)
        print(f"{size:>5} one/default CPU x {', '.join(f'{x:.2f}' for x in cpu)}; wall x {', '.join(f'{x:.2f}' for x in wall)}")


if __name__ == "__main__":
    main()
