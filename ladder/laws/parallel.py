"""Independent fitting jobs (one per task, one per bootstrap refit) on several cores.

The fits are numpy on small arrays, single-threaded (OPENBLAS_NUM_THREADS=1 is what they want), so the only
way to use a second core is a second process. Each job is a pure function of its arguments and the shared
`state` (the results table), so the results equal a serial run's bit for bit and the order is kept.
Processes are forked (state inherited, nothing re-imported) and only when JAX is not loaded: forking a
process that holds JAX's threads can deadlock, so `ladder run`'s self-check fits serially.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import numpy as np

from ladder.errors import LadderError

_STATE: dict = {}


def default_workers(environ=None) -> int:
    """LADDER_FIT_WORKERS if set, else the cores this process may use. A bad value is an error, from the CLI
    and a notebook alike, not a fallback nobody sees. Empty counts as unset."""
    env = (os.environ if environ is None else environ).get("LADDER_FIT_WORKERS", "").strip()
    if env:
        if not (env.isdigit() and int(env) >= 1):
            raise LadderError(f"LADDER_FIT_WORKERS: {env!r} is not a whole number >= 1; set e.g. 2, or unset it "
                              "to use the cores available")
        return int(env)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def task_chunks(tasks, workers: int | None = None) -> list[tuple[tuple, ...]]:
    """`tasks` cut into one contiguous chunk per worker (jobs for map_jobs: each job a tuple of tasks), so
    that the fits of a chunk's tasks share their batched descents (ladder.laws.backtest.fit_methods_tasks)
    while the chunks still spread over the cores. A task's fits do not depend on its chunk (tested)."""
    tasks = list(tasks)
    n = max(1, min(workers or default_workers(), len(tasks)))
    return [(tuple(c),) for c in np.array_split(np.array(tasks, dtype=object), n) if len(c)]


def _run(fn: Callable, job: tuple):
    return fn(_STATE, *job)


def map_jobs(fn: Callable, jobs: list[tuple], state: dict | None = None, workers: int | None = None) -> list:
    """[fn(state, *job) for job in jobs], spread over up to `workers` forked processes (default
    `default_workers()`); serial for one job, one worker, or when JAX is loaded. fn must be a module-level
    function (it is pickled by name)."""
    state = state or {}
    n = min(workers or default_workers(), len(jobs))
    if n <= 1 or "jax" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(state, *job) for job in jobs]
    _STATE.clear()
    _STATE.update(state)  # inherited by the forked workers: the table is never pickled
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run, [fn] * len(jobs), jobs))
    finally:
        _STATE.clear()
