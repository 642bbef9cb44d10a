"""Issue 18, run directories: one owner at a time (lock with holder, stale locks taken over), dry runs that
write nothing into a live run, unreadable config.json refused, rung names that cannot escape the run root,
storage failures that stop the run at once with one line, a torn metrics line, SIGINT that saves."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ladder.errors import LadderError
from tests.test_train import tiny_config

PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1")
TINY = ["--config.model.d_model=32", "--config.model.n_layers=2", "--config.model.n_heads=2",
        "--config.model.seq_len=16", "--config.train.global_batch=4", "--config.train.log_every=1"]
HOLD = "import sys, time; from ladder.runlock import hold\nwith hold(sys.argv[1], 'dir'):\n    print('held', flush=True); time.sleep(120)"


def _holder(directory):
    """A process holding `directory`'s lock until killed."""
    proc = subprocess.Popen([PY, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _ladder(*args, timeout=120):
    return subprocess.run([PY, "-m", "ladder", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_second_owner_exits_at_once_naming_the_holder_and_dead_holders_are_taken_over(tmp_path, capfd):
    from ladder.runlock import hold, read_holder

    holder = _holder(tmp_path / "run")
    try:
        info = read_holder(tmp_path / "run")
        assert info["pid"] == holder.pid and info["host"] and info["process_start"] is not None
        train = _ladder("train", "configs/tiny.py", "--run-dir", str(tmp_path / "run"), *TINY)
        assert train.returncode == 2 and f"is in use by pid {holder.pid}" in train.stderr, train.stderr
        assert "Traceback" not in train.stderr
        assert not (tmp_path / "run" / "config.json").exists()  # refused before writing anything
        with pytest.raises(LadderError, match=f"in use by pid {holder.pid}"):
            with hold(tmp_path / "run", "--run-dir"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold(tmp_path / "run", "--run-dir"):  # the lock of a dead process (SIGKILL) is stale: taken over
        assert read_holder(tmp_path / "run")["pid"] == os.getpid()
    assert "taking over the lock" in capfd.readouterr().err


def test_ladder_run_and_local_launcher_hold_their_directories(tmp_path):
    from ladder import plan as plan_lib

    out = tmp_path / "out"
    holder = _holder(out)
    try:
        run = _ladder("run", "configs/smoke.py", "--out", str(out))
        assert run.returncode == 2 and f"--out: {out} is in use by pid {holder.pid}" in run.stderr, run.stderr
    finally:
        holder.kill()
        holder.wait()
    plan_lib.write_plan(plan_lib.plan_ladder(["smoke-target"], preset="smoke"), tmp_path / "plan.json")
    holder = _holder(tmp_path / "root")
    try:
        launch = _ladder("launch", str(tmp_path / "plan.json"), "--backend", "local", "--run-root",
                         str(tmp_path / "root"))
        assert launch.returncode == 2 and "--run-root" in launch.stderr and "in use by pid" in launch.stderr
        assert list((tmp_path / "root").iterdir()) == [tmp_path / "root" / "lock.json"]  # no rung started
    finally:
        holder.kill()
        holder.wait()


def test_dry_run_never_writes_into_an_existing_run(tmp_path):
    from ladder.config import load_config
    from ladder.run import run

    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_text('{"the": "live plan"}')
    (out / "config.json").write_text("{}")
    before = {p: p.read_bytes() for p in out.iterdir()}
    lines = []
    run(load_config("configs/smoke.py"), str(out), dry_run=True, print_fn=lines.append)
    assert {p: p.read_bytes() for p in out.iterdir()} == before
    assert any("left untouched" in line for line in lines)
    assert any(f"--run-dir {out}/rungs/" in line for line in lines)  # commands still name the real run


def test_unreadable_config_json_is_an_error_never_a_fresh_start(tmp_path):
    from ladder.config import load_config
    from ladder.run import run
    from ladder.train import train

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_bytes(b"\x00garbage{")
    with pytest.raises(LadderError, match="config.json is unreadable"):
        train(tiny_config(total_steps=2), str(run_dir))
    assert (run_dir / "config.json").read_bytes() == b"\x00garbage{"  # not rewritten
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("not json")
    with pytest.raises(LadderError, match="config.json is unreadable"):
        run(load_config("configs/smoke.py"), str(out))


@pytest.mark.parametrize("name", ["../../x", "a/b", "/abs", "..", ".hidden", "-rf", ""])
def test_rung_and_run_names_cannot_become_paths_outside_the_root(tmp_path, name):
    from ladder import plan as plan_lib
    from ladder.train_config import validate

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    plan["rungs"][0]["name"] = name
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(LadderError, match="rung name.*cannot be a directory name"):
        plan_lib.load_plan(tmp_path / "plan.json")
    cfg = tiny_config()
    cfg.name = name
    with pytest.raises(LadderError, match="^name: .*cannot be a directory name"):
        validate(cfg)


def test_torn_last_metrics_line_is_dropped_with_a_note_and_resume_works(tmp_path, capfd):
    from ladder.rundir import read_metrics
    from ladder.train import train

    run_dir = tmp_path / "run"
    assert train(tiny_config(total_steps=12, checkpoint_every=6), str(run_dir))["state"] == "done"
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps(dict(status, state="running")))
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "loss": 5.1')  # a crash mid-write
    assert train(tiny_config(total_steps=12, checkpoint_every=6), str(run_dir))["state"] == "done"
    assert "dropped a torn last line" in capfd.readouterr().err
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 13))
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\nbroken\n{"step": 2}\n')
    with pytest.raises(LadderError, match="line 2 is not a metrics row"):
        read_metrics(run_dir)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write: chmod 555, or (root ignores modes) a read-only tmpfs mounted there."""
    path = tmp_path / "run" / "checkpoints"
    path.mkdir(parents=True)
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("running as root without mount: cannot make a directory unwritable")
    else:
        path.chmod(0o555)
    yield path
    if mounted:
        subprocess.run(["umount", str(path)], check=False)
    else:
        path.chmod(0o755)


def test_unwritable_checkpoints_dir_stops_at_once_with_one_line(read_only_dir):
    run_dir = read_only_dir.parent
    proc = _ladder("train", "configs/tiny.py", "--run-dir", str(run_dir), *TINY)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot write checkpoints into {run_dir}/checkpoints" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_full_disk_stops_the_run_with_one_line_and_keeps_the_last_verified_checkpoint(tmp_path):
    """A 4 MB tmpfs (needs root to mount; skipped otherwise) fills up after a few 1.6 MB checkpoints."""
    from ladder.checkpoint import verify_step

    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        run_dir = mount / "run"
        proc = _ladder("train", "configs/tiny.py", "--run-dir", str(run_dir), "--config.model.d_model=64",
                       "--config.model.n_layers=2", "--config.model.seq_len=16", "--config.train.global_batch=4",
                       "--config.train.total_steps=200", "--config.train.checkpoint_every=5",
                       "--config.train.keep_checkpoints=100", timeout=300)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "storage: cannot write" in proc.stderr and "No space left on device" in proc.stderr
        # None of ours: the failure is one line ("Event loop is closed" from orbax's writer threads is dropped
        # by checkpoint.quiet_closed_event_loops; other thread tracebacks would still show, none through ladder).
        assert "/ladder/" not in "".join(l for l in proc.stderr.splitlines() if l.strip().startswith("File ")), \
            proc.stderr[-3000:]
        assert proc.stderr.count("ladder train: failed: storage: cannot write") == 1
        sealed = [p for p in (run_dir / "checkpoints").iterdir() if (p / "ladder-checksums.json").exists()]
        assert sealed and all(verify_step(p) is None for p in sealed)
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] in ("failed", "running")  # "failed" unless even status.json could not be written
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_sigint_saves_like_sigterm_and_stops_an_evaluation_between_batches(tmp_path):
    """A real Ctrl-C landing in a long evaluation (12,000 rows at step 3): it stops between two batches, step 3
    is saved with its evaluation marked pending (redone on resume: test_reliability_run.py)."""
    from ladder.checkpoint import verify_step

    run_dir, task = tmp_path / "run", tmp_path / "long.jsonl"
    task.write_text("".join(json.dumps({"context": f"q{i}", "choices": [" yes", " no"], "gold": i % 2}) + "\n"
                            for i in range(6000)))
    proc = subprocess.Popen([PY, "-m", "ladder", "train", "configs/tiny.py", "--run-dir", str(run_dir), *TINY,
                             "--config.train.total_steps=100000", "--config.train.eval_steps=[3]",
                             f"--config.eval.tasks={task}", "--config.eval.batch_size=4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # status.json says step 3 just before that step's evaluation starts
            status = (json.loads((run_dir / "status.json").read_text())
                      if (run_dir / "status.json").exists() else {})
            if status.get("step", 0) >= 3:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "evaluation of step 3 stopped by SIGINT" in err and "stopped by SIGINT at step 3" in err, err[-2000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "preempted" and status["signal"] == "SIGINT"
    assert status["step"] == 3 and status["eval_pending"] == 3
    assert verify_step(Path(run_dir / "checkpoints" / "3")) is None
    assert not (run_dir / "results.csv").exists()


def test_closed_event_loop_noise_is_dropped_and_other_thread_errors_are_not(monkeypatch):
    """orbax's writer threads and finalizers raise "Event loop is closed" after a failed save (a full disk
    under load); those tracebacks are dropped, any other uncaught thread exception still reaches the hook."""
    import sys
    import threading
    import types

    from ladder.checkpoint import quiet_closed_event_loops

    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(("thread", str(args.exc_value))))
    monkeypatch.setattr(sys, "unraisablehook", lambda args: seen.append(("unraisable", str(args.exc_value))))
    quiet_closed_event_loops()
    quiet_closed_event_loops()  # idempotent: the hooks wrap the originals once

    def boom(message):
        raise RuntimeError(message)

    for message in ("Event loop is closed", "a real failure"):
        t = threading.Thread(target=boom, args=(message,))
        t.start()
        t.join()
        sys.unraisablehook(types.SimpleNamespace(exc_value=RuntimeError(message), exc_type=RuntimeError,
                                                 exc_traceback=None, err_msg=None, object=None))
    assert seen == [("thread", "a real failure"), ("unraisable", "a real failure")]
