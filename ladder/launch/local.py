"""`local`: rungs as `python -m ladder train` subprocesses on this machine, one after another or several at
once on disjoint device subsets, each logging to <run dir>/launch.log.

A rung that exits non-zero is retried (the trainer resumes from its last checkpoint) up to
`max_attempts` times, then reported failed; exit 2 (bad input) is not retried. `--processes N` runs a
rung as N processes on 127.0.0.1 (the multi-host path: explicit coordinator, process count and id).
The outcome of each rung is recorded in <run dir>/launch.json for `ladder status`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import shlex
import subprocess
import threading
import time
from pathlib import Path

from ladder.launch import Backend, LaunchOptions, commands
from ladder.launch.emulator import free_port
from ladder.launch.jobs import Job
from ladder.cpu_threads import SWITCH as CPU_THREADS
from ladder.malloc_tunables import with_tunables
from ladder import rundir
from ladder.errors import LadderError, sigterm_raises_terminated

BAD_INPUT = 2
STALLED = 124  # an attempt the launcher stopped for making no progress (timeout(1)'s code); it is retried
PROGRESS_FILES = ("metrics.jsonl", "status.json")  # with the attempt's launch logs: what a live trainer touches



SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "mlp_hidden", "seq_len", "batch_sequences")


def start_order(jobs: list, parallel: int) -> list:
    """Largest first: with several slots the big rungs start at once and the small ones fill in around them,
    so the stage ends close to total work / slots (longest-processing-time scheduling). Except that a rung
    does not follow one of its own shape while another shape waits: rungs of one shape run one compiled step
    (docs/training.md, "Compilation"), which the persistent cache serves only after the first has compiled it;
    two started side by side would both compile it."""
    left = sorted(jobs, key=lambda j: -j.rung.get("flops", 0))
    order = []
    while left:
        running = {tuple(j.rung.get(k) for k in SHAPE_KEYS) for j in order[len(order) - parallel + 1:]} \
            if parallel > 1 else set()
        pick = next((j for j in left if tuple(j.rung.get(k) for k in SHAPE_KEYS) not in running), left[0])
        order.append(pick)
        left.remove(pick)
    return order

class LocalBackend(Backend):
    name = "local"
    cloud = False

    def check_options(self, opts: LaunchOptions) -> None:
        if opts.run_root.startswith("gs://"):
            raise LadderError("--run-root: the local backend writes run directories on this machine; pass a path")
        if opts.parallel < 1 or opts.processes < 1 or opts.max_attempts < 1:
            raise LadderError("--parallel, --processes and --max-attempts must be at least 1")
        if opts.devices and len(opts.devices) < opts.parallel:
            raise LadderError(f"--devices: {len(opts.devices)} devices cannot be split {opts.parallel} ways "
                              "(--parallel)")

    def device_groups(self, opts: LaunchOptions) -> list[str | None]:
        """Disjoint CUDA_VISIBLE_DEVICES values, one per parallel slot (None: leave the env alone)."""
        if not opts.devices:
            return [None] * opts.parallel
        per = len(opts.devices) // opts.parallel
        return [",".join(opts.devices[i * per:(i + 1) * per]) for i in range(opts.parallel)]

    def argvs(self, job: Job, opts: LaunchOptions, port: int | str | None) -> list[list[str]]:
        """One trainer argv per process of the rung."""
        plan = str(Path(job.plan_path or opts.plan_path).resolve())
        if opts.processes == 1:
            return [commands.train_argv(opts.python, plan, job)]
        return [commands.train_argv(opts.python, plan, job, (
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(opts.processes), "--process-id", str(i)))
            for i in range(opts.processes)]

    def launch(self, jobs: list[Job], opts: LaunchOptions, print_fn=print) -> int:
        groups = self.device_groups(opts)
        if opts.dry_run:
            for i, job in enumerate(jobs):
                env = groups[i % len(groups)]
                # The coordinator port is picked free at launch time; a dry run names it $PORT.
                for i, argv in enumerate(self.argvs(job, opts, port="$PORT" if opts.processes > 1 else None)):
                    prefix = f"CUDA_VISIBLE_DEVICES={env} " if env is not None else ""
                    print_fn(f"{prefix}{shlex.join(argv)}  # log: {job.run_dir}/{log_name(i)}")
            return 0
        from ladder.runlock import hold

        # One local launcher per run root: a second one would start a second trainer on every rung.
        owner = contextlib.ExitStack()
        owner.enter_context(hold(opts.run_root, "--run-root"))
        free: queue.Queue = queue.Queue()
        for g in groups:
            free.put(g)
        jobs = start_order(jobs, opts.parallel)
        threads = cpu_threads_for(opts)

        def run_one(job: Job) -> bool:
            group = free.get()
            try:
                return self.run_rung(job, opts, group, print_fn, threads)
            finally:
                free.put(group)

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=opts.parallel)
        try:
            with sigterm_raises_terminated():  # SIGTERM to the launcher stops it as Ctrl-C does
                ok = dict(zip((j.name for j in jobs), pool.map(run_one, jobs)))
        except BaseException:
            # Ctrl-C or SIGTERM: no new rungs or retries; running trainers get SIGTERM, save, and stop.
            _STOP.set()
            _terminate_live()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _STOP.clear()
            owner.close()
        failed = [n for n, good in ok.items() if not good]
        if failed:
            print_fn(f"# failed: {', '.join(failed)} (logs: launch.log in each run directory)")
            return 1
        print_fn(f"# {len(jobs)} rung(s) done")
        return 0

    def run_rung(self, job: Job, opts: LaunchOptions, devices: str | None, print_fn=print,
                 cpu_threads: int = 0) -> bool:
        """Run one rung to completion with retries; True when it finished."""
        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices
        if cpu_threads:  # a value the user set wins (0 or empty: XLA's default)
            env.setdefault(CPU_THREADS, str(cpu_threads))
        # One persistent XLA compilation cache per ladder: rungs of one size share their evaluation programs,
        # and a resumed or retried rung recompiles nothing (on 2 CPU cores compiling is ~1/3 of a small rung).
        # JAX keys entries by program, backend and version, so a stale entry is never used.
        cache = run_dir.parent / ".jax-cache"
        if cache.is_dir() or not cache.exists():
            env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        else:  # JAX would warn at every compile and cache nothing
            print_fn(f"# {cache} is not a directory: compiling without the shared cache (move it away to use one)")
        # glibc malloc tunables: a third less CPU per step on small CPU rungs, same numbers (ladder/malloc_tunables.py).
        env = with_tunables(env)
        wait_for_owner(run_dir, job.name, print_fn)
        codes: list[int] = []
        for attempt in range(1, opts.max_attempts + 1):
            if _STOP.is_set():
                return False
            print_fn(f"# {job.name}: attempt {attempt}/{opts.max_attempts}")
            rc = run_processes(self.argvs(job, opts, free_port() if opts.processes > 1 else None), run_dir, env,
                               attempt, opts.stall_minutes * 60)
            if rc == STALLED:
                print_fn(f"# {job.name}: no progress for {opts.stall_minutes:g} min: stopped as hung (--stall-minutes)")
            codes.append(rc)
            rundir.write_launch_record(run_dir, attempts=attempt, exit_codes=codes,
                                state="done" if rc == 0 else ("failed" if rc == BAD_INPUT or attempt == opts.max_attempts
                                                              else "retrying"))
            if rc == 0:
                print_fn(f"# {job.name}: done")
                return True
            if rc == BAD_INPUT:
                break
        print_fn(f"# {job.name}: failed after {len(codes)} attempt(s), exit codes {codes}; see {run_dir}/launch.log")
        return False


def cpu_threads_for(opts: LaunchOptions) -> int:
    """XLA CPU threads per trainer (0: XLA's default, one per core). One when the launch runs trainers side by
    side on the CPU (`parallel` > 1): the cores are shared out by the launcher's slots, and on the smoke ladder's
    small matrices one thread per step costs ~15% less CPU than two and trains the same bits on any core count
    (ladder/cpu_threads.py, docs/run.md "Threads"). It depends on `parallel` only, not on how many rungs are
    pending, so a rung trains the same bits whether it starts in a full launch or alone in a relaunch.
    Accelerator slots (--devices) are left alone."""
    return 1 if opts.parallel > 1 and not opts.devices else 0


def wait_for_owner(run_dir: Path, name: str, print_fn=print, poll_s: float = 2.0) -> None:
    """Wait while another process holds the rung's run directory: a trainer an earlier launch left running (a
    launcher killed with SIGKILL cannot stop its trainers, which run in their own sessions). Starting a second
    trainer there would exit 2 at its lock and the rung would be reported failed while it was in fact training."""
    from ladder.runlock import describe, live_holder

    holder = live_holder(run_dir)
    if holder is None:
        return
    print_fn(f"# {name}: its run directory is in use by {describe(holder)} (a trainer an earlier launch left "
             "running?); waiting for it to end")
    while live_holder(run_dir) is not None and not _STOP.wait(poll_s):
        pass


def last_progress(run_dir: Path, processes: int) -> float:
    """When the rung's trainers last wrote anything (a log line, a metrics row, a status update)."""
    times = [0.0]
    for name in (*PROGRESS_FILES, *(log_name(i) for i in range(processes))):
        with contextlib.suppress(OSError):
            times.append((run_dir / name).stat().st_mtime)
    return max(times)


