"""How many worker threads XLA's CPU client gets in a trainer: one per trainer when the local launcher runs
several trainers side by side on the CPU.

XLA:CPU sizes its thread pools (the intra-op Eigen pool, the thunk executor's workers) from the cores this
process may run on when the client is created; jax 0.10.2 has no flag for it (`XLA_FLAGS` has no thread-count
option; `--xla_cpu_multi_thread_eigen=false` leaves the pools as they are and gained nothing, docs/run.md).
So the client is created while the process's CPU affinity is held to `n` cores, and the affinity is put back
at once: the pools keep `n` threads, and the operating system still moves them to whichever core is free.

Why one: on the smoke ladder's small matrices (32-96 wide) two threads per step spend more on handing work
over and waking each other than they save (one thread: -16% user time per 160k step, bench/bench_cpu_threads.py);
the launcher already keeps both cores busy with two single-rung trainers. And the trained bits depend on the
thread count (reductions are split by it: weights differ by ~1e-9 after 42 steps), so a fixed count makes a
rung's numbers the same whatever the core count (not across CPU models: docs/run.md, "Time").

LADDER_XLA_CPU_THREADS=N sets it (the local launcher sets 1 for its trainers when `launch.parallel` > 1;
a value the user set wins, 0 or empty leaves XLA's default). A run keeps the count it started with: the trainer
records it in config.json (`xla_cpu_threads`, outside the config hash) and a resume uses that, whatever the
environment says, so a rung stopped under one launch and resumed under another trains the bits an
uninterrupted run would. Nothing happens when JAX_PLATFORMS keeps the process off the CPU, or when the
backend was already created (then it is too late).
"""

from __future__ import annotations

import contextlib
import os
import sys

SWITCH = "LADDER_XLA_CPU_THREADS"
RECORD = "xla_cpu_threads"  # the key in a run's config.json


def requested(env=os.environ) -> int:
    """The thread count asked for in `env` (0: XLA's default)."""
    value = env.get(SWITCH, "").strip()
    if not value:
        return 0
    if not value.isdigit():  # "abc", "-3" (was XLA's default without a word), "2.5"
        from ladder.errors import LadderError

        raise LadderError(f"{SWITCH}={value!r}: give a whole number of threads (1 = one per trainer, 0 = "
                          "XLA's default)") from None
    return int(value)


def on_cpu(env=os.environ) -> bool:
    platforms = [p.strip() for p in env.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    return not platforms or "cpu" in platforms


def for_run(saved: dict | None, env=os.environ) -> int:
    """The count a run trains with: the one its config.json recorded at its first start, else the env's."""
    if saved and isinstance(saved.get(RECORD), int) and saved[RECORD] >= 0:
        return saved[RECORD]
    return requested(env)


@contextlib.contextmanager
def native_stderr_quiet():
    """libtpu's start-up writes warnings to file descriptor 2 from C++ when it loads off a TPU VM ("could not
    determine TPU accelerator type", an INVALID_ARGUMENT about TPU_WORKER_HOSTNAMES, 5 lines): harmless for
    compile-only devices and on a CPU machine with the [tpu] extra installed, and no env var silences them
    (TPU_STDERR_LOG_LEVEL, TPU_MIN_LOG_LEVEL, TF_CPP_MIN_LOG_LEVEL tried, libtpu 0.0.51). So fd 2 goes to a
    temporary file meanwhile; if the block fails, what was written is replayed on stderr for the diagnosis."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_start(env=os.environ):
    """The context JAX's backends start in: native_stderr_quiet where libtpu is installed, no TPU is attached
    (no /dev/accel*, no /dev/vfio/N) and JAX_PLATFORMS leaves JAX to try it, so `ladder train` on a CPU machine
    with the [tpu] extra began with libtpu's 5 lines of C++ warnings; elsewhere nothing changes."""
    import glob
    import importlib.util

    quiet = (not env.get("JAX_PLATFORMS", "").strip() and importlib.util.find_spec("libtpu") is not None
             and not glob.glob("/dev/accel*") and not glob.glob("/dev/vfio/[0-9]*"))
    return native_stderr_quiet() if quiet else contextlib.nullcontext()


def create_backend(n: int, env=os.environ) -> int:
    """Create JAX's backends now, with the CPU client's pools sized to `n` threads (0: XLA's default, left
    alone); returns the count applied. Call before anything else touches the backend, after
    jax.distributed.initialize (which must come first)."""
    if not n or not on_cpu(env) or not hasattr(os, "sched_setaffinity"):
        return 0
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return 0
    cpus = os.sched_getaffinity(0)
    if n >= len(cpus):  # XLA's default is already that many (its pools have one thread per core)
        return n
    os.sched_setaffinity(0, set(sorted(cpus)[:n]))
    try:
        with quiet_start(env):
            jax.devices()
    finally:
        _restore_affinity(cpus)
    return n


def _restore_affinity(cpus) -> None:
    """Give every thread of this process `cpus` again. sched_setaffinity(0) sets the calling thread alone, and
    the threads the client started meanwhile inherited the held core: until session 10 every XLA worker of every
    trainer stayed pinned to core 0, two trainers shared one core and the other idled (the main job ran at ~50%
    of 2 cores). Affinity moves no bits: the pools' thread count, fixed at creation, is what the results
    depend on."""
    tasks = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)
