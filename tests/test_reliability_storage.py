"""Issue 18, storage probes the issue did not list (an independent hostile user, session 5; the input probes
are in test_reliability_values.py): checkpoint manifests damaged in shape rather than bytes, a step set aside
into a blocked quarantine, every step failing, another model's checkpoints; lock files of odd content, from
another host or planted as a symlink or directory; run-directory entries of the wrong kind; a run stopped
mid-loop (a second Ctrl-C, bad input at an eval step); damaged rung tables for collect; empty and special
paths; outputs on a read-only mount. Each is one line naming the field or file, never a traceback, a
misleading fix or a silent success.

Cheap by design: checkpoint steps are synthetic files sealed with the real manifest writer (verification reads
files, not arrays); only three tests touch JAX (an orbax round trip of one array, two trains with no step)."""

import json
import os
import socket

import pytest

from ladder.errors import LadderError
from tests.test_reliability_inputs import RESULTS, _probe, _write


def _cli(capsys, *argv):
    return _probe(capsys, argv)


# ------------------------------------------------------------------------------------------ checkpoints


def _step(ckpts, step: int, seal: bool = True):
    """A synthetic checkpoint step (orbax's layout, small files), sealed with ladder's manifest."""
    from ladder.checkpoint import write_manifest

    d = ckpts / str(step)
    (d / "default" / "d").mkdir(parents=True)
    (d / "default" / "_METADATA").write_text('{"tree": %d}' % step)
    (d / "default" / "d" / "abc123").write_bytes(bytes(range(256)) * (step + 1))
    (d / "_CHECKPOINT_METADATA").write_text("{}")
    if seal:
        write_manifest(d)
    return d


def _manifest(d):
    return d / "ladder-checksums.json"


def _rewrite(d, fn):
    _manifest(d).write_text(json.dumps(fn(json.loads(_manifest(d).read_text()))))


MANIFEST_DAMAGE = {
    "files is a list": lambda d: _rewrite(d, lambda m: dict(m, files=[1, 2])),
    "files emptied": lambda d: _rewrite(d, lambda m: dict(m, files={})),  # would vouch for anything
    "entries not objects": lambda d: _rewrite(d, lambda m: dict(m, files={k: "x" for k in m["files"]})),
    "top level a list": lambda d: _manifest(d).write_text("[1]"),
    "a directory": lambda d: (_manifest(d).unlink(), _manifest(d).mkdir()),
    "nested past the parser": lambda d: _manifest(d).write_text("[" * 100_000 + "]" * 100_000),
    "a file added after the save": lambda d: (d / "default" / "d" / "extra").write_bytes(b"x"),
    "names a file outside": lambda d: _rewrite(d, lambda m: dict(m, files={"../../x": {"bytes": 1}})),
    "a shard is a directory": lambda d: ((d / "default" / "d" / "abc123").unlink(),
                                          (d / "default" / "d" / "abc123").mkdir()),
}


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE)
def test_damaged_manifest_is_a_failed_step_not_a_traceback_or_a_pass(tmp_path, damage):
    from ladder.checkpoint import recover, verify_step

    ckpts = tmp_path / "checkpoints"
    _step(ckpts, 10)
    latest = _step(ckpts, 20)
    assert verify_step(latest) is None
    MANIFEST_DAMAGE[damage](latest)
    said = []
    assert recover(ckpts, said.append) == 10
    assert len(said) == 1 and "checkpoint step 20 failed verification" in said[0], said
    assert [p.name.split("-")[0] for p in (tmp_path / "checkpoints.corrupt").iterdir()] == ["20"]


def test_unreadable_shard_is_named(tmp_path, monkeypatch):
    """Permissions on one shard (simulated: tests run as root, which reads anything)."""
    from ladder import checkpoint

    d = _step(tmp_path / "checkpoints", 10)

    def deny(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint, "_sha256", deny)
    assert checkpoint.verify_step(d) == "_CHECKPOINT_METADATA: cannot be read (Permission denied)"


