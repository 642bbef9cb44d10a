"""End to end: `ladder run configs/smoke.py:quick` (the embedded default on a few-minute budget), interrupted
in the training stage and resumed; and dry runs of the cloud- and GPU-sized configs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("plan", "train", "collect", "predict", "self_check", "report")


def ladder(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ladder", *args], cwd=ROOT, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_quick_smoke_run_interrupted_in_training_then_resumed(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "ladder", "run", "configs/smoke.py:quick", "--out", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = out / "rungs" / "45k-0.2xC" / "status.json"
    deadline = time.time() + 900  # generous: under load (or beside other test workers) the rungs start late
    while time.time() < deadline and proc.poll() is None:
        # past its first evaluation (step 23) and before its second (45): the resume must neither repeat nor lose rows
        if second.exists() and json.loads(second.read_text()).get("step", 0) >= 30:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGTERM)  # as a scheduler or Ctrl-C would: trainers save, nothing is orphaned
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, log[-2000:]
    stages = json.loads((out / "stages.json").read_text())
    assert "plan" in stages and "train" not in stages
    interrupted = json.loads(second.read_text())
    assert interrupted["state"] in ("preempted", "running"), interrupted  # stopped before its end
    assert interrupted["step"] < interrupted["total_steps"]

    done = ladder("run", "configs/smoke.py:quick", "--out", str(out), timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "plan: done earlier" in done.stdout
    stages = json.loads((out / "stages.json").read_text())
    assert set(STAGES) <= set(stages)
    plan = json.loads((out / "plan.json").read_text())
    assert json.loads(second.read_text())["state"] == "done"

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    tasks = {"prose_continuation", "code_next_line", "legal_continuation"}
    assert {r["task"] for r in rows} == tasks
    for rung in plan["rungs"]:  # one row per task per evaluation, no duplicates left by the interruption
        mine = [(int(r["step"]), r["task"]) for r in rows if r["run"] == rung["name"]]
        assert sorted(mine) == sorted((s, t) for s in rung["eval_steps"] for t in tasks), rung["name"]
    pred = json.loads((out / "predictions.json").read_text())
    check = json.loads((out / "self_check.json").read_text())
    assert set(pred) == {"smoke-target", check["run"]}
    for per_task in pred.values():
        assert set(per_task) == tasks
        for r in per_task.values():
            assert 0 <= r["acc_lo"] <= r["acc"] <= r["acc_hi"] <= 1 and r["loss"] > 0
    assert set(check["tasks"]) == tasks
    for name in ("report.md", "plots/step1.png", "plots/step2.png", "plots/chain.png", "plots/loss_curves.png",
                 "backtest.json"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    for section in ("## Plan", "## Predictions", "## Back-test", "## Self-check", "## Time and compute"):
        assert section in report

    again = ladder("run", "configs/smoke.py:quick", "--out", str(out), timeout=120)  # all done: nothing to do
    assert again.returncode == 0 and again.stdout.count("done earlier") == len(STAGES)


def test_cloud_and_gpu_configs_dry_run(tmp_path):
    env = dict(os.environ, PATH="/nonexistent")  # a dry run needs no cloud tools
    for config in ("configs/olmo_ladder.py", "configs/gpu_ladder.py"):
        r = subprocess.run([sys.executable, "-m", "ladder", "run", config, "--dry-run", "--out",
                            str(tmp_path / Path(config).stem)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, (config, r.stderr[-2000:])
        assert "ladder train --plan" in r.stdout
    olmo = json.loads((tmp_path / "olmo_ladder" / "plan.json").read_text())
    assert len(olmo["rungs"]) == 16 and abs(olmo["fraction"] - 0.0092) < 0.0002


def test_bad_override_is_one_line_exit_2(tmp_path):
    r = ladder("run", "configs/smoke.py", "--dry-run", "--out", str(tmp_path), "--config.predict.bootstrapp=3")
    assert r.returncode == 2 and "bootstrapp" in r.stderr and "Traceback" not in r.stderr


def test_sigterm_in_the_launcher_phase_is_the_sigterm_line_and_143(tmp_path, monkeypatch, capsys):
    """`ladder run`'s training stage runs the local launcher, which installs its own SIGTERM handler: before
    (session 8) that handler raised a plain KeyboardInterrupt, so the run ended with "interrupted" and 130
    instead of the SIGTERM line and 143 every other verb gives. No trainer starts: the rung signals itself."""
    from ladder import cli
    from ladder.launch import local

    def rung_sends_sigterm(self, job, opts, devices, *_):
        os.kill(os.getpid(), signal.SIGTERM)
        local._STOP.wait(10)  # set by the launcher once it has the interrupt
        return False

    monkeypatch.setattr(local.LocalBackend, "run_rung", rung_sends_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["run", "configs/smoke.py:quick", "-o", str(tmp_path / "run")]) == 143
    assert capsys.readouterr().err.endswith("ladder run: interrupted by SIGTERM; nothing half-written (every file is "
                                            "written whole or not at all), re-run the same command to do the work\n")
    assert signal.getsignal(signal.SIGTERM) is before
    assert "train" not in json.loads((tmp_path / "run" / "stages.json").read_text())
