"""Issue 18, probes the issue did not list (an independent hostile user, session 5): each class of input is
built for, not the one case. Checkpoint manifests that are damaged in shape rather than bytes, a step set aside
into a blocked quarantine, every step failing, another model's checkpoints; lock files of odd content, from
another host or planted as a symlink; run-directory entries of the wrong kind; byte-order marks, blank names,
absurd magnitudes and tab-separated tables; JSON nested past the parser; plan values of the wrong type or
domain; config overrides that name a section or put text where steps belong; bad LADDER_* variables; and a
second Ctrl-C. Each is one line naming the field or file, never a traceback or a silent success.

Cheap by design: checkpoint steps are synthetic files sealed with the real manifest writer (verification reads
files, not arrays), and only two tests touch JAX (an orbax round trip of one array and one tiny train)."""

import json
import os
import socket

import numpy as np
import pytest

from ladder import cli
from ladder.errors import LadderError


def _cli(capsys, *argv):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return rc, out.err


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
    from ladder.train_config import check_run_dir

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


# ------------------------------------------------------------------------------------------ data files

RESULTS = "run,n,d,step,task,loss,acc\n" + "".join(
    f"r{i},{n},{n * 20 * s / 4},{s},t,{1 + 1e3 / n ** 0.3},{0.3 + 0.1 * s / 4}\n"
    for i, n in enumerate((1e6, 2e6, 4e6, 8e6)) for s in (1, 2, 3, 4))


