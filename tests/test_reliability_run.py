"""Issue 18, stopping and resuming: a stop request during a long evaluation ends it between two batches, saves
that step and exits; the resume redoes the evaluation, and every row and the final state equal an
uninterrupted run's."""

import json
import os
import re
import signal

import numpy as np
import pytest

from tests.test_train import _leaves, final_params, metric_rows, tiny_config


def _task_file(tmp_path):
    """10 questions x 3 choices: 30 rows, 8 evaluation batches of 4."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    path = tmp_path / "words.jsonl"
    path.write_text("".join(json.dumps({"context": " ".join(rng.choice(words, 3)),
                                        "choices": [" " + w for w in rng.choice(words, 3, replace=False)],
                                        "gold": i % 3}) + "\n" for i in range(10)))
    return path


def _config(tmp_path):
    cfg = tiny_config(total_steps=30, eval_steps=[20], checkpoint_every=10, async_checkpoints=False)
    cfg.eval.update(tasks=str(_task_file(tmp_path)), batch_size=4, lm_loss_batches=2)
    return cfg


def _train(cfg, run_dir, stop_at=None):
    """train() with the run's own evaluator; stop_at=(step, k): SIGTERM to this process after the k-th batch
    of that step's evaluation (the handler sets the stop flag before the next batch: deterministic)."""
    from ladder.eval import make_on_eval
    from ladder.train import train

    evaluate = make_on_eval(cfg, str(run_dir))

    def on_eval(step, params, logits_fn):
        batches = [0]

        def counted(*args):
            out = logits_fn(*args)
            assert out.shape == (4, 16, 259) and out.dtype == np.float32  # the real vocab, not the padded one
            batches[0] += 1
            if (step, batches[0]) == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        evaluate(step, params, counted)

    return train(cfg, str(run_dir), on_eval=on_eval)


