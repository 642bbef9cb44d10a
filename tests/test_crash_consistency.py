"""Crash consistency: processes killed with SIGKILL (no handler runs) at chosen points, driven deterministically
(a patched function kills its own process at that moment), and what the next invocation finds.

Covered elsewhere: the atomic writer (test_reliability_writes.py), a torn metrics/results row and stale run
locks (test_reliability_rundir.py, test_reliability_run.py), a kill during an evaluation (test_train.py), a
killed rung relaunched (test_launch_local.py), a killed tokenize (test_token_store.py). Here: the moments
around a checkpoint save, the TensorBoard and gs:// metrics buffers, and a killed tfds build.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENV = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1")


def _child(code: str, *args, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env or ENV)


def tb_events(tb_dir: Path):
    """(file name, [events]) of every event file, read as TensorBoard does (a torn last record is skipped)."""
    from tensorboardX.proto import event_pb2

    out = []
    for f in sorted(tb_dir.iterdir()):
        data, i, events = f.read_bytes(), 0, []
        while i + 12 <= len(data):
            n = struct.unpack("<Q", data[i:i + 8])[0]
            if i + 16 + n > len(data):
                break
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12:i + 12 + n])
            events.append(event)
            i += 16 + n
        out.append((f.name, events))
    return out


def loss_steps(events) -> list[int]:
    return [e.step for e in events if e.summary.value and e.summary.value[0].tag == "train/loss"]


WRITER = """
    import os, signal, sys
    from ladder import metrics, storage
    run_dir, remote = sys.argv[1], sys.argv[2] == "remote"
    if remote:  # an object store: no append, metrics.jsonl rewritten whole (exercised on a local path)
        storage.is_remote = lambda path: True
    writer = metrics.MetricsWriter(run_dir, total_steps=99, stream=open(os.devnull, "w"))
    for step in range(1, 8):
        writer.write(dict(step=step, tokens=step * 64, loss=5.0 - step / 10, z_loss=0.0, grad_norm=1.0, lr=1e-3,
                          tokens_per_s=None, mfu=None, time=0.0), None)
    writer.flush()  # what the trainer does before saving the checkpoint of step 7
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("where", ["local", "remote"])
def test_rows_flushed_before_a_save_survive_a_kill(tmp_path, where):
    """Before: a run killed after its step-7 checkpoint resumed at step 8, but tensorboardX still held the
    rows up to 7 in its queue (flushed every 120 s) and on gs:// metrics.jsonl is rewritten only every 30 s:
    those rows were lost for good. Now the trainer flushes both before each save."""
    killed = _child(WRITER, tmp_path, where)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (name, events), = tb_events(tmp_path / "tb")
    assert loss_steps(events) == list(range(1, 8))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 8))


def test_a_resumed_writer_hides_the_dead_runs_later_steps_in_tensorboard(tmp_path):
    """A run resumed from the checkpoint at step 10 logs 11, 12... again beside the dead run's event file,
    which may hold them too (two values per step in TensorBoard). Now the new file opens with a session
    start at step 11: TensorBoard drops the earlier files' steps >= 11 (tensorboardX's purge_step)."""
    from ladder import metrics

    for name in ("fresh", "resumed"):
        (tmp_path / name).mkdir()
    metrics.MetricsWriter(tmp_path / "fresh", total_steps=30, stream=open(os.devnull, "w")).close()
    metrics.MetricsWriter(tmp_path / "resumed", total_steps=30, stream=open(os.devnull, "w"), start=10).close()
    (_, first), = tb_events(tmp_path / "fresh" / "tb")
    (_, resumed), = tb_events(tmp_path / "resumed" / "tb")
    assert not [e for e in first if e.HasField("session_log")]
    starts = [e.step for e in resumed if e.HasField("session_log")]
    assert starts == [11]


BUILD = """
    import os, signal, sys
    from ladder.data import tfds_builder as tb
    files, data_dir = sys.argv[1:3]
    documents = tb.LadderFiles._documents
    def dying(self):  # dies after a few documents: tfds is writing its incomplete.* directory
        for i, doc in enumerate(documents(self)):
            if i == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            yield doc
    tb.LadderFiles._documents = dying
    tb.prepared(tb.files_builder(files, data_dir, name="probe"))
"""


