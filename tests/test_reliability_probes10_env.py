"""Session 10's hostile-environment and crash round: classes no earlier round tried. The process environment
(XLA_FLAGS XLA aborts on, libtpu's start-up noise on a CPU machine, LADDER_* switches read as a default without a
word, an unwritable HOME under the default cache, STORAGE_EMULATOR_HOST), the storage under a run (a loop of
symbolic links, a path too long for the files below it, a disk that cuts numpy's write short, a name a C locale
cannot hand to the C++ checkpoint writer), a console that closes under a trainer (`ladder train 2>&1 | head`, a
dropped terminal's SIGHUP), a system clock set forward under `ladder status`, a disk that fills mid-run and is
then given room, and a launcher killed with SIGKILL mid-launch. Each is one line naming the cause and the fix
(exit 2), or a save and a resume equal bit for bit to an uninterrupted run. Probes that passed as they were (run
dir and cache on two filesystems, read-only bound metrics.jsonl/status.json, TMPDIR unwritable, HOME unset, an
unwritable JAX compilation cache) are in the session's closing note; a space and non-ASCII letters in the run
directory's name ride along in the slow console test.

The tests that train or spawn (closed console, SIGHUP, full disk, killed launcher) are slow; the rest take
~2 CPU-s together (the console test imports JAX through ladder.metrics).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ladder import cli, storage
from ladder.errors import LadderError

PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1")
TINY = ["configs/tiny.py", "--config.model.d_model=32", "--config.model.n_layers=2", "--config.model.n_heads=2",
        "--config.model.seq_len=16", "--config.train.global_batch=4", "--config.optim.warmup_steps=2",
        "--config.train.keep_checkpoints=100"]


def _plan(capsys, tmp_path):
    """`ladder plan` (no JAX): every verb checks the environment before any work."""
    rc = cli.main(["plan", "--preset", "smoke", "-o", str(tmp_path / "p.json")])
    return rc, capsys.readouterr().err


# ------------------------------------------------------------------------------------------ environment


@pytest.mark.parametrize("name, value, message", [
    # was XLA's 90-line flag list and exit 1 at `import jax`
    ("XLA_FLAGS", "--xla_force_host_platform_device_count=abc", "--xla_force_host_platform_device_count='abc' is "
     "not a whole number >= 1"),
    ("XLA_FLAGS", "--xla_force_host_platform_device_count=0", "not a whole number >= 1"),  # was a RuntimeError
    ("XLA_FLAGS", "--xla_force_host_platform_device_count= 4", "=''"),  # split by a space: XLA's flag list
    ("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false junk", "'junk' is not a flag"),  # was skipped without a word
    ("XLA_FLAGS", "force devices please", "does not start with --, so XLA reads it as a file of flags"),  # F-line, 1
    ("LADDER_XLA_CPU_THREADS", "-3", "LADDER_XLA_CPU_THREADS='-3': give a whole number"),  # was XLA's default
    ("LADDER_XLA_CPU_THREADS", "2.5", "give a whole number"),
    ("LADDER_MALLOC_TUNABLES", "off", "LADDER_MALLOC_TUNABLES='off': give 0"),  # "off" read as on
])
def test_a_bad_environment_value_is_one_line_before_any_work(capsys, monkeypatch, tmp_path, name, value, message):
    monkeypatch.setenv(name, value)
    rc, err = _plan(capsys, tmp_path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err and name.split("_")[0] in err, err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("name, value", [
    ("XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_cpu_multi_thread_eigen=false"),
    ("XLA_FLAGS", "  "), ("XLA_FLAGS", "--xla_dump_to=/tmp/x --xla_some_future_flag"),  # unknown names: XLA's word
    ("LADDER_XLA_CPU_THREADS", "0"), ("LADDER_XLA_CPU_THREADS", " 2 "), ("LADDER_MALLOC_TUNABLES", "0"),
    ("LADDER_MALLOC_TUNABLES", "1"), ("LADDER_MALLOC_TUNABLES", ""),
])
def test_good_environment_values_still_pass(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    cli.check_environment()


def test_xla_flags_naming_a_file_of_flags_pass(monkeypatch, tmp_path):
    (tmp_path / "flags").write_text("--xla_force_host_platform_device_count=2\n")
    monkeypatch.setenv("XLA_FLAGS", str(tmp_path / "flags"))
    cli.check_environment()


def test_an_unwritable_default_cache_names_home_and_ladder_cache(monkeypatch, tmp_path):
    """HOME on a read-only mount, LADDER_CACHE unset: before, '<HOME>/.cache: Read-only file system; check that
    the path exists...' named neither variable that put the cache there."""
    monkeypatch.delenv("LADDER_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for where in (tmp_path / ".cache", tmp_path / ".cache" / "ladder" / "tokens" / "x"):
        line = cli.os_error_line(OSError(errno.EROFS, "Read-only file system", str(where)))
        assert line.startswith(f"the default cache {tmp_path}/.cache/ladder (LADDER_CACHE unset, HOME={tmp_path})")
        assert line.endswith("set LADDER_CACHE to a writable directory"), line
    other = cli.os_error_line(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out.csv")))
    assert "default cache" not in other  # a path the user gave is theirs to fix


# ------------------------------------------------------------------------------------------ storage


@pytest.fixture
def link_loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


def test_a_run_dir_in_a_loop_of_links_is_one_line(link_loop):
    """Before: `ladder train --run-dir LOOP` was a RuntimeError traceback from pathlib ("Symlink loop")."""
    from ladder import rundir, runlock

    for p in (link_loop, link_loop / "sub"):
        with pytest.raises(LadderError, match=f"--run-dir: {p} is a loop of symbolic links; remove the link"):
            rundir.check_run_dir(p)
    with pytest.raises(LadderError, match="cannot create the lock file"), runlock.hold(link_loop, "--run-dir"):
        pass


def test_a_loop_of_links_anywhere_is_one_line_from_the_cli(capsys, monkeypatch, link_loop):
    """The backstop for every other path Python 3.11 resolves (3.13 raises OSError ELOOP, already one line)."""
    from ladder.commands import status

    def resolving(args):  # what Path.resolve raises on Python 3.11
        raise RuntimeError(f"Symlink loop from {str(link_loop)!r}")

    monkeypatch.setattr(status, "run", resolving)
    rc = cli.main(["status", "plan.json"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"ladder status: error: '{link_loop}': a loop of symbolic links; remove the " \
                                      "link or give another path", err


def test_a_run_dir_too_long_for_the_files_below_it_is_refused_before_training(tmp_path):
    """A 4,027-byte --run-dir (20 components of 200) trained every step, then failed at its first checkpoint
    save ("storage: cannot write .../_sharding (Error reading local file"); now refused before any work."""
    from ladder import rundir

    deep = tmp_path.joinpath(*["c" * 200] * 20)
    with pytest.raises(LadderError, match=r"--run-dir: .*\.\.\. is [\d,]+ bytes long, .* choose a shorter path"):
        rundir.check_run_dir(deep)
    assert not tmp_path.joinpath("c" * 200).exists()
    rundir.check_run_dir(tmp_path.joinpath(*["c" * 200] * 5))  # 1,000 bytes: fine


def test_a_name_the_locale_cannot_hand_to_the_checkpoint_writer_is_refused_before_training(tmp_path):
    """Under LC_ALL=C with PYTHONCOERCECLOCALE=0 PYTHONUTF8=0, `--run-dir 'runs/ü'` reaches Python as lone
    surrogates: the run trained every step, then failed at its first save ("storage: cannot write ... Unable to
    cast Python instance of type <class 'str'> to C++ type"). Now refused before any work, and so is such a
    LADDER_CACHE."""
    from ladder import rundir

    bad = str(tmp_path / "loc \udcc3\udcbc")  # what os.fsdecode(b"loc \xc3\xbc") gives under an ASCII locale
    with pytest.raises(LadderError, match=r"--run-dir: .* is not the same name in UTF-8 .*export LC_ALL=C\.UTF-8"):
        rundir.check_run_dir(bad)
    with pytest.raises(LadderError, match="LADDER_CACHE: .* use an ASCII path"):
        cli.check_environment({"LADDER_CACHE": bad})  # as os.environ reads it under that locale
    rundir.check_run_dir(tmp_path / "run dir ü ☃")  # under this UTF-8 locale, the same bytes either way
    assert storage.native_path_problem("gs://my-bucket/ü") is None


def test_a_write_the_disk_cut_short_is_named_as_a_full_disk(tmp_path, monkeypatch):
    """numpy's tofile (under np.save) reports a full disk as a bare OSError('N requested and 0 written') with no
    errno: a token cache built onto a full LADDER_CACHE printed "[Errno None] None: '<entry>'"."""
    from ladder.data import packing
    from tests.test_reliability_writes import TEXTS, _Bytes

    def short(path, array):
        raise OSError(f"{array.nbytes} requested and 0 written")

    monkeypatch.setattr(packing.np, "save", short)
    entry = tmp_path / "tokens" / "entry"
    with pytest.raises(OSError) as e:
        packing.build_token_cache(TEXTS, _Bytes(), entry)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(entry), e.value
    assert "No space left on device" in cli.os_error_line(e.value) and "None" not in cli.os_error_line(e.value)
    assert [p.name for p in entry.parent.iterdir()] == []  # its temp directory removed
    named = storage.named_error(PermissionError(errno.EACCES, "Permission denied"), "/x/y")
    assert isinstance(named, PermissionError) and str(named) == "[Errno 13] Permission denied: '/x/y'"


# ------------------------------------------------------------------------------------------ console and clock


class _Closed:
    def __init__(self, error):
        self.error = error

    def isatty(self):
        return False

    def write(self, text):
        raise self.error

    def flush(self):
        pass


@pytest.mark.parametrize("error, signal_name", [(BrokenPipeError(errno.EPIPE, "Broken pipe"), "SIGPIPE"),
                                                (OSError(errno.EIO, "Input/output error"), "SIGHUP"),
                                                (ValueError("I/O operation on closed file."), "SIGHUP")])
def test_a_console_that_closes_asks_for_a_save_not_a_storage_failure(tmp_path, error, signal_name):
    """`ladder train 2>&1 | head -2` stopped the run as "storage: cannot write <run dir> (Broken pipe)", status
    failed, every step since the last checkpoint lost. The progress display now drops the console and names
    the signal its loss stands for; the trainer saves and stops on it (the slow test below)."""
    pytest.importorskip("tensorboardX")
    from ladder.metrics import MetricsWriter

    writer = MetricsWriter(tmp_path, total_steps=4, stream=_Closed(error))
    row = {"step": 1, "loss": 5.0, "tokens": 64, "time": 0.0, "tokens_per_s": None, "mfu": None}
    writer.write(row, None)
    writer.write(dict(row, step=2), None)
    writer.close()
    assert writer.console_lost == signal_name
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_stop_asked_by_a_lost_console_is_a_preemption():
    from ladder.preemption import Preemption

    p = Preemption()
    try:
        assert signal.SIGHUP in p.SIGNALS and not p.requested()
        p.request("SIGPIPE")
        p.request("SIGHUP")  # the first cause is the one reported
        assert p.requested() and p.reached(3) and p.signal_name == "SIGPIPE"
    finally:
        p.restore()


def test_a_live_trainer_is_never_called_stale_whatever_the_clock_says(tmp_path):
    """status.json updated an hour 'ago' (the clock set forward, or a step longer than STALE_S) while the
    trainer holds the run's lock: before, "no update for 1.0h: stopped or preempted? relaunch to resume"."""
    from ladder.launch.status import STALE_S, rung_status
    from tests.test_reliability_rundir import _holder

    run = tmp_path / "rung"
    rung = {"name": "r", "total_steps": 10, "flops_per_token": 1.0, "flops": 10.0}
    holder = _holder(run)
    try:
        (run / "status.json").write_text(json.dumps({"state": "running", "step": 3, "updated": time.time()}))
        later = rung_status(rung, str(run), now=time.time() + STALE_S + 3600)
        assert later.state == "running" and later.note == "", later
        earlier = rung_status(rung, str(run), now=time.time() - 3600)  # the clock set back: never a negative age
        assert earlier.note == "" and earlier.age_s < 0
    finally:
        holder.kill()
        holder.wait()
    gone = rung_status(rung, str(run), now=time.time() + STALE_S + 3600)
    assert "its trainer has ended without recording it" in gone.note  # a free lock still says so at once
    from ladder.launch.status import format_status  # noqa: F401 (the table prints max(0, age): "0s ago")
    from ladder.formats import format_duration

    assert format_duration(earlier.age_s) == "0s"


# ------------------------------------------------------------------------------------------ slow: train and kill


def _train(run_dir, *extra, stream=None, timeout=300):
    return subprocess.run([PY, "-m", "ladder", "train", *TINY, "--run-dir", str(run_dir), *extra], env=ENV,
                          stdout=stream or subprocess.PIPE, stderr=subprocess.STDOUT if stream is None else stream,
                          text=True, timeout=timeout)


def _rows(run_dir) -> dict:
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in map(json.loads, (Path(run_dir) / "metrics.jsonl")
                                                                  .read_text().splitlines())}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_closed_console_and_a_hang_up_save_and_the_resume_is_bitwise(tmp_path):
    """The whole class end to end, in a run directory whose name has a space and non-ASCII letters: the
    trainer's console closed by `| head -2` (exit 141) or its terminal hung up (SIGHUP, exit 129) saves the
    step and records "preempted"; the resume ends equal, row for row, to an uninterrupted run."""
    steps = ["--config.train.total_steps=40", "--config.train.checkpoint_every=20", "--config.train.log_every=1"]
    reference = _train(tmp_path / "reference", *steps)
    assert reference.returncode == 0, reference.stdout[-2000:]
    for how, code in (("pipe", 141), ("hangup", 129)):
        run = tmp_path / f"run ü {how}"
        if how == "pipe":
            proc = subprocess.Popen([PY, "-m", "ladder", "train", *TINY, *steps, "--run-dir", str(run)], env=ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            [proc.stdout.readline() for _ in range(3)]  # `| head -3`
            proc.stdout.close()
        else:
            log = open(tmp_path / "hangup.log", "w")
            proc = subprocess.Popen([PY, "-m", "ladder", "train", *TINY, *steps, "--run-dir", str(run)], env=ENV,
                                    stdout=log, stderr=subprocess.STDOUT)
            while not (run / "metrics.jsonl").exists() or len(_rows(run)) < 3:
                time.sleep(0.1)
            proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=300) == code
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "preempted" and status["signal"] == ("SIGPIPE" if how == "pipe" else "SIGHUP")
        assert status["last_verified_step"] == status["step"] < 40  # saved where it stopped
        resumed = _train(run, *steps)
        assert resumed.returncode == 0, resumed.stdout[-2000:]
        assert _rows(run) == _rows(tmp_path / "reference")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_disk_that_fills_mid_run_and_is_given_room_resumes_bitwise(tmp_path):
    """A 4 MB tmpfs fills at a checkpoint save (test_reliability_rundir.py stops there); remounted larger, the
    same command resumes from the last verified step and ends equal, row for row, to an uninterrupted run."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    steps = ["--config.model.d_model=64", "--config.train.total_steps=40", "--config.train.checkpoint_every=5"]
    try:
        full = _train(mount / "run", *steps)
        assert full.returncode == 1 and "No space left on device" in full.stdout, full.stdout[-2000:]
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        resumed = _train(mount / "run", *steps)
        assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stdout[-2000:]
        reference = _train(tmp_path / "reference", *steps)
        assert reference.returncode == 0
        assert _rows(mount / "run") == _rows(tmp_path / "reference")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_launcher_killed_mid_launch_and_run_again_trains_nothing_twice(tmp_path):
    """`ladder launch` SIGKILLed while its first trainer is part way (its trainers live on in their own
    sessions); the same command again waits for that trainer, skips what is done, trains the rest, and every
    rung's rows equal an uninterrupted launch's, each step once."""
    from tests.launch_fixtures import tiny_plan, write_plan

    defaults = {"data.source": "synthetic", "train.log_every": 1, "train.checkpoint_every": 4,
                "train.async_checkpoints": False}
    plan = write_plan(tmp_path / "plan.json", tiny_plan(steps=40, defaults=defaults))
    env = dict(ENV, LADDER_XLA_CPU_THREADS="1")
    launch = [PY, "-m", "ladder", "launch", plan, "--parallel", "1", "--run-root"]
    assert subprocess.run(launch + [str(tmp_path / "reference")], env=env, capture_output=True,
                          timeout=300).returncode == 0
    proc = subprocess.Popen(launch + [str(tmp_path / "runs")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = tmp_path / "runs" / "60M-2xC"  # largest first
    while not (first / "metrics.jsonl").exists() or len(_rows(first)) < 10:
        assert proc.poll() is None
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    again = subprocess.run(launch + [str(tmp_path / "runs")], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    for rung in ("20M-1xC", "60M-2xC"):
        lines = (tmp_path / "runs" / rung / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines]
        assert steps == sorted(set(steps))  # nothing logged twice
        assert _rows(tmp_path / "runs" / rung) == {s: r for s, r in _rows(tmp_path / "reference" / rung).items()
                                                    if s in steps}
        assert json.loads((tmp_path / "runs" / rung / "status.json").read_text())["state"] == "done"


def test_an_unreachable_emulator_names_storage_emulator_host(monkeypatch):
    """STORAGE_EMULATOR_HOST=notaurl (or an emulator not started): before, "Cloud Storage cannot be reached ...;
    check the network and the credentials", which sent the user to gcloud auth."""
    import socket

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "notaurl")
    line = cli.os_error_line(socket.gaierror(-2, "Name or service not known"))
    assert line == ("STORAGE_EMULATOR_HOST=notaurl: the Cloud Storage emulator cannot be reached (Name or service "
                    "not known); start it there, or unset STORAGE_EMULATOR_HOST for Cloud Storage")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert cli.os_error_line(socket.gaierror(-2, "x")).startswith("Cloud Storage cannot be reached (x); check the")


def test_libtpu_start_up_lines_are_dropped_only_where_no_tpu_is_attached(monkeypatch):
    """A CPU machine with the [tpu] extra (for `ladder compile`) and JAX_PLATFORMS unset: every `ladder train`
    began with libtpu's 5 C++ lines ("could not determine TPU accelerator type", TPU_WORKER_HOSTNAMES, a source
    trace). Backends now start inside native_stderr_quiet there (replayed if the start fails); with TPU chips
    attached, or JAX_PLATFORMS set, nothing is hidden."""
    import contextlib
    import glob
    import importlib.util

    from ladder import cpu_threads

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "libtpu" else None)
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    assert not isinstance(cpu_threads.quiet_start({}), contextlib.nullcontext)
    assert isinstance(cpu_threads.quiet_start({"JAX_PLATFORMS": "cpu"}), contextlib.nullcontext)
    monkeypatch.setattr(glob, "glob", lambda pattern: ["/dev/vfio/0"] if pattern.startswith("/dev/vfio") else [])
    assert isinstance(cpu_threads.quiet_start({}), contextlib.nullcontext)
