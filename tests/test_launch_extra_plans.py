"""Rungs of another plan riding along in a local launch (`LaunchOptions.extra_plans`: `ladder run` trains the
self-check's rung beside the ladder's): each trainer reads its own plan, all share one pool and one thread rule,
finished ones are skipped, and a name in two plans or a cloud backend is refused before anything starts.
Trainers here are a fake python that records its argv and environment (no JAX)."""

from __future__ import annotations

import stat
import sys

import pytest

from ladder import cpu_threads
from ladder.errors import LadderError
from ladder.launch import LaunchOptions, launch_plan
from launch_fixtures import rung, tiny_plan, with_rungs, write_plan


def _fake_python(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport os, sys\nprint('argv', sys.argv[1:])\n"
                    f"print('threads', repr(os.environ.get('{cpu_threads.SWITCH}')))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return str(fake)


def _plans(tmp_path, check_name="check-90M-1xC"):
    main = write_plan(tmp_path / "plan.json", tiny_plan())
    check = write_plan(tmp_path / "check.json", with_rungs(tiny_plan(), [rung(check_name, "90M", 1, 64, 2, 4, 8)]))
    return main, check


def test_extra_plan_rungs_train_from_their_own_plan_in_the_same_pool(tmp_path, monkeypatch):
    monkeypatch.delenv(cpu_threads.SWITCH, raising=False)
    main, check = _plans(tmp_path)
    lines = []
    opts = LaunchOptions(main, str(tmp_path / "runs"), python=_fake_python(tmp_path), parallel=2, extra_plans=(check,))
    assert launch_plan(opts, lines.append) == 0
    assert "# 3 rung(s) done" in lines
    for name, plan in (("20M-1xC", main), ("60M-2xC", main), ("check-90M-1xC", check)):
        log = (tmp_path / "runs" / name / "launch.log").read_text()
        assert f"'--plan', '{plan}', '--rung', '{name}'" in log
        assert "threads '1'" in log  # one rule for the whole pool: the check trains like the ladder's rungs


def test_a_rung_name_in_two_plans_and_a_cloud_backend_are_refused(tmp_path):
    main, check = _plans(tmp_path, check_name="20M-1xC")
    with pytest.raises(LadderError, match="rung 20M-1xC is in two of the plans launched together"):
        launch_plan(LaunchOptions(main, str(tmp_path / "runs"), extra_plans=(check,)), lambda *_: None)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(LadderError, match="extra plans ride along in local launches only"):
        launch_plan(LaunchOptions(main, "gs://my-bucket/ladder", backend="tpu-vm", project="my-project",
                                  zone="us-central2-b", dry_run=True, extra_plans=(check,)), lambda *_: None)


@pytest.mark.parametrize("overrides, carried", [((), True), (("self_check.enabled=False",), False),
                                                (("launch.backend=tpu-vm",), False)])
def test_ladder_runs_train_stage_carries_the_self_check_rung_on_the_local_backend(tmp_path, monkeypatch, overrides,
                                                                                  carried):
    from ladder import run as run_lib
    from ladder.config import load_config

    calls = []
    monkeypatch.setattr(run_lib, "_launch", lambda ctx, plan, label, extra=(): calls.append((plan, label, extra)))
    ctx = run_lib.Context(load_config("configs/smoke.py:quick", list(overrides)), tmp_path)
    run_lib.stage_train(ctx)
    assert calls == [(ctx.plan_path, "train", (ctx.check_plan_path,) if carried else ())]