@pytest.mark.slow  # ~20 CPU-s (26 before train() reused its programs): five trainer runs, one compile
def test_a_stop_during_an_evaluation_saves_that_step_and_the_resume_redoes_it(tmp_path, capsys):
    """Before: the evaluation ran to its end before the save (on a large evaluation, minutes after SIGTERM).
    Now it stops within a batch; each stop below lands mid-evaluation, one of them during the redone one.
    (Also the trainer's SIGTERM test: a resume ends "done" with an uninterrupted run's rows; a done run is left
    alone; another config in its directory is refused.)"""
    from ladder.cpt import compilation_cache
    from ladder.errors import LadderError
    from ladder.results import read_table
    from ladder.train import train

    cfg = _config(tmp_path)
    stopped = tmp_path / "stopped"
    with compilation_cache(tmp_path / "jax-cache"):  # the later runs load the first one's programs
        straight = _train(cfg, tmp_path / "straight")
        assert straight["state"] == "done"

        first = _train(cfg, stopped, stop_at=(20, 3))
        assert first["state"] == "preempted" and first["step"] == 20 and first["eval_pending"] == 20
        status = json.loads((stopped / "status.json").read_text())
        assert status["state"] == "preempted" and status["eval_pending"] == 20 and status["signal"] == "SIGTERM"
        assert (stopped / "checkpoints" / "20").is_dir()
        assert not (stopped / "results.csv").exists()  # nothing of the stopped evaluation was written
        assert "evaluation of step 20 stopped by SIGTERM" in capsys.readouterr().err

        again = _train(cfg, stopped, stop_at=(20, 1))  # the redone evaluation, stopped too: the save is kept
        assert again["state"] == "preempted" and again["step"] == 20 and again["eval_pending"] == 20
        assert sorted(p.name for p in (stopped / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "20"]

        final = _train(cfg, stopped, stop_at=(30, 2))  # the final evaluation
        assert final["state"] == "preempted" and final["step"] == 30 and final["eval_pending"] == 30
        assert list(read_table(stopped / "results.csv")["step"]) == [20.0]

        assert _train(cfg, stopped)["state"] == "done"
    assert "resuming" in capsys.readouterr().err
    status = json.loads((stopped / "status.json").read_text())
    assert status["state"] == "done" and "eval_pending" not in status
    assert status["step"] == 30 and status["tokens"] == 30 * 4 * 16
    # Every evaluation row equal to the uninterrupted run's, to the last digit written, none missing or twice.
    assert (stopped / "results.csv").read_text() == (tmp_path / "straight" / "results.csv").read_text()
    assert list(read_table(stopped / "results.csv")["step"]) == [20.0, 30.0]
    assert metric_rows(stopped) == metric_rows(tmp_path / "straight")
    for x, y in zip(_leaves(final_params(stopped)), _leaves(final_params(tmp_path / "straight")), strict=True):
        np.testing.assert_array_equal(x, y)
    rows = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert rows[0]["tokens_per_s"] is None and rows[20]["tokens_per_s"] is None  # the first after each start
    assert set(rows[-1]) >= {"step", "loss", "z_loss", "grad_norm", "lr", "tokens", "tokens_per_s", "mfu", "time"}
    assert list((stopped / "tb").iterdir())
    # Already done: nothing happens; another config in the same run dir is refused.
    assert train(cfg, str(stopped))["state"] == "done"
    cfg.train.total_steps = 31
    with pytest.raises(LadderError, match="--run-dir: .* holds a run with another config"):
        train(cfg, str(stopped))
    assert json.loads((stopped / "status.json").read_text())["updated"] == status["updated"]


# ------------------------------------------------------------------------------------------ `ladder run` state


def _run_config():
    """Two 0.02xC rungs and a self-check (planned for real; the stages after the plan are stand-ins)."""
    from ladder.run_config import default_config

    c = default_config()
    c.plan.update(targets=["smoke-target"], preset="", sizes=["29k", "45k"], multiples=[0.02], eval_fractions=[1])
    c.self_check.update(enabled=True, size="93k", multiple=0.02)
    return c


RESULTS = "run,n,d,step,task,loss,acc\r\nr,1,2,3,t,1.5,0.5\r\n"


@pytest.fixture
def ladder_run(monkeypatch, capsys):
    """run(out) -> (the stages that ran, what went to stderr): `ladder run` of _run_config into `out`, the plan
    stage real (it is cheap), the stages after it stand-ins that write their files and nothing else."""
    from ladder import run as run_lib

    ran = []
    real_plan = run_lib.RUNNERS["plan"]
    files = {"collect": {"results.csv": RESULTS},
             "predict": {"predictions.json": '{"x": 1}', "backtest.json": '{}'},  # {}: nothing back-tested
             "self_check": {"self_check.json": '{"tasks": {}}'}, "report": {"report.md": "# report\n"}}

    def stand_in(name):
        def stage(ctx):
            ran.append(name)
            if name == "plan":
                return real_plan(ctx)
            for file, text in files.get(name, {}).items():
                (ctx.out / file).write_text(text)
            return {}
        return stage

    for name in run_lib.STAGES:
        monkeypatch.setitem(run_lib.RUNNERS, name, stand_in(name))

    def run(out):
        ran.clear()
        capsys.readouterr()
        run_lib.run(_run_config(), str(out), print_fn=lambda *a: None)
        return list(ran), capsys.readouterr().err

    return run


@pytest.fixture
def finished(tmp_path, ladder_run):
    """A finished run directory (every stage recorded) and its files' bytes."""
    out = tmp_path / "out"
    assert ladder_run(out)[0] == ["plan", "train", "collect", "predict", "self_check", "report"]
    return out, {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "lock.json"}


def _damage(path, how):
    if how == "directory":
        path.unlink()
        path.mkdir()
    elif how == "missing":
        path.unlink()
    else:
        raw = path.read_bytes()
        path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "garbage": b"\xff\xfe\x00garbage",
                          "a list": b"[1, 2]", "a bad record": b'{"plan": 5}'}[how])