def test_a_killed_dataset_build_is_rebuilt_whole_and_its_leftovers_removed(tmp_path):
    """Before: tfds's incomplete.<random>_<version> directory of a killed build stayed forever (a dataset's
    worth of disk per kill; the rebuild itself was right). Now the next build, under the build lock where no
    other build of that version can run, removes it first."""
    from ladder.data import tfds_builder as tb

    files = tmp_path / "files"
    files.mkdir()
    texts = [f"document {i} " + "word " * (i + 3) for i in range(12)]
    for i, text in enumerate(texts):
        (files / f"d{i}.txt").write_text(text)
    killed = _child(BUILD, files, tmp_path / "tfds")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list((tmp_path / "tfds").glob("**/incomplete.*")), "the kill came before tfds began writing"
    builder = tb.prepared(tb.files_builder(str(files), tmp_path / "tfds", name="probe"))
    assert not list((tmp_path / "tfds").glob("**/incomplete.*"))
    assert tb.build_problem(Path(builder.data_dir)) == ""
    reference = tb.prepared(tb.files_builder(str(files), tmp_path / "reference", name="probe"))
    for split_name in ("train", "validation", "test"):
        got, want = (tb.read_split(b, split_name) for b in (builder, reference))
        assert sorted(got[i]["text"] for i in range(len(got))) == sorted(want[i]["text"] for i in range(len(want)))


def _rows(step, loss=1.0, run="r"):
    return [{"run": run, "n": 1e6, "d": 2e7, "step": step, "task": t, "loss": loss, "acc": 0.5} for t in ("a", "b")]


KILLED_EDIT = """
    import os, signal, sys
    from ladder import results
    real_replace = os.replace
    def dying(src, dst):  # inside the edit lock: the new table whole in its temp file, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = dying
    results.append_rows(sys.argv[1], [{"run": "killed", "n": 1e6, "d": 2e7, "step": 9, "task": "a", "loss": 1.0,
                                       "acc": 0.5}])
"""


@pytest.mark.timeout(60)
def test_an_edit_killed_inside_the_lock_leaves_the_old_table_and_no_lock(tmp_path):
    """A `ladder eval` killed while it held the table's edit lock, its new table written but not renamed: the
    table is the old one, whole, and the next writer neither waits (flock dies with its holder) nor reads the
    dead writer's temp file."""
    from ladder import results

    table = tmp_path / "results.csv"
    results.append_rows(table, _rows(10))
    before = table.read_bytes()
    killed = _child(KILLED_EDIT, table)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert table.read_bytes() == before and list(tmp_path.glob(".tmp-results.csv-*"))
    results.append_rows(table, _rows(20))  # would hang here on a stale lock (the test's timeout ends it)
    assert results.read_table(table)["step"].tolist() == [10, 10, 20, 20]


def test_an_evaluation_run_again_replaces_its_rows_instead_of_duplicating_them(tmp_path):
    """Before: `ladder eval` killed after its rows landed (the user cannot tell when) and run again appended
    them a second time, and every later read refused the table ("rows repeat a (run, step, task)"). Now the
    rows of the same (run, step, task) are replaced; other rows stay as they were."""
    from ladder import results

    table = tmp_path / "results.csv"
    assert results.append_rows(table, _rows(10) + _rows(10, run="other")) == 0
    assert results.append_rows(table, _rows(20)) == 0
    assert results.append_rows(table, _rows(10, loss=2.0)) == 2  # the step-10 evaluation of run r, again
    t = results.read_table(table)  # validates: each (run, step, task) once
    assert sorted(zip(t["run"], t["step"], t["task"], t["loss"])) == [
        ("other", 10, "a", 1.0), ("other", 10, "b", 1.0), ("r", 10, "a", 2.0), ("r", 10, "b", 2.0),
        ("r", 20, "a", 1.0), ("r", 20, "b", 1.0)]


def test_status_says_at_once_when_a_running_rungs_trainer_was_killed(tmp_path):
    """Before: a trainer killed with SIGKILL left status.json "running", and `ladder status` showed it running,
    with no note for 15 minutes (STALE_S). Now a local run directory whose lock no process holds is named a
    killed run at once; one whose trainer holds the lock is left alone."""
    import time

    from ladder import runlock, storage
    from ladder.launch.status import rung_status

    rung = {"name": "r", "total_steps": 30, "flops_per_token": 1.0, "flops": 1.0}
    run_dir = tmp_path / "r"
    with runlock.hold(run_dir, "--run-dir"):  # what a trainer holds while it trains
        storage.write_json(run_dir / "status.json", {"state": "running", "step": 12, "updated": time.time()})
        assert rung_status(rung, str(run_dir)).note == ""
        # The lock file a SIGKILLed trainer leaves: its holder's record, no flock (the kernel dropped it).
        dead = (run_dir / "lock.json").read_text()
    (run_dir / "lock.json").write_text(dead)
    row = rung_status(rung, str(run_dir))
    assert row.state == "running" and row.note.startswith("its trainer has ended without recording it"), row
    assert rung_status(rung, str(tmp_path / "never-started")).note == ""


