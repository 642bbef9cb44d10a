"""Per-step CPU cost of the smoke rungs (user, system, minor page faults) under glibc malloc tunables.

Each (tunables, size) cell runs in its own child process, because glibc reads GLIBC_TUNABLES once at process
start. A child builds the rung's trainer exactly as `ladder train --plan` does (the smoke plan, its overrides),
steps it twice to compile, then times `--steps` steps and one evaluation (3 embedded tasks + held-out LM loss,
after a first evaluation that compiles) with resource.getrusage. Every cell also prints its last loss as a
hex float: the tunables change where malloc puts buffers, never what is computed, so the losses must be equal
bit for bit. Ratios are against the first variant (no tunables) measured in the same run: on a shared machine
only ratios of one run mean much; the absolute CPU-seconds drift with the neighbours' load.

    .venv/bin/python bench/bench_step_overhead.py [--sizes 45k,160k,236k] [--steps 40] [--variants default,ladder]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H = "glibc.malloc."
VARIANTS = {
    "default": "",
    "hugetlb": f"{H}hugetlb=1",
    "trim+mmap": f"{H}trim_threshold=1000000000:{H}mmap_threshold=33554432",
    "ladder": None,  # ladder.malloc_tunables.LADDER_TUNABLES, what the launcher gives its trainers
    "ladder+top_pad": None,
    "ladder+arena_max=1": None,
}


def variant_value(name: str) -> str:
    from ladder.malloc_tunables import LADDER_TUNABLES

    if name == "ladder":
        return LADDER_TUNABLES
    if name == "ladder+top_pad":
        return f"{LADDER_TUNABLES}:{H}top_pad=67108864"
    if name == "ladder+arena_max=1":
        return f"{LADDER_TUNABLES}:{H}arena_max=1"
    if name in VARIANTS:
        return VARIANTS[name]
    return name  # a literal GLIBC_TUNABLES value


def child(size: str, steps: int, evals: int) -> dict:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import tempfile

    import jax

    from ladder import plan as plan_lib, sharding
    from ladder.eval import make_on_eval
    from ladder.step import bind_logits_fn, make_train_step
    from ladder.train import _open_source
    from ladder.train_config import resolve_rung
    sys.path.insert(0, ROOT)
    from configs.smoke import get_config

    cfg = get_config()
    plan = plan_lib.plan_ladder(list(cfg.plan.targets), sizes=[size], multiples=[0.5], preset=None, seed=cfg.plan.seed,
                                eval_fractions=[1])
    config, _ = resolve_rung(plan, plan["rungs"][0], cfg.train_overrides)
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    program = make_train_step(config, mesh)
    source, row_sharding = _open_source(config, mesh)
    batch = config.train.global_batch
    batches = [sharding.to_global(source.batch(k), row_sharding, batch) for k in range(steps + 2)]
    state = program.init_fn(jax.random.key(0))
    for b in batches[:2]:
        state, m = program.step_fn(state, b)
    jax.block_until_ready(m)

    def timed(fn, n):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = fn()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        return out, dict(wall=(t1 - t0) / n, user=(r1.ru_utime - r0.ru_utime) / n, sys=(r1.ru_stime - r0.ru_stime) / n,
                         faults=(r1.ru_minflt - r0.ru_minflt) / n)

    def run_steps():
        s, mm = state, None
        for b in batches[2:]:
            s, mm = program.step_fn(s, b)
        jax.block_until_ready(mm)
        return s, mm

    (state, m), step_cost = timed(run_steps, steps)
    out = dict(size=size, batch=batch, loss=float(m["loss"]).hex(), step=step_cost)
    if evals:
        with tempfile.TemporaryDirectory() as run_dir:
            on_eval = make_on_eval(config, run_dir)
            logits_fn = bind_logits_fn(program, state["params"], 1)
            on_eval(steps + 2, state["params"], logits_fn)  # compiles the evaluation programs
            _, out["eval"] = timed(lambda: [on_eval(steps + 2, state["params"], logits_fn) for _ in range(evals)],
                                   evals)
            with open(os.path.join(run_dir, "results.csv")) as f:
                out["eval_rows"] = f.read().count("\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="45k,160k,236k")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--evals", type=int, default=1, help="timed evaluations per cell (0: none)")
    ap.add_argument("--variants", default="default,hugetlb,trim+mmap,ladder",
                    help=f"comma list of {', '.join(VARIANTS)} or literal GLIBC_TUNABLES values")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.evals)))
        return
    sys.path.insert(0, ROOT)
    variants = args.variants.split(",")
    env0 = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LADDER_MALLOC_TUNABLES")}
    env0.update(JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1", LADDER_MALLOC_TUNABLES="0",
                PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    print(f"load {os.getloadavg()[0]:.1f}; {args.steps} steps + {args.evals} evaluation(s) per cell, after compiling")
    rows = {}
    for size in args.sizes.split(","):
        for v in variants:
            value = variant_value(v)
            env = dict(env0, GLIBC_TUNABLES=value) if value else env0
            res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", size, "--steps", str(args.steps),
                                  "--evals", str(args.evals)], env=env, capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"{size} {v}: exit {res.returncode}\n{res.stderr[-3000:]}")
            r = rows[size, v] = json.loads(res.stdout.strip().splitlines()[-1])
            base = rows[size, variants[0]]
            for part in ("step", "eval"):
                if part not in r:
                    continue
                c, b = r[part], base[part]
                print(f"{size:>5} {v:<20} {part:<4} ms: wall {c['wall'] * 1e3:7.1f} user {c['user'] * 1e3:7.1f} "
                      f"sys {c['sys'] * 1e3:6.1f} faults {c['faults']:8.0f} | x{variants[0]}: user+sys "
                      f"{(c['user'] + c['sys']) / (b['user'] + b['sys']):.2f} sys {c['sys'] / max(b['sys'], 1e-9):.2f}"
                      f" faults {c['faults'] / max(b['faults'], 1):.3f}", flush=True)
            print(f"{'':>5} {'':<20} last loss {r['loss']}" + ("" if r["loss"] == base["loss"] else "  DIFFERS"),
                  flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