def _write(tmp_path, text, name="results.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_byte_order_mark_is_dropped_in_every_text_input(tmp_path):
    """Excel's "CSV UTF-8" and Windows editors write one: before, the CSV's first column read as '\\ufeffrun'
    ("missing required columns ['run']") and JSON files failed on their first line."""
    from ladder.results import read_table
    from ladder.tasks import read_jsonl_task

    plain = read_table(_write(tmp_path, RESULTS), validate=True)
    bom = read_table(_write(tmp_path, b"\xef\xbb\xbf" + RESULTS.encode(), "bom.csv"), validate=True)
    assert list(bom) == list(plain) and all(np.array_equal(bom[k], plain[k]) for k in plain)
    line = json.dumps({"context": "2+2=", "choices": ["4", "5"], "gold": 0})
    assert len(read_jsonl_task(_write(tmp_path, b"\xef\xbb\xbf" + line.encode(), "t.jsonl")).questions) == 1


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("\nr1,", "\n,", 1), "column 'run' is blank in 1 rows, first data row 5"),
    (lambda t: t.replace(",3,t,", ",3, ,", 1), "column 'task' is blank in 1 rows"),
    (lambda t: t.replace("r3,8000000.0,", "r3,1e308,"), "column 'n' is above 1e+30 in 4 rows, first in run 'r3'"),
    (lambda t: t.replace(",4,t,", ",4,t,", 1).replace("r0,1000000.0,20000000.0,", "r0,1000000.0,1e300,", 1),
     "column 'd' is above 1e+30 in 1 rows"),
    (lambda t: t.replace(",", "\t"), "save it comma-separated (its columns are split by tabs)"),
    (lambda t: t.replace(",", ";"), "save it comma-separated (its columns are split by semicolons)"),
])
def test_results_names_and_magnitudes(tmp_path, edit, message):
    """Before: a blank run name became a run called "" (predict exited 0), n=1e308 fitted to nonsense flagged
    only by B/IN, and a tab-separated table said only that every column was missing."""
    from ladder.results import read_table

    with pytest.raises(LadderError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        read_table(_write(tmp_path, edit(RESULTS)), validate=True)


@pytest.mark.parametrize("line, message", [
    ("[" * 100_000 + "]" * 100_000, "t.jsonl:1: malformed JSON (nested too deeply to read)"),  # was RecursionError
    ('{"context": "\\ud800", "choices": ["a", "b"], "gold": 0}', "t.jsonl:1: the context holds a lone UTF-16"),
    ('{"context": "c", "choices": ["a", "\\udfff"], "gold": 0}', "t.jsonl:1: choice 1 holds a lone UTF-16"),
])
def test_task_jsonl_that_only_fails_later(tmp_path, line, message):
    """A lone surrogate passed reading and failed at tokenization, mid-evaluation."""
    from ladder.tasks import read_jsonl_task

    with pytest.raises(LadderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_jsonl_task(_write(tmp_path, line + "\n", "t.jsonl"))


# ------------------------------------------------------------------------------------------ plans

def _rung(**kv):
    return lambda p: p["rungs"][0].update(kv)


PLAN_EDITS = [
    (lambda p: p.update(targets=None), "targets is NoneType, not a list"),  # was TypeError
    (lambda p: p.update(rungs="abc"), "rungs is str, not a list"),  # was "rung 'a' is not a JSON object"
    (lambda p: p.update(defaults=[]), "defaults is not a JSON object"),
    (lambda p: p["targets"][0].update(n=-1), "target 'smoke-target': n is -1, not a finite number > 0"),
    (_rung(d_model="abc"), "d_model is 'abc', not a whole number > 0"),  # was "--config.model.d_model: ..."
    (_rung(d_model=-64), "d_model is -64, not a whole number > 0"),  # was accepted by launch --dry-run
    (_rung(total_steps=0), "total_steps is 0, not a whole number > 0"),
    (_rung(n=0), "n is 0, not a whole number > 0"),
    (_rung(batch_sequences=3.5), "batch_sequences is 3.5, not a whole number > 0"),
    (_rung(peak_lr=float("nan")), "peak_lr is nan, not a finite number"),
    (_rung(warmup_steps=-1), "warmup_steps is -1, not a whole number >= 0"),
    (_rung(eval_steps="10,20"), "eval_steps is '10,20', not a list of steps in [1, total_steps]"),
    (_rung(checkpoint_steps=[-5]), "checkpoint_steps is [-5], not a list of steps"),
    (_rung(schedule=3), "schedule is 3, not a string"),
]


@pytest.mark.parametrize("edit, message", PLAN_EDITS, ids=[m.split(",")[0] for _, m in PLAN_EDITS])
def test_plan_values_of_the_wrong_type_or_domain(capsys, tmp_path, edit, message):
    from ladder import plan as plan_lib

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    edit(plan)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(LadderError, match=message.replace("(", r"\(").replace("[", r"\[")):
        plan_lib.load_plan(path)
    rc, err = _cli(capsys, "status", path, "--run-root", tmp_path / "runs")  # was exit 0 on a garbage compute
    assert rc == 2 and message in err


def test_plan_rung_domains_are_the_trainers_and_name_the_rung(tmp_path):
    """Cross-field domains (heads dividing d_model) come from train_config.validate, at resolve_rung, which
    `launch --dry-run` passes through (before: accepted, failing only when the rung trained)."""
    from ladder import plan as plan_lib
    from ladder.train_config import resolve_rung

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    plan["rungs"][0]["n_heads"] = 7
    name = plan["rungs"][0]["name"]
    with pytest.raises(LadderError, match=f"plan rung '{name}': model.n_heads: 7 heads do not divide"):
        resolve_rung(plan, name)
    with pytest.raises(LadderError, match="plan: .* is not valid JSON \\(nested too deeply"):
        (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
        plan_lib.load_plan(tmp_path / "deep.json")


# ------------------------------------------------------------------------------------------ config, environment


@pytest.mark.parametrize("override, message", [
    ("model=3", "--config.model: 'model' is a section, not a value; set one of its keys, e.g. --config.model."),
    ("model={'d_model': 3}", "'model' is a section, not a value"),  # before: the section's repr, 60 lines
    ("train.eval_steps=['a']", "train.eval_steps: 'a' is not a step (a whole number)"),  # was TypeError
    ("train.eval_steps=[[]]", "train.eval_steps: [] is not a step"),  # was TypeError
    ("train.eval_steps=(1, 2.5)", "train.eval_steps: 2.5 is not a step"),  # was accepted: trained, never evaluated
    ("train.checkpoint_steps=[True]", "train.checkpoint_steps: True is not a step"),
])
def test_config_overrides_that_name_sections_or_put_text_in_steps(capsys, tmp_path, override, message):
    rc, err = _cli(capsys, "train", "configs/tiny.py", "--run-dir", tmp_path / "r", f"--config.{override}")
    assert rc == 2 and message in err, err
    assert "\n" not in err.strip() and not (tmp_path / "r").exists()


def test_override_values_past_the_literal_parser_are_text():
    from ladder.config import parse_value

    deep = "[" * 100_000 + "]" * 100_000
    assert parse_value(deep) == deep  # RecursionError / MemoryError in ast: the string, then a type error


@pytest.mark.parametrize("name, value, message", [
    ("LADDER_FIT_WORKERS", "-1", "LADDER_FIT_WORKERS: '-1' is not a whole number >= 1"),
    ("LADDER_FIT_WORKERS", "abc", "LADDER_FIT_WORKERS: 'abc' is not a whole number >= 1"),
    ("LADDER_FIT_WORKERS", "0", "LADDER_FIT_WORKERS: '0' is not a whole number >= 1"),
    ("LADDER_CACHE", "{file}", "LADDER_CACHE: {file} is a file, not a directory"),
])
def test_bad_environment_is_one_line_before_any_work(capsys, monkeypatch, tmp_path, name, value, message):
    """Before: LADDER_FIT_WORKERS=abc was ignored without a word; LADDER_CACHE naming a file failed inside
    `ladder train` as "storage: cannot write .../tfds/.../.locks ... free space or fix permissions"."""
    file = _write(tmp_path, "x", "cache")
    monkeypatch.setenv(name, value.format(file=file))
    rc, err = _cli(capsys, "plan", "--preset", "smoke", "-o", tmp_path / "p.json")
    assert rc == 2 and message.format(file=file) in err, err
    assert not (tmp_path / "p.json").exists()
    monkeypatch.setenv(name, "")  # empty is unset
    cli.check_environment()


# ------------------------------------------------------------------------------------------ collect, eval, paths


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfegarbage", "results.csv is not UTF-8 text (byte 0xff at offset 0)"),  # was UnicodeDecodeError
    (b"run,n\n1,2,3,4\n", "results.csv: data row 1 has 4 fields, the header has 2"),  # was ValueError
    (b'"unterminated\n', "lacks the columns ['run', 'n', 'd', 'step', 'task', 'loss', 'acc']"),  # was "no results"
])
def test_collect_names_a_rungs_damaged_results_table(capsys, tmp_path, content, message):
    from ladder import plan as plan_lib

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    plan_lib.write_plan(plan, tmp_path / "plan.json")
    for i, rung in enumerate(plan["rungs"]):
        (tmp_path / "root" / rung["name"]).mkdir(parents=True)
        (tmp_path / "root" / rung["name"] / "results.csv").write_bytes(
            content if i == 1 else f"run,n,d,step,task,loss,acc\n{rung['name']},1e6,2e7,10,t,2.0,0.5\n".encode())
    rc, err = _cli(capsys, "collect", tmp_path / "plan.json", "--run-root", tmp_path / "root", "-o", tmp_path / "o.csv",
                   "--partial")
    assert rc == 2 and plan["rungs"][1]["name"] in err and message in err, err
    assert not (tmp_path / "o.csv").exists()


def test_run_dir_json_that_is_not_an_object_is_torn(tmp_path):
    """The tolerant reader (run-directory files) treats binary or non-object JSON as torn, not as a crash."""
    from ladder import rundir

    for content in (b"\xff\xfe", b"[1, 2]", b'"running"', b"[" * 100_000):
        (tmp_path / "status.json").write_bytes(content)
        assert rundir.read_json(tmp_path / "status.json") is None and rundir.read_status(tmp_path) == {}


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


SPLIT_LAW = {"E": 1.5, "A": 400.0, "alpha": 0.3, "B": 400.0, "beta": 0.3, "k": 0.5, "rho": 0.9}


@pytest.mark.parametrize("law, message", [
    ({"domains": ["legal"]}, "--law: domains: is not a mapping of domain -> law"),  # was TypeError
    ({"domains": {"legal": {}}}, "--law: domains: legal: has no 'params'"),  # was KeyError
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, E="x")}}}, "params: E: is 'x', not a finite number"),
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, zzz=1)}}}, "not the parameters E, A, alpha, B, beta, k, rho"),
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, alpha=float("nan"))}}},
     "params: alpha: is nan, not a finite number"),  # was an allocation computed from NaN, exit 0
    ({"fits": [1]}, "--law: fits: has no 'domain'"),
    ({"fits": {"domain": {"params": {}}}}, "--law: fits: domain: params: holds [], not the parameters"),
])
def test_law_files_edited_by_hand(capsys, tmp_path, law, message):
    (tmp_path / "law.json").write_text(json.dumps(law))
    what = ["split", "--budget", "1e20"] if "domains" in law else ["dcpt", "--rule", "a", "--n", "2.5e5", "--d", "1e6"]
    rc, err = _cli(capsys, "allocate", what[0], "--law", tmp_path / "law.json", *what[1:], "-o", tmp_path / "out")
    assert rc == 2 and message in err, err
    assert not (tmp_path / "out").exists()