# A tiny run (checkpoints every 10 steps) that SIGKILLs itself at a moment of the step-20 save, or runs to the
# end ("none"): "rename" as orbax is about to rename the step's temporary directory into place (the step
# written, not committed), "seal" once orbax has committed it and before ladder writes its checksums.
TRAIN = """
    import os, signal, sys
    from orbax.checkpoint._src.path import atomicity
    from ladder import checkpoint
    from ladder.train import train
    from tests.test_train import tiny_config
    run_dir, point = sys.argv[1:3]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    rename, write_manifest = atomicity.async_path.rename, checkpoint.write_manifest
    async def dying_rename(src, dst, *a, **k):
        if point == "rename" and os.path.basename(str(dst)) == "20":
            die()
        return await rename(src, dst, *a, **k)
    def dying_write_manifest(step_dir):
        if point == "seal" and os.path.basename(str(step_dir)) == "20":
            die()
        return write_manifest(step_dir)
    atomicity.async_path.rename, checkpoint.write_manifest = dying_rename, dying_write_manifest
    train(tiny_config(total_steps=30, checkpoint_every=10), run_dir)
"""


@pytest.mark.slow
def test_kills_inside_a_checkpoint_save_resume_to_the_uninterrupted_run(tmp_path):
    """One run killed twice inside its step-20 save, then finished: its metrics rows and final parameters equal
    an uninterrupted run's bit for bit. Killed before orbax's rename, the step is a temporary directory
    orbax replaces on the next save of that step; killed after it, before the checksums, the step does not
    verify, is set aside with one line, and the run resumes from step 10."""
    import numpy as np

    from tests.test_train import _leaves, final_params, metric_rows

    env = dict(ENV, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    run = lambda d, point: _child(TRAIN, d, point, env=env)  # noqa: E731
    killed = run(tmp_path / "killed", "rename")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == [
        "10", "20.orbax-checkpoint-tmp"]
    killed = run(tmp_path / "killed", "seal")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "from the checkpoint at step 10" in killed.stderr
    assert not (tmp_path / "killed" / "checkpoints" / "20" / "ladder-checksums.json").exists()
    resumed = run(tmp_path / "killed", "none")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = [line for line in resumed.stderr.splitlines() if "checkpoint step 20 failed verification" in line]
    assert len(lines) == 1 and "ladder-checksums.json: missing" in lines[0], resumed.stderr[-2000:]
    assert "from the checkpoint at step 10" in resumed.stderr
    straight = run(tmp_path / "straight", "none")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert metric_rows(tmp_path / "killed") == metric_rows(tmp_path / "straight")
    for x, y in zip(_leaves(final_params(tmp_path / "killed")), _leaves(final_params(tmp_path / "straight")),
                    strict=True):
        np.testing.assert_array_equal(x, y)


def test_temp_files_a_killed_writer_left_are_swept_by_the_next_holder_once_old(tmp_path):
    """Before: each kill mid-write left a `.tmp-<name>-*` partial copy at the top of the run directory (seen
    after kills of `ladder run` at report.md and stages.json, and of `ladder train` at status.json), kept
    forever. Now the next process taking the directory's lock deletes those ten minutes old; younger ones may
    be a write under way and stay."""
    from ladder import runlock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead, live = run_dir / ".tmp-status.json-ab12cd", run_dir / ".tmp-results.csv-ef34gh"
    (run_dir / ".tmp-plots").mkdir()  # not a write's temp file: left alone
    for p in (dead, live):
        p.write_text('{"state": "runn')
    os.utime(dead, (1e9, 1e9))
    with runlock.hold(run_dir, "--run-dir"):
        pass
    assert sorted(p.name for p in run_dir.iterdir()) == [".tmp-plots", live.name, "lock.json"]