def run_processes(argvs: list[list[str]], run_dir: Path, env: dict, attempt: int, stall_s: float = 0) -> int:
    """Start one process per argv (logs: launch.log for process 0, launch.<i>.log for the others) and wait.

    If one process fails the others are stopped: peers of a dead process would wait in a collective forever.
    So are all when none has written a log line, metrics row or status for `stall_s` seconds (0: never): a hung
    trainer (a peer stopped but not dead, a stuck filesystem) would otherwise hold its slot forever.
    Returns 0 when all succeed, STALLED for a hang, else the first non-zero exit code.
    """
    procs, logs = [], []
    for i, argv in enumerate(argvs):
        log = open(run_dir / log_name(i), "a")
        log.write(f"\n=== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(argv)}\n")
        log.flush()
        logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(proc)
        with _LIVE_LOCK:
            _LIVE.add(proc)
    rc = 0
    try:
        while any(p.poll() is None for p in procs):
            bad = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if not bad and stall_s and time.time() - last_progress(run_dir, len(procs)) > stall_s:
                logs[0].write(f"\n=== launcher: no log line, metrics row or status for {stall_s:.0f}s: stopping this "
                              "attempt as hung (SIGTERM, SIGKILL after 30s); --stall-minutes sets the limit\n")
                logs[0].flush()
                bad = [STALLED]
            if bad:
                rc = bad[0]
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
                for p in procs:
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                break
            time.sleep(0.2)
        if rc == 0:
            rc = next((p.returncode for p in procs if p.returncode != 0), 0)
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.difference_update(procs)
        for log in logs:
            log.close()
    return rc


# Trainer processes alive now, so an interrupt of the launcher can stop them instead of orphaning them (they
# run in their own sessions, so a terminal's Ctrl-C does not reach them).
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOP = threading.Event()


def _terminate_live(grace_s: float = 60.0) -> None:
    """SIGTERM every live trainer (each saves a checkpoint at its next step and exits), then SIGKILL stragglers."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


def log_name(process: int) -> str:
    return "launch.log" if process == 0 else f"launch.{process}.log"
