"""What a trainer pays besides its steps: glibc malloc tunables reach every trainer (the launcher's children and
`ladder train` started from a shell), merged with (never overriding) a user's GLIBC_TUNABLES, off with
LADDER_MALLOC_TUNABLES=0; the CPU matmul peak is measured once per machine.

That the tunables leave the numbers unchanged (losses equal bit for bit) is checked by
bench/bench_step_overhead.py on every run: a trainer in a subprocess twice is too slow for the suite."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from ladder.launch import LaunchOptions, launch_plan
from ladder.malloc_tunables import LADDER_TUNABLES, merged, with_tunables
from launch_fixtures import pin_choose_slice, tiny_plan, write_plan

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                           reason="glibc only")


def test_merge_keeps_the_users_values_and_adds_only_what_they_lack():
    assert merged(None) == merged("") == LADDER_TUNABLES
    user = "glibc.malloc.hugetlb=0:glibc.pthread.rseq=0"
    assert merged(user) == (f"{user}:glibc.malloc.trim_threshold=1000000000:glibc.malloc.mmap_threshold=33554432")
    assert merged(merged(user)) == merged(user)  # idempotent: a child of a child adds nothing


@glibc
def test_switch_turns_it_off():
    assert "GLIBC_TUNABLES" not in with_tunables({"LADDER_MALLOC_TUNABLES": "0"})
    assert "GLIBC_TUNABLES" not in with_tunables({"JAX_PLATFORMS": "tpu"})  # a Cloud TPU worker: not measured there
    assert with_tunables({"JAX_PLATFORMS": "cpu"})["GLIBC_TUNABLES"] == LADDER_TUNABLES
    assert with_tunables({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"})["GLIBC_TUNABLES"] == \
        merged("glibc.malloc.arena_max=1")


@glibc
@pytest.mark.parametrize("user, switch", [(None, None), ("glibc.malloc.mmap_threshold=65536", None), (None, "0")])
def test_launcher_gives_its_trainers_the_tunables(tmp_path, monkeypatch, user, switch):
    pin_choose_slice(monkeypatch)
    for name, value in (("GLIBC_TUNABLES", user), ("LADDER_MALLOC_TUNABLES", switch)):
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
    path = write_plan(tmp_path / "plan.json", tiny_plan())
    fake = tmp_path / "python"  # a "trainer" that records the environment it was started with
    fake.write_text(f"#!{sys.executable}\nimport os\nprint('tunables', repr(os.environ.get('GLIBC_TUNABLES')))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert launch_plan(LaunchOptions(path, str(tmp_path / "runs"), python=str(fake), rungs=["20M-1xC"]),
                       lambda *_: None) == 0
    log = (tmp_path / "runs" / "20M-1xC" / "launch.log").read_text()
    assert f"tunables {(user if switch == '0' else merged(user))!r}" in log


@glibc
@pytest.mark.parametrize("user, switch", [(None, None), ("glibc.malloc.hugetlb=0", None), (None, "0")])
def test_a_command_started_from_a_shell_reexecutes_once_with_them(user, switch):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LADDER_MALLOC_TUNABLES")}
    env.update({k: v for k, v in (("GLIBC_TUNABLES", user), ("LADDER_MALLOC_TUNABLES", switch)) if v is not None})
    code = ("import os; print('start', flush=True); from ladder.malloc_tunables import reexec_with_tunables; "
            "reexec_with_tunables(); print(os.environ.get('GLIBC_TUNABLES'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    if switch == "0":
        assert out == ["start", str(user)]
    else:  # started twice (the re-exec), then ran on with the merged value; never a third time
        assert out == ["start", "start", merged(user)]


def test_cpu_peak_is_measured_once_per_machine(tmp_path, monkeypatch):
    """The trainer's MFU denominator on CPU: the matmul probe runs once, later trainers read the cache."""
    from ladder import metrics

    monkeypatch.setenv("LADDER_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(metrics, "measure_matmul_peak", lambda: calls.append(1) or 1.5e11)
    assert metrics._cpu_peak.__wrapped__() == 1.5e11 and calls == [1]
    assert metrics._cpu_peak.__wrapped__() == 1.5e11 and calls == [1]  # from cpu-peak.json
    (tmp_path / "cpu-peak.json").write_text("not json")
    assert metrics._cpu_peak.__wrapped__() == 1.5e11 and calls == [1, 1]  # a torn cache is measured again
    monkeypatch.setattr(metrics, "PEAK_TTL_S", -1)
    assert metrics._cpu_peak.__wrapped__() == 1.5e11 and calls == [1, 1, 1]  # and one older than a day
