"""Keep the fits' freed memory in the process instead of handing it back to the kernel after every array.

The bootstrap's solvers allocate and free arrays of a few MB on every iteration (a [1000, 1350] sigmoid, an
[8000, 20, 7] Jacobian). glibc serves those by mmap, or grows and trims the heap around them, so each
iteration's arrays are fresh pages the kernel must zero and map: on the OLMo default that was ~140,000 page
faults and 1.3-1.7 of ~18 CPU-s of system time in the bootstrap alone. With mmap only for blocks over 64 MB
and the heap trimmed only past 512 MB free, the same arrays reuse the same pages (~35,000 faults, 0.4-0.7
CPU-s of system time; the numbers identical as bytes: bench/bench_fit.py, docs/laws.md "Speed").

Both thresholds must be set together: setting either one alone turns off glibc's adaptive mmap threshold, and
then every large array is mmapped (1.1 M faults measured). The cost is resident memory: what the fits freed
(up to 512 MB) stays with the process until it exits. glibc only; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's malloc.h
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 512 << 20
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds once per process (forked fit workers inherit them). Returns whether
    they are set (False off glibc, or where mallopt refuses)."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, 64 << 20)))
    return _done
