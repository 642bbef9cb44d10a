"""glibc malloc tunables for trainer processes: a third of a small CPU rung's CPU time was the kernel's.

XLA:CPU allocates and frees each step's buffers with malloc. By default glibc serves blocks over its dynamic
mmap threshold with fresh mmaps and returns freed heap tops to the kernel, so every step maps, zero-fills
(one minor page fault per 4 KiB page) and unmaps the same memory again: the 160k smoke rung took 38,000 page
faults and 110 ms of system time per 190 ms step. With the tunables below (huge pages for malloc's memory where
THP is in `madvise` mode, no trimming below 1 GB, the mmap threshold at its 32 MiB maximum) it takes ~550 faults
and ~35 ms (docs/run.md, "Where a trainer's CPU time goes"; bench/bench_step_overhead.py). Only where malloc
puts memory changes, never what is computed: losses are equal bit for bit.

glibc reads GLIBC_TUNABLES once, when a process starts, so the launcher puts them in its trainers' environment
and `ladder train` / `ladder eval` started from a shell re-execute themselves once with them. A value the user
set for any tunable wins over ours; LADDER_MALLOC_TUNABLES=0 turns all of this off, and a process that JAX_PLATFORMS
keeps off the CPU (a Cloud TPU worker) is left alone. Other C libraries (musl, macOS) ignore the variable.

A process already running cannot get the tunables, but it can set the two thresholds with mallopt
(`keep_freed_memory`): `ladder predict` does, because its bootstrap solvers allocate and free arrays of a few MB
on every iteration (~140,000 page faults and 1.3-1.7 of ~18 CPU-s of system time on the OLMo default; with the
thresholds 35,000 and 0.4-0.7, every number identical as bytes: docs/laws-history.md "Speed", session 8).
Both must be set together: either alone turns off glibc's adaptive mmap threshold and then every large array is
mmapped (1.1 M faults measured). The cost is resident memory: up to 512 MB the fits freed stays with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

_H = "glibc.malloc."
LADDER_TUNABLES = f"{_H}hugetlb=1:{_H}trim_threshold=1000000000:{_H}mmap_threshold=33554432"
SWITCH = "LADDER_MALLOC_TUNABLES"  # "0": leave GLIBC_TUNABLES alone
_REEXECED = "LADDER_MALLOC_TUNABLES_REEXEC"  # set across our one re-exec, so it can never loop


def _pairs(value: str | None) -> list[tuple[str, str]]:
    return [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in (value or "").split(":") if p]


def merged(user: str | None) -> str:
    """GLIBC_TUNABLES with ours added: the user's entries first and unchanged, ours only for names they lack."""
    have = {name for name, _ in _pairs(user)}
    extra = [f"{name}={v}" for name, v in _pairs(LADDER_TUNABLES) if name not in have]
    return ":".join(filter(None, [user or "", *extra]))


def enabled(env=os.environ) -> bool:
    """On glibc Linux, unless turned off or JAX is told to use only accelerators (JAX_PLATFORMS=tpu, as the
    Cloud TPU workers set it): there the step's buffers live in device memory and the tunables were never
    measured (docs/cloud-tpu.md)."""
    platforms = [p.strip() for p in env.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    return (env.get(SWITCH, "1") != "0" and (not platforms or "cpu" in platforms)
            and sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def check_switch(env=os.environ) -> None:
    """LADDER_MALLOC_TUNABLES is 0 (off) or 1 (on, the default); another value ("off", "false") read as on
    without a word. Empty counts as unset."""
    value = env.get(SWITCH, "").strip()
    if value not in ("", "0", "1"):
        from ladder.errors import LadderError

        raise LadderError(f"{SWITCH}={value!r}: give 0 to leave GLIBC_TUNABLES alone or 1 (the default), or unset it")


def with_tunables(env: dict) -> dict:
    """`env` (a child process's environment) with the tunables merged into GLIBC_TUNABLES, unless turned off."""
    if enabled(env):
        env = dict(env)
        env["GLIBC_TUNABLES"] = merged(env.get("GLIBC_TUNABLES"))
    return env


def reexec_with_tunables() -> None:
    """Replace this process by the same command line with the tunables in its environment, once, when they are
    missing: call at the very start of a command that trains or evaluates, before JAX loads."""
    if not enabled() or os.environ.get(_REEXECED) or merged(os.environ.get("GLIBC_TUNABLES")) == \
            os.environ.get("GLIBC_TUNABLES"):
        return
    env = with_tunables(dict(os.environ))
    env[_REEXECED] = "1"
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:  # cannot re-execute (an unusual interpreter): run on without the tunables
        return


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's malloc.h
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 512 << 20
_kept = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds in this process, once (forked fit workers inherit them). Returns
    whether they are set (False off glibc, or where mallopt refuses)."""
    global _kept
    if _kept or not sys.platform.startswith("linux"):
        return _kept
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, 64 << 20)))
    return _kept
