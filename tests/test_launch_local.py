"""The local backend end to end on CPU: a two-rung smoke plan, one rung SIGKILLed mid-way, the relaunch
resuming it to the same final metrics as an uninterrupted run; status and collect on the result; and a
rung shared by two processes on 127.0.0.1 (the multi-host path)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.errors import LadderError
from ladder.launch import LaunchOptions, launch_plan
from ladder.launch.status import format_status, ladder_status
from ladder.rundir import collect
from launch_fixtures import tiny_plan, write_plan

pytestmark = pytest.mark.slow  # trains a two-rung plan, kills and relaunches it

KILLED, OTHER = "20M-1xC", "60M-2xC"
STEPS, KILL_AT = 12, 7  # checkpoints at 4, 6 (the plan's checkpoint_steps) and 8: the kill loses step 7
DEFAULTS = {"data.source": "synthetic", "train.log_every": 1, "train.checkpoint_every": 4,
            "train.async_checkpoints": False}


def metrics(run_dir: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in rows]


@pytest.fixture(scope="module")
def ladder_runs(tmp_path_factory):
    """Run the scenario once; the tests below check its pieces."""
    tmp = tmp_path_factory.mktemp("local")
    plan = write_plan(tmp / "plan.json", tiny_plan(steps=STEPS, defaults=DEFAULTS))
    wrapper = tmp / "python"
    wrapper.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "launch_kill_wrapper.py").read_text())
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    log: list[str] = []
    out = dict(tmp=tmp, plan=plan, log=log)

    # A two-process run of the rung that will be killed (its own compilation cache: the launcher's default).
    out["two_process_rc"] = launch_plan(LaunchOptions(plan, str(tmp / "two"), rungs=[KILLED], processes=2),
                                        log.append)
    # The one-process launches below share one compilation cache (the launcher keeps one per run root): the
    # killed run and the relaunch load the reference's programs instead of compiling them again (98.6 -> 88.6
    # CPU-s for this file). Bitwise comparisons stay bitwise: a loaded program is the compiled one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp / ".jax-cache"))
        # Uninterrupted reference for the rung that will be killed, with the one XLA CPU thread the parallel
        # launch below gives its trainers (the thread count changes the bits: ladder/cpu_threads.py). The
        # relaunch runs with parallel=1, so it gets no count from the launcher: the rung's recorded one must win.
        mp.setenv("LADDER_XLA_CPU_THREADS", "1")
        out["reference_rc"] = launch_plan(LaunchOptions(plan, str(tmp / "reference"), rungs=[KILLED]), log.append)
        mp.delenv("LADDER_XLA_CPU_THREADS")

        # Both rungs at once; KILLED dies at step 7 and, with one attempt allowed, is reported failed.
        mp.setenv("LADDER_TEST_KILL_RUNG", KILLED)
        mp.setenv("LADDER_TEST_KILL_AT_STEP", str(KILL_AT))
        out["killed_rc"] = launch_plan(LaunchOptions(plan, str(tmp / "runs"), parallel=2, max_attempts=1,
                                                     python=str(wrapper)), log.append)
        mp.delenv("LADDER_TEST_KILL_RUNG")
        mp.delenv("LADDER_TEST_KILL_AT_STEP")
        out["after_kill"] = ladder_status(json.loads(Path(plan).read_text()), str(tmp / "runs"))
        out["metrics_after_kill"] = metrics(tmp / "runs" / KILLED)

        # The relaunch: OTHER is done and skipped, KILLED resumes from its step-6 checkpoint.
        log.append("--- relaunch")
        out["relaunch_rc"] = launch_plan(LaunchOptions(plan, str(tmp / "runs")), log.append)
    return out


@pytest.mark.timeout(300)
def test_killed_rung_resumes_to_the_uninterrupted_result(ladder_runs):
    r, tmp = ladder_runs, ladder_runs["tmp"]
    assert r["reference_rc"] == 0 and r["killed_rc"] == 1 and r["relaunch_rc"] == 0, r["log"]
    assert [s for s, _, _ in r["metrics_after_kill"]][-1] == KILL_AT  # died mid-way, after logging step 7
    relaunch = r["log"][r["log"].index("--- relaunch"):]
    assert f"# {OTHER}: done (step {STEPS}), skipped" in relaunch
    assert any(line.startswith(f"# {KILLED}: attempt 1") for line in relaunch)
    resumed, reference = metrics(tmp / "runs" / KILLED), metrics(tmp / "reference" / KILLED)
    steps = [s for s, _, _ in resumed]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # the lost steps were redone, once
    # Bitwise: the same loss and gradient norm at every step both runs logged. (The trainer does not log
    # the first step after a start, which includes compilation: step 1, and step 7 after the resume.)
    assert [row for row in reference if row[0] in steps] == resumed
    assert len(resumed) >= STEPS - 2
    status = json.loads((tmp / "runs" / KILLED / "status.json").read_text())
    assert status["state"] == "done" and status["loss"] == reference[-1][1]


def test_status_during_and_after(ladder_runs):
    by_name = {s.name: s for s in ladder_runs["after_kill"]}
    assert by_name[KILLED].state == "failed" and by_name[KILLED].step < STEPS
    assert "exit codes [-9]" in by_name[KILLED].note
    assert by_name[OTHER].state == "done"
    plan = json.loads(Path(ladder_runs["plan"]).read_text())
    final = ladder_status(plan, str(ladder_runs["tmp"] / "runs"))
    assert [s.state for s in final] == ["done", "done"]
    text = format_status(final)
    assert "2 done, 0 running, 0 failed, 0 pending" in text and "(100.0% of the plan)" in text
    cli = subprocess.run([sys.executable, "-m", "ladder", "status", ladder_runs["plan"], "--run-root",
                          str(ladder_runs["tmp"] / "runs")], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    # Same table from the CLI, up to the "updated ... ago" column (time moved on).
    assert [line.split()[:5] for line in cli.stdout.strip().splitlines()] == [
        line.split()[:5] for line in text.splitlines()]


def test_collect(ladder_runs):
    plan = json.loads(Path(ladder_runs["plan"]).read_text())
    root, out = str(ladder_runs["tmp"] / "runs"), ladder_runs["tmp"] / "results.csv"
    if not any((Path(root) / r["name"] / "results.csv").exists() for r in plan["rungs"]):
        # The plan's rungs train without evaluation tasks, so no rung wrote results.csv: a clear message.
        with pytest.raises(LadderError, match="no rung has evaluation results"):
            collect(plan, root, str(out))
        return
    n, missing = collect(plan, root, str(out))
    assert n > 0 and missing == []


def test_two_process_rung_matches_one_process(ladder_runs):
    tmp = ladder_runs["tmp"]
    assert ladder_runs["two_process_rc"] == 0, ladder_runs["log"]
    two, one = metrics(tmp / "two" / KILLED), metrics(tmp / "reference" / KILLED)
    assert [s for s, _, _ in two] == [s for s, _, _ in one]
    # Two processes shard the batch and the parameters (fsdp=2): same math, other reduction order.
    assert two[-1][1] == pytest.approx(one[-1][1], rel=1e-5)
    assert (tmp / "two" / KILLED / "launch.1.log").exists()  # process 1 logs beside process 0


def test_start_order_is_largest_first_without_two_of_one_shape_side_by_side():
    """Rungs of one shape share a compiled step through the persistent cache only once the first has compiled
    it: with 2 slots the second of a shape waits for another shape, where one is left; 1 slot is pure LPT."""
    from ladder.launch.jobs import Job
    from ladder.launch.local import start_order

    def job(d, mult):
        return Job(rung=dict(name=f"{d}-{mult}", d_model=d, n_layers=2, flops=d ** 3 * mult), run_dir=f"r/{d}-{mult}")

    jobs = [job(d, m) for d in (32, 48, 64) for m in (1, 2)]
    names = lambda order: [j.rung["name"] for j in order]  # noqa: E731
    assert names(start_order(jobs, 2)) == ["64-2", "48-2", "64-1", "48-1", "32-2", "32-1"]
    assert names(start_order(jobs, 1)) == ["64-2", "64-1", "48-2", "48-1", "32-2", "32-1"]