IMPORT = "model,params,tokens,step,task,accuracy\n" + "".join(
    f"m{i},{n},{n * 5 * s},{s},t,{0.3 + 0.1 * s / 4}\n" for i, n in enumerate((1e6, 2e6, 4e6)) for s in (1, 2))
MAP = "run=model,n=params,d=tokens,step=step,task=task,acc=accuracy"


@pytest.mark.parametrize("content, mapping, message", [
    (b"\xef\xbb\xbf" + IMPORT.encode(), MAP, None),  # before: run 'model' (BOM-glued header) for every row
    (IMPORT.encode(), MAP.replace("run=model", "run=nope"),
     "--map: run='nope' is not a column of"),  # before: one run 'nope' over three sizes, exit 0
    ((IMPORT + IMPORT.split("\n", 1)[1]).encode(), MAP, "(as imported): 6 rows repeat a (run, step, task)"),
    (IMPORT.replace(",0.3", ",30.").encode(), MAP, "column 'acc' outside [0, 1]"),  # percentages
    (IMPORT.encode(), MAP + ",run=params", "--map: maps 'run' twice"),
    (IMPORT.replace("m0", "m\xe9").encode("latin-1"), MAP, "is not UTF-8 text (byte 0xe9"),  # was a traceback
])
def test_import_checks_what_it_writes(capsys, tmp_path, content, mapping, message):
    (tmp_path / "in.csv").write_bytes(content)
    rc, err = _cli(capsys, "import", "csv", tmp_path / "in.csv", "--map", mapping, "-o", tmp_path / "out.csv")
    if message is None:
        assert rc == 0, err
        assert sorted({line.split(",")[0] for line in (tmp_path / "out.csv").read_text().splitlines()[1:]}) == \
            ["m0", "m1", "m2"]
    else:
        assert rc == 2 and message in err, err
        assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("entry, got", [("prose_continuation:abc", "'abc'"), ("prose_continuation:-3", "'-3'"),
                                        ("prose_continuation:", "''")])