def test_every_step_failing_is_said_in_one_line_and_nothing_is_deleted(tmp_path):
    from ladder.checkpoint import recover

    ckpts = tmp_path / "checkpoints"
    for s in (10, 20, 30):
        _step(ckpts, s, seal=False)
    said = []
    assert recover(ckpts, said.append) is None
    assert said[-1].startswith("ladder: none of the 3 checkpoint steps verified (all moved to ")
    assert "training starts again from step 0" in said[-1]
    assert len(list((tmp_path / "checkpoints.corrupt").iterdir())) == 3


def test_a_blocked_quarantine_is_one_line_and_the_step_stays(tmp_path):
    from ladder.checkpoint import recover

    ckpts = tmp_path / "checkpoints"
    _step(ckpts, 10, seal=False)
    (tmp_path / "checkpoints.corrupt").write_text("a file where the quarantine directory goes")
    with pytest.raises(LadderError, match=r"step 10 failed verification, and it cannot be moved aside .*"
                                          r"checkpoints.corrupt a writable directory"):
        recover(ckpts)
    assert (ckpts / "10").is_dir()


def test_leftovers_that_are_not_steps_are_ignored(tmp_path):
    """An interrupted save's temporary directory and a stray file named like a step are not resume points."""
    from ladder.checkpoint import recover

    ckpts = tmp_path / "checkpoints"
    _step(ckpts, 10)
    (ckpts / "20.orbax-checkpoint-tmp-1234").mkdir()
    (ckpts / "30").write_text("not a directory")
    said = []
    assert recover(ckpts, said.append) == 10 and not said


def test_checkpoints_without_config_json_are_refused(tmp_path):
    """Whose checkpoints? A missing config.json beside them must not become a fresh config over another run."""
    from ladder.rundir import read_run_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert read_run_config(run) is None  # an empty checkpoints dir: nothing to mix with
    _step(run / "checkpoints", 10)
    with pytest.raises(LadderError, match="has checkpoints but no config.json"):
        read_run_config(run)


def test_another_models_checkpoint_is_one_line(tmp_path):
    """A step of another shape (another config's run dir) restores as a LadderError, not orbax's ValueError."""
    import jax
    import jax.numpy as jnp

    from ladder.checkpoint import Checkpoints

    ckpts = Checkpoints(tmp_path / "checkpoints", keep=2, async_save=False)
    ckpts.save(1, {"w": jnp.zeros((4, 3))})
    ckpts.wait()
    want = {"w": jax.ShapeDtypeStruct((4, 5), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))}
    with pytest.raises(LadderError, match="holds arrays of another shape than this config's model"):
        ckpts.restore(1, want)
    ckpts.close()


# ------------------------------------------------------------------------------------------ locks, run dirs

