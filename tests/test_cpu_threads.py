"""One XLA CPU thread per trainer when the local launcher runs several at once (ladder/cpu_threads.py,
docs/run.md "Threads"): who gets it, that a user's value wins, and that a run keeps the count it started with.
What it does to CPU time and to the trained bits is measured by bench/bench_cpu_threads.py (timings stay out of
the suite)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from ladder import cpu_threads
from ladder.errors import LadderError
from ladder.launch import LaunchOptions, launch_plan
from ladder.launch.local import cpu_threads_for
from launch_fixtures import pin_choose_slice, tiny_plan, write_plan


def test_one_thread_only_when_several_trainers_share_the_cpu():
    assert cpu_threads_for(LaunchOptions("plan.json", "runs", parallel=2)) == 1
    assert cpu_threads_for(LaunchOptions("plan.json", "runs", parallel=1)) == 0
    assert cpu_threads_for(LaunchOptions("plan.json", "runs", parallel=2, devices=["0", "1"])) == 0


def test_the_count_a_run_started_with_wins_over_the_environment():
    env = {cpu_threads.SWITCH: "1"}
    assert cpu_threads.for_run(None, env) == 1
    assert cpu_threads.for_run({"config_hash": "x"}, env) == 1  # a config.json from before the record
    assert cpu_threads.for_run({cpu_threads.RECORD: 0}, env) == 0
    assert cpu_threads.for_run({cpu_threads.RECORD: 1}, {}) == 1
    assert cpu_threads.requested({cpu_threads.SWITCH: ""}) == 0
    with pytest.raises(LadderError, match="LADDER_XLA_CPU_THREADS='two': give a whole number"):
        cpu_threads.requested({cpu_threads.SWITCH: "two"})


@pytest.mark.parametrize("user, parallel, expected", [(None, 2, "1"), (None, 1, None), ("0", 2, "0")])
def test_launcher_gives_parallel_trainers_one_thread(tmp_path, monkeypatch, user, parallel, expected):
    pin_choose_slice(monkeypatch)
    monkeypatch.delenv(cpu_threads.SWITCH, raising=False) if user is None else \
        monkeypatch.setenv(cpu_threads.SWITCH, user)
    path = write_plan(tmp_path / "plan.json", tiny_plan())
    fake = tmp_path / "python"  # a "trainer" that records the environment it was started with
    fake.write_text(f"#!{sys.executable}\nimport os\nprint('threads', repr(os.environ.get('{cpu_threads.SWITCH}')))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert launch_plan(LaunchOptions(path, str(tmp_path / "runs"), python=str(fake), parallel=parallel),
                       lambda *_: None) == 0
    log = (tmp_path / "runs" / "20M-1xC" / "launch.log").read_text()
    assert f"threads {expected!r}" in log


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to hold the pools below them")
def test_the_cpu_client_gets_fewer_threads_and_the_affinity_comes_back():
    """Every thread's affinity, not the main thread's alone: the client's threads inherited the held core, and
    two one-thread trainers shared core 0 while core 1 idled."""
    code = ("import os; from ladder import cpu_threads; cpus = os.sched_getaffinity(0); "
            "n = cpu_threads.create_backend(cpu_threads.requested()); import jax, jax.numpy as jnp; "
            "jax.jit(lambda a: (a @ a).sum())(jnp.ones((256, 256))).block_until_ready(); "
            "tids = [int(t) for t in os.listdir('/proc/self/task')]; "
            "print(n, len(tids), all(os.sched_getaffinity(t) == cpus for t in tids))")
    counts = {}
    for value in ("0", "1"):
        env = dict(os.environ, JAX_PLATFORMS="cpu", **{cpu_threads.SWITCH: value})
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                             check=True).stdout.split()
        assert out[0] == value and out[2] == "True"
        counts[value] = int(out[1])
    assert counts["1"] < counts["0"]


def test_the_recorded_count_is_not_a_config_change():
    from ladder.train_config import config_changes, default_config, to_json

    saved = dict(json.loads(to_json(default_config())), **{cpu_threads.RECORD: 1})
    assert config_changes(saved, default_config()) == ""