@pytest.mark.parametrize("file, how, reran, note", [
    # Before: `done earlier, skipped`, then the train stage failed on the plan ("rewrite it with `ladder plan`").
    ("plan.json", "truncated", "plan", "plan.json is unreadable (written again from this run's config"),
    ("plan.json", "missing", "plan", "plan.json is missing"),
    ("self_check_plan.json", "garbage", "plan", "self_check_plan.json is unreadable"),
    # Before: every stage ran again without a word; a bad record was a TypeError traceback.
    ("stages.json", "truncated", "plan", "stages.json is unreadable (not the JSON `ladder run` writes); every stage"),
    ("stages.json", "empty", "plan", "stages.json is unreadable"),
    ("stages.json", "a list", "plan", "stages.json is unreadable"),
    ("stages.json", "a bad record", "plan", "stages.json: the record of plan is not one `ladder run` writes"),
    # Before: read by the next stage: a UnicodeDecodeError / JSONDecodeError traceback there.
    ("results.csv", "garbage", "collect", "results.csv is unreadable; the stage collect runs again"),
    ("predictions.json", "truncated", "predict", "predictions.json is unreadable; the stage predict runs again"),
    ("backtest.json", "missing", "predict", "backtest.json is missing"),
    ("self_check.json", "a list", "self_check", "self_check.json is unreadable"),
    ("report.md", "missing", "report", "report.md is missing"),
])
def test_a_damaged_state_file_reruns_its_stage_and_those_after(finished, ladder_run, file, how, reran, note):
    """Stages are deterministic and resumable, so a damaged record or output costs time, not a wrong result:
    the stage that wrote it and those after run again (finished rungs are skipped by the launcher), with a
    note; the plan written again is the same plan, byte for byte."""
    from ladder.run import STAGES

    out, before = finished
    _damage(out / file, how)
    ran, err = ladder_run(out)
    assert ran == list(STAGES[STAGES.index(reran):]), err
    assert note in err and err.count("\n") == 1, err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "lock.json"}
    assert {k: after[k] for k in ("plan.json", "self_check_plan.json", "config.json")} == \
        {k: before[k] for k in ("plan.json", "self_check_plan.json", "config.json")}
    assert ladder_run(out)[0] == []  # and recorded again


@pytest.mark.parametrize("file", ["config.json", "plan.json", "stages.json", "results.csv", "predictions.json",
                                  "report.md"])
def test_a_directory_where_ladder_run_keeps_a_file_is_named_before_any_stage(finished, ladder_run, file):
    """Before: a generic "Is a directory; check that the path exists..." line (config.json, stages.json), or a
    later stage failing on it."""
    from ladder.errors import LadderError

    out, _ = finished
    _damage(out / file, "directory")
    with pytest.raises(LadderError, match=f"--out: {out / file} is not a file, which ladder keeps there; move it"):
        ladder_run(out)


def test_another_plan_in_the_run_directory_is_refused_never_trained(finished, ladder_run):
    """Before: with the train stage still to do, the launcher trained the edited plan's rungs (those whose run
    directory did not exist yet; the others were refused one by one)."""
    from ladder.errors import LadderError

    out, _ = finished
    plan = json.loads((out / "plan.json").read_text())
    plan["rungs"][0]["seed"] = 7
    (out / "plan.json").write_text(json.dumps(plan))
    (out / "stages.json").write_text("{}")  # even when no stage is recorded: the plan stage checks it too
    with pytest.raises(LadderError, match="plan.json is not the plan this run's config gives"):
        ladder_run(out)


@pytest.mark.parametrize("how", ["missing", "truncated", "a list"])
def test_a_lost_or_damaged_config_json_is_an_error_never_a_fresh_start(finished, ladder_run, how):
    """Before: a missing config.json was written again from whatever config came, and the run went on over the
    old run's stages and rungs; `[]` said "made with another config"."""
    from ladder.errors import LadderError

    out, _ = finished
    _damage(out / "config.json", how)
    message = "but no config.json" if how == "missing" else "config.json is unreadable"
    with pytest.raises(LadderError, match=message):
        ladder_run(out)


def test_a_dry_runs_plan_in_a_new_directory_does_not_block_the_real_run(tmp_path, ladder_run):
    from ladder.run import run

    out = tmp_path / "out"
    run(_run_config(), str(out), dry_run=True, print_fn=lambda *a: None)
    assert (out / "plan.json").exists() and not (out / "config.json").exists()
    assert ladder_run(out)[0][0] == "plan"


