"""`ladder status` / `collect` on hand-written run directories (local and gs://), the relaunch guards
(skip done rungs, refuse a run dir of another config) and the local backend's retry policy. Fast: no JAX
training here (tests/test_launch_local.py runs the real trainer)."""

from __future__ import annotations

import argparse
import json
import stat
import sys
from pathlib import Path

import pytest
from etils.epath import testing as epath_testing

from ladder import results
from ladder.errors import LadderError
from ladder.launch import LaunchOptions, launch_plan
from ladder.launch.status import collect, format_status, ladder_status
from launch_fixtures import pin_choose_slice, tiny_plan, write_plan

NOW = 1_800_000_000.0


def write_run(run_dir: Path, status: dict | None = None, rows: list[dict] | None = None, **files):
    run_dir.mkdir(parents=True, exist_ok=True)
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(status))
    if rows:
        results.append_rows(run_dir / "results.csv", rows)
    for name, obj in files.items():
        (run_dir / f"{name}.json").write_text(json.dumps(obj))


def row(rung, step, task, loss, acc, d):
    return dict(run=rung["name"], n=rung["n"], d=d, step=step, task=task, loss=loss, acc=acc)


@pytest.fixture
def ladder_dir(tmp_path, monkeypatch):
    pin_choose_slice(monkeypatch)
    plan = tiny_plan(steps=100)
    a, b = plan["rungs"]
    write_run(tmp_path / "runs" / a["name"], dict(state="done", step=100, total_steps=100, loss=3.25,
              tokens_per_s=5000.0, eta_s=0.0, tokens=a["tokens"], updated=NOW - 30),
              rows=[row(a, 100, "arc_easy", 1.5, 0.4, a["tokens"]), row(a, 100, "piqa", 1.2, 0.6, a["tokens"])])
    write_run(tmp_path / "runs" / b["name"], dict(state="running", step=40, total_steps=100, loss=4.5,
              tokens_per_s=2000.0, eta_s=7200.0, tokens=b["tokens"] * 40 // 100, updated=NOW - 3600),
              rows=[row(b, 40, "arc_easy", 1.9, 0.3, b["tokens"] * 40 // 100)])
    return plan, tmp_path


def test_status_lines_and_totals(ladder_dir, monkeypatch):
    plan, tmp = ladder_dir
    monkeypatch.setattr("time.time", lambda: NOW)
    rows = ladder_status(plan, str(tmp / "runs"))
    a, b = plan["rungs"]
    assert [(r.name, r.state, r.step, r.loss) for r in rows] == [(a["name"], "done", 100, 3.25),
                                                                 (b["name"], "running", 40, 4.5)]
    text = format_status(rows)
    spent = a["flops"] + 0.4 * b["flops"]
    pct = 100 * spent / (a["flops"] + b["flops"])
    assert f"({pct:.1f}% of the plan)" in text
    assert "1 done, 1 running, 0 failed, 0 pending" in text
    assert "2.0h" in text  # ETA of the running rung
    assert "stopped or preempted?" in text  # its status.json is an hour old


def test_status_pending_and_launcher_failure(tmp_path, monkeypatch):
    pin_choose_slice(monkeypatch)
    plan = tiny_plan()
    write_run(tmp_path / plan["rungs"][1]["name"], launch=dict(state="failed", attempts=3, exit_codes=[1, 1, 1]))
    rows = ladder_status(plan, str(tmp_path))
    assert [r.state for r in rows] == ["pending", "failed"]
    assert "exit codes [1, 1, 1]" in rows[1].note


def test_collect_gathers_rows_and_adds_plan_columns(ladder_dir):
    plan, tmp = ladder_dir
    out = tmp / "results.csv"
    n, missing, skipped = collect(plan, str(tmp / "runs"), str(out), partial=True)
    assert (n, missing, skipped) == (3, [], [])
    table = results.read_table(out)
    assert list(table["task"]) == ["arc_easy", "piqa", "arc_easy"]
    assert list(table["size"]) == ["20M", "20M", "60M"]
    b = plan["rungs"][1]
    assert table["flops"][2] == pytest.approx(b["tokens"] * 40 // 100 * b["flops_per_token"])
    with pytest.raises(LadderError, match="file exists.*--overwrite"):
        collect(plan, str(tmp / "runs"), str(out))
    assert collect(plan, str(tmp / "runs"), str(out), overwrite=True, partial=True)[0] == 3


def test_collect_takes_finished_rungs_only_unless_partial(ladder_dir, capsys):
    """The running rung's early evaluation rows would look like a finished small run to the fit."""
    from ladder.commands import collect as collect_cmd

    plan, tmp = ladder_dir
    n, missing, skipped = collect(plan, str(tmp / "runs"), str(tmp / "done.csv"))
    assert (n, missing, skipped) == (2, [], ["60M-2xC"])
    assert list(results.read_table(tmp / "done.csv")["run"]) == ["20M-1xC", "20M-1xC"]
    path = write_plan(tmp / "plan.json", plan)
    parser = argparse.ArgumentParser()
    collect_cmd.add_arguments(parser)
    collect_cmd.run(parser.parse_args([path, "--run-root", str(tmp / "runs"), "-o", str(tmp / "cli.csv")]))
    out = capsys.readouterr().out
    assert "wrote 2 rows" in out and "skipped unfinished 60M-2xC (--partial includes them)" in out


def test_status_shows_attempts_tokens_and_logs_and_tails_them(ladder_dir, capsys):
    """A cloud launch's launch.json (attempts, log location) shows in status; --logs prints each worker's tail."""
    from ladder.commands import status as status_cmd

    plan, tmp = ladder_dir
    b = tmp / "runs" / "60M-2xC"
    (b / "launch.json").write_text(json.dumps(dict(attempts=2, logs="gs://bkt/ladder/60M-2xC/logs")))
    (b / "logs").mkdir()
    (b / "logs" / "w0.log").write_text("".join(f"line {i}\n" for i in range(100)))
    (b / "logs" / "w1.log").write_text("only line\n")
    rows = ladder_status(plan, str(tmp / "runs"))
    assert (rows[1].attempts, rows[1].logs) == (2, "gs://bkt/ladder/60M-2xC/logs")
    assert rows[0].logs == str(tmp / "runs" / "20M-1xC" / "launch.log")  # local default
    line = format_status(rows).splitlines()[2]
    assert line.split()[-2:] == ["2", "gs://bkt/ladder/60M-2xC/logs"] and " 2.56k " in line  # 40% of its 6400 tokens
    path = write_plan(tmp / "plan.json", plan)
    parser = argparse.ArgumentParser()
    status_cmd.add_arguments(parser)
    status_cmd.run(parser.parse_args([path, "--run-root", str(tmp / "runs"), "--logs", "60M-2xC", "--lines", "3"]))
    out = capsys.readouterr().out.splitlines()
    assert out == [f"==> {b}/logs/w0.log (last 3 of 100 lines) <==", "line 97", "line 98", "line 99",
                   f"==> {b}/logs/w1.log (last 1 of 1 lines) <==", "only line"]


def test_status_of_one_train_run_directory(tmp_path, capsys):
    """`ladder status runs/tiny`: a run directory `ladder train` wrote gets the rung line (name = the directory,
    steps and FLOPs from status.json and config.json); a directory that is no run is one line naming both forms."""
    from ladder.commands import status as status_cmd

    run = tmp_path / "tiny"
    write_run(run, dict(state="done", step=200, total_steps=200, loss=5.5608, tokens=409600, flops_per_token=10.0,
                        updated=NOW), config=dict(train=dict(global_batch=16, total_steps=200), model=dict(seq_len=128)))
    parser = argparse.ArgumentParser()
    status_cmd.add_arguments(parser)
    assert status_cmd.run(parser.parse_args([str(run)])) == 0
    head, line, total = capsys.readouterr().out.splitlines()
    assert line.split()[:5] == ["tiny", "done", "200/200", "100%", "410k"] and line.endswith("  -")  # no launch log
    assert "1 done" in total and "4.1e+06 of 4.1e+06 FLOPs (100.0% of the plan)" in total
    (tmp_path / "empty").mkdir()
    with pytest.raises(LadderError, match="without status.json or config.json; pass the plan file"):
        status_cmd.run(parser.parse_args([str(tmp_path / "empty")]))
    with pytest.raises(LadderError, match="is a run directory: --run-root and --logs apply to a plan file"):
        status_cmd.run(parser.parse_args([str(run), "--logs", "tiny"]))


def test_status_and_collect_read_gs_run_dirs(ladder_dir, monkeypatch):
    """gs:// goes through etils.epath; here its backend is mocked onto the local tmp dir."""
    plan, tmp = ladder_dir

    def local(path):
        return str(path).replace("gs://bucket/ladder", str(tmp / "runs"))

    with epath_testing.mock_epath(exists=lambda orig, p: orig(local(p)), open=lambda orig, p, m: orig(local(p), m)):
        rows = ladder_status(plan, "gs://bucket/ladder")
        n, _, _ = collect(plan, "gs://bucket/ladder", str(tmp / "gs.csv"), partial=True)
    assert [r.state for r in rows] == ["done", "running"] and n == 3


def test_relaunch_skips_done_rungs_and_refuses_foreign_run_dirs(ladder_dir):
    plan, tmp = ladder_dir
    path = write_plan(tmp / "plan.json", plan)
    printed: list[str] = []
    launch_plan(LaunchOptions(path, str(tmp / "runs"), dry_run=True, python="python3"), printed.append)
    assert printed[0] == "# 20M-1xC: done (step 100), skipped"
    assert len(printed) == 2 and "--rung 60M-2xC" in printed[1]

    from ladder.launch.jobs import make_jobs

    job = make_jobs(plan, str(tmp / "runs"), chip=None)[1]
    write_run(Path(job.run_dir), config=dict(config_hash=job.config_hash))
    launch_plan(LaunchOptions(path, str(tmp / "runs"), dry_run=True), printed.append)  # same config: fine
    before = (Path(job.run_dir) / "status.json").read_bytes()
    write_run(Path(job.run_dir), config=dict(config_hash="0123456789abcdef"))
    with pytest.raises(LadderError, match="belongs to a different plan or config.*another --run-root"):
        launch_plan(LaunchOptions(path, str(tmp / "runs")), printed.append)
    assert (Path(job.run_dir) / "status.json").read_bytes() == before  # nothing overwritten


@pytest.mark.parametrize("exit_code, attempts", [(1, 3), (2, 1)])
def test_failing_rung_is_retried_then_reported(tmp_path, monkeypatch, exit_code, attempts):
    """Exit 1 (a crash) is retried up to 3 times; exit 2 (bad input) is not retried."""
    pin_choose_slice(monkeypatch)
    path = write_plan(tmp_path / "plan.json", tiny_plan())
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('boom', sys.argv[1:4])\nsys.exit({exit_code})\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    printed: list[str] = []
    rc = launch_plan(LaunchOptions(path, str(tmp_path / "runs"), python=str(fake), rungs=["20M-1xC"]), printed.append)
    assert rc == 1
    record = json.loads((tmp_path / "runs" / "20M-1xC" / "launch.json").read_text())
    assert record["state"] == "failed" and record["exit_codes"] == [exit_code] * attempts
    log = (tmp_path / "runs" / "20M-1xC" / "launch.log").read_text()
    assert log.count("=== attempt") == attempts and "boom" in log
    assert printed[-1].startswith("# failed: 20M-1xC")


def test_dry_run_of_two_process_rungs_names_the_port(tmp_path, monkeypatch):
    pin_choose_slice(monkeypatch)
    path = write_plan(tmp_path / "plan.json", tiny_plan())
    printed: list[str] = []
    launch_plan(LaunchOptions(path, str(tmp_path / "r"), dry_run=True, processes=2, parallel=2,
                              devices=["0", "1", "2", "3"], python="python3", rungs=["20M-1xC"]), printed.append)
    assert printed == [
        f"CUDA_VISIBLE_DEVICES=0,1 python3 -m ladder train --plan {path} --rung 20M-1xC --run-dir {tmp_path}/r/20M-1xC "
        f"--coordinator '127.0.0.1:$PORT' --num-processes 2 --process-id {i}  # log: {tmp_path}/r/20M-1xC/{log}"
        for i, log in enumerate(["launch.log", "launch.1.log"])]


def test_status_shows_a_preempted_rung(tmp_path, monkeypatch):
    pin_choose_slice(monkeypatch)
    plan = tiny_plan(steps=100)
    write_run(tmp_path / plan["rungs"][0]["name"], dict(state="preempted", step=60, total_steps=100, loss=3.5,
              tokens=600, updated=NOW - 7200))
    monkeypatch.setattr("time.time", lambda: NOW)
    rows = ladder_status(plan, str(tmp_path))
    assert [r.state for r in rows] == ["preempted", "pending"]
    text = format_status(rows)
    assert "stopped by SIGTERM after saving step 60; relaunch to resume" in text
    assert "stopped or preempted?" not in text  # not the stale-running note
    assert "0 done, 0 running, 0 failed, 1 pending, 1 preempted" in text