LOCK_CONTENT = {
    "garbage": b"\x00\xffgarbage", "empty": b"", "a list": b"[1, 2]", "a string": b'"held"',
    "nested past the parser": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("content", LOCK_CONTENT)
def test_lock_file_of_any_content_is_taken_over(tmp_path, content):
    from ladder.runlock import hold, read_holder

    (tmp_path / "lock.json").write_bytes(LOCK_CONTENT[content])
    with hold(tmp_path, "--run-dir"):
        assert read_holder(tmp_path)["pid"] == os.getpid()


@pytest.mark.parametrize("host, why", [
    ("other-host", "it was taken on another host, so if a run there may still be writing here"),
    (None, "that process no longer holds it (it ended; its pid may since belong to another program)"),
])
def test_stale_lock_note_does_not_claim_what_it_cannot_know(tmp_path, capfd, host, why):
    """pid 1 is alive (pid reuse: another program now has it), and a remote host's pids cannot be looked up."""
    from ladder.runlock import hold

    (tmp_path / "lock.json").write_text(json.dumps({"host": host or socket.gethostname(), "pid": 1,
                                                    "started_utc": "x", "command": "ladder train"}))
    with hold(tmp_path, "--run-dir"):
        pass
    err = capfd.readouterr().err
    assert "taking over the lock" in err and why in err and "no longer running" not in err


@pytest.mark.parametrize("plant", ["symlink", "directory"])
def test_planted_lock_path_is_refused_without_writing_elsewhere(tmp_path, plant):
    from ladder.runlock import hold

    run = tmp_path / "run"
    run.mkdir()
    if plant == "symlink":
        (run / "lock.json").symlink_to(tmp_path / "elsewhere")
    else:
        (run / "lock.json").mkdir()
    with pytest.raises(LadderError, match=r"cannot create the lock file .*; remove it"):
        with hold(run, "--run-dir"):
            pass
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("name, kind", [("status.json", "dir"), ("config.json", "dir"), ("metrics.jsonl", "dir"),
                                        ("lock.json", "dir"), ("checkpoints", "file"), ("tb", "file")])
def test_run_dir_entry_of_the_wrong_kind_is_named_before_any_work(tmp_path, name, kind):
    """Before: "storage: cannot write .../status.json (Is a directory) ... free space or fix permissions"."""
    from ladder.rundir import check_run_dir

    (tmp_path / name).mkdir() if kind == "dir" else (tmp_path / name).write_text("x")
    want = "a file" if kind == "dir" else "a directory"
    with pytest.raises(LadderError, match=f"--run-dir: .*/{name} is not {want}, which ladder keeps there"):
        check_run_dir(tmp_path)


@pytest.mark.parametrize("raised, state, said", [
    (KeyboardInterrupt, "preempted", "without a save"),
    (LadderError("task t, question 2, choice 0: 73 tokens, more than the evaluation sequence length 64"),
     "failed", "73 tokens"),
])
def test_a_run_stopped_mid_loop_never_stays_running(tmp_path, monkeypatch, raised, state, said):
    """A second SIGINT raises KeyboardInterrupt wherever the step loop is (a save, a step, an evaluation), and
    an evaluation's bad input raised a LadderError there (measured: `kill -INT` twice, and a task choice longer
    than seq_len at the first eval step): status.json said "running" for a process that was gone. The loop is
    replaced by one that raises, so no step is compiled."""
    from tests.test_train import tiny_config

    from ladder import train as train_lib

    def interrupted(*args, **kwargs):
        raise raised

    monkeypatch.setattr(train_lib, "_run_steps", interrupted)
    with pytest.raises(type(raised) if isinstance(raised, Exception) else raised):
        train_lib.train(tiny_config(total_steps=4), str(tmp_path / "run"))
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == state and said in status["error"]


def test_an_evaluation_that_cannot_run_is_found_before_training(tmp_path):
    """A task choice longer than model.seq_len: was found at the first eval step, after training to it."""
    from tests.test_train import tiny_config

    from ladder.eval import make_on_eval

    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"context": "c", "choices": ["x" * 40, "y"], "gold": 0}) + "\n")
    cfg = tiny_config(total_steps=4)  # seq_len 16, byte tokenizer: 40 tokens
    cfg.eval.tasks = str(task)
    with pytest.raises(LadderError, match="choice 0: 40 tokens, more than the evaluation sequence length 16"):
        make_on_eval(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()

# ------------------------------------------------------------------------------------------ collect, eval, paths


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfegarbage", "results.csv is not UTF-8 text (byte 0xff at offset 0)"),  # was UnicodeDecodeError
    (b"run,n\n1,2,3,4\n", "results.csv: data row 1 has 4 fields, the header has 2"),  # was ValueError
    (b'"unterminated\n', 'results.csv line 1: a quote (") is never closed'),  # was "no results", then "lacks the columns"
])
def test_collect_names_a_rungs_damaged_results_table(capsys, tmp_path, content, message):
    from ladder import plan as plan_lib

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    plan_lib.write_plan(plan, tmp_path / "plan.json")
    for i, rung in enumerate(plan["rungs"]):
        (tmp_path / "root" / rung["name"]).mkdir(parents=True)
        (tmp_path / "root" / rung["name"] / "results.csv").write_bytes(
            content if i == 1 else f"run,n,d,step,task,loss,acc\n{rung['name']},{rung['n']},2e7,10,t,2.0,0.5\n".encode())
    rc, err = _cli(capsys, "collect", tmp_path / "plan.json", "--run-root", tmp_path / "root", "-o", tmp_path / "o.csv",
                   "--partial")
    assert rc == 2 and plan["rungs"][1]["name"] in err and message in err, err
    assert not (tmp_path / "o.csv").exists()