@pytest.mark.parametrize("cut", [3, 10, 23])  # the row is 24 characters with its \r\n
def test_a_torn_results_row_is_dropped_with_a_note_and_rows_are_written_whole(tmp_path, capsys, cut):
    """Before: the evaluator appended its rows; a SIGKILL mid-append left half a row, and the resumed run's next
    evaluation failed on it (TypeError / ValueError tracebacks) or, torn inside the step, kept it for good."""
    from ladder import rundir
    from ladder.results import read_table

    def rows(step):
        return [dict(run="r", n=10, d=100 * step, step=step, task=t, loss=1.5, acc=0.5) for t in ("a", "b")]

    path = tmp_path / "results.csv"
    rundir.write_results(path, 10, rows(10))
    rundir.write_results(path, 20, rows(20))
    raw = path.read_bytes()
    start = raw.index(b"r,10,2000,20,a")
    path.write_bytes(raw[: start + cut])  # a crash in the middle of step 20's first row
    rundir.write_results(path, 20, rows(20))
    assert "results.csv: dropped a torn last line" in capsys.readouterr().err
    table = read_table(path)
    assert list(table["step"]) == [10, 10, 20, 20] and list(table["task"]) == ["a", "b", "a", "b"]
    rundir.write_results(path, 10, rows(10))  # a resume from an earlier checkpoint: step 10 and later replaced
    assert list(read_table(path)["step"]) == [10, 10]


# ------------------------------------------------------------------------------------------ the local launcher


@pytest.mark.parametrize("entry, make, message", [
    # Before: skipped as done without a word (its owner unknown), or the CLI's generic "Is a directory; check
    # that the path exists, ..." line, or a trainer started that exited 2 and a failed write of launch.json.
    ("config.json", "garbage", "config.json is unreadable (not the JSON `ladder train` writes)"),
    ("config.json", "directory", "config.json is not a file, which ladder keeps there; move it away"),
    ("status.json", "directory", "status.json is not a file"),
    ("launch.json", "directory", "launch.json is not a file"),
    ("launch.log", "directory", "launch.log is not a file"),
    ("", "file", "is a file, not a run directory; move it away"),
])
def test_the_launcher_names_a_damaged_rung_directory_before_starting_anything(tmp_path, entry, make, message):
    from launch_fixtures import tiny_plan

    from ladder.errors import LadderError
    from ladder.launch import pending
    from ladder.launch.jobs import make_jobs

    jobs = make_jobs(tiny_plan(), str(tmp_path), chip=None)
    target = tmp_path / jobs[0].name / entry if entry else tmp_path / jobs[0].name
    target.parent.mkdir(parents=True, exist_ok=True)
    if make == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"\xff garbage")
    with pytest.raises(LadderError, match=f"rung {jobs[0].name}: .*{re.escape(message)}"):
        pending(jobs, print_fn=lambda *a: None)


def test_a_relaunch_waits_for_a_trainer_an_earlier_launch_left_running(tmp_path):
    """A launcher killed with SIGKILL cannot stop its trainers (their own sessions): they train on. Before, the
    relaunch started a second trainer on such a rung, which exited 2 at the rung's lock, and the rung was
    reported failed while it was training. Now the launcher waits for the holder, then goes on."""
    import threading

    from ladder.launch.local import wait_for_owner
    from ladder.runlock import live_holder
    from tests.test_reliability_rundir import _holder

    assert live_holder(tmp_path / "rung") is None  # never locked
    holder = _holder(tmp_path / "rung")
    try:
        assert live_holder(tmp_path / "rung")["pid"] == holder.pid
        threading.Timer(1.0, holder.kill).start()
        lines = []
        wait_for_owner(tmp_path / "rung", "r", lines.append, poll_s=0.1)
    finally:
        holder.kill()
        holder.wait()
    assert len(lines) == 1 and f"r: its run directory is in use by pid {holder.pid}" in lines[0]
    assert live_holder(tmp_path / "rung") is None  # the dead holder's lock file is free
    wait_for_owner(tmp_path / "rung", "r", lines.append)
    assert len(lines) == 1