def test_task_few_shot_suffix_that_is_not_a_count(entry, got):
    """Before: "'prose_continuation:abc' is neither an embedded task, a catalog task nor a .jsonl file"."""
    from ladder.tasks import parse_task_entry

    with pytest.raises(LadderError, match=f"the few-shot count after ':' must be a whole number >= 0, got {got}"):
        parse_task_entry(entry)
    assert parse_task_entry("gs://bucket/t.jsonl") == ("gs://bucket/t.jsonl", 0)  # a URL's colon is no suffix


@pytest.mark.parametrize("flag, value", [("--tasks", ""), ("--runs", ",,")])
def test_predict_selection_that_is_empty(capsys, tmp_path, flag, value):
    """Before: --tasks "" fitted every task, exit 0."""
    res = _write(tmp_path, RESULTS)
    rc, err = _cli(capsys, "predict", res, "--target", "t=1e9:2e10", "-o", tmp_path / "p.json", flag, value)
    assert rc == 2 and f"{flag}: is empty" in err, err


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


@pytest.mark.parametrize("argv, message", [
    (("cpt", "configs/tiny.py"), "configs/tiny.py is a `ladder train` config; run it with `ladder train`"),
    (("cpt", "configs/smoke.py"), "configs/smoke.py is a `ladder run` config; run it with `ladder run`"),
    (("run", "configs/specialization.py", "--dry-run"), "is a `ladder cpt` config; run it with `ladder cpt`"),
    (("train", "configs/specialization.py"), "is a `ladder cpt` config; run it with `ladder cpt`"),
])
def test_the_study_config_kind_is_named_too(capsys, tmp_path, argv, message):
    """Before: `ladder cpt configs/tiny.py` said "data: unknown config key; known keys here: base, budgets, ..."."""
    rc, err = _cli(capsys, *argv)
    assert rc == 2 and message in err, err