def test_run_dir_json_that_is_not_an_object_is_torn(tmp_path):
    """The tolerant reader (run-directory files) treats binary or non-object JSON as torn, not as a crash."""
    from ladder import rundir, storage

    for content in (b"\xff\xfe", b"[1, 2]", b'"running"', b"[" * 100_000):
        (tmp_path / "status.json").write_bytes(content)
        assert storage.read_json(tmp_path / "status.json") is None and rundir.read_status(tmp_path) == {}


def test_eval_of_a_config_json_missing_a_section(tmp_path):
    """A hand-edited config.json without its model section: was AttributeError "'model'" from ConfigDict."""
    from ladder.eval import restore_logits_fn
    from ladder.train_config import default_config

    saved = default_config().to_dict()
    del saved["model"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(LadderError, match="config.json lacks the key 'model'"):
        restore_logits_fn(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (("train", "configs/tiny.py", "--run-dir", ""), "argument --run-dir: is empty"),  # trained into runs/tiny
    (("status", "{tmp}/plan.json", "--run-root", ""), "argument --run-root: is empty"),
    (("predict", "{tmp}/r.csv", "--target", "t=1e9:2e10", "-o", ""), "argument -o/--out: is empty"),
    (("predict", "{tmp}/r.csv", "--target", "t=1e9:2e10", "-o", "/dev/null", "--overwrite"),
     "--out: /dev/null exists and is not a regular file"),  # wrote its plots into /dev
])
def test_empty_and_special_paths(capsys, tmp_path, argv, message):
    _write(tmp_path, RESULTS, "r.csv")
    rc, err = _cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2 and message in err, err

def test_rows_that_do_not_fit_a_tables_header_are_one_line(tmp_path):
    """eval -o onto a table of other columns: was a ValueError traceback after the whole evaluation."""
    from ladder.results import append_rows

    row = dict(run="a", n=1, d=2, step=1, task="t", loss=1.0, acc=0.5)
    append_rows(tmp_path / "r.csv", [row])
    with pytest.raises(LadderError, match=r"r.csv: a row for run 'a' lacks the columns \[\] or adds \['prob'\]"):
        append_rows(tmp_path / "r.csv", [dict(row, step=2, prob=0.3)])


@pytest.fixture(scope="module")
def read_only_mount(tmp_path_factory):
    """A read-only tmpfs (root ignores file modes, so a chmod'ed directory would not do); skipped without mount."""
    import subprocess

    path = tmp_path_factory.mktemp("ro")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("verb", ["collect", "eval"])
def test_outputs_on_a_read_only_mount_are_refused_before_any_work(capsys, tmp_path, read_only_mount, verb):
    """collect read every rung, then failed on '<out>.tmp: Read-only file system'; eval scored every task first."""
    from ladder import plan as plan_lib

    plan_lib.write_plan(plan_lib.plan_ladder(["smoke-target"], preset="smoke"), tmp_path / "plan.json")
    argv = (("collect", tmp_path / "plan.json", "--run-root", tmp_path / "root") if verb == "collect" else
            ("eval", tmp_path / "no-run"))
    rc, err = _cli(capsys, *argv, "-o", read_only_mount / "out.csv")
    assert rc == 2 and f"--out: {read_only_mount} is not writable" in err, err
