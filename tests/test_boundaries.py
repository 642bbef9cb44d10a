"""Package boundaries that keep light verbs light: the launcher, run-dir I/O and config resolution import no JAX.

`ladder launch`, `ladder status` and `ladder collect` run on a laptop or a CI box without accelerators; a JAX
import there costs seconds and ties the launcher to the trainer's dependencies. Each check runs in a fresh
interpreter, so modules imported by other tests cannot hide an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIGHT_MODULES = ["ladder.launch", "ladder.launch.jobs", "ladder.launch.commands", "ladder.launch.status",
                 "ladder.launch.local", "ladder.launch.cloud", "ladder.launch.tpu_vm",
                 "ladder.launch.queued_resources", "ladder.launch.xpk", "ladder.launch.fetch", "ladder.rundir",
                 "ladder.launch.lifecycle", "ladder.launch.costs", "ladder.launch.emulator", "ladder.launch.standin",
                 "ladder.launch.rehearse", "ladder.run_state",
                 "ladder.train_config", "ladder.results", "ladder.topology", "ladder.compile_report", "ladder.aot"]


def _imported_after(code: str) -> set[str]:
    """Top-level module names in sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                         check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_launcher_modules_import_no_jax():
    modules = _imported_after("\n".join(f"import {m}" for m in LIGHT_MODULES))
    assert "jax" not in modules and "flax" not in modules
    assert "ladder.train" not in modules and "ladder.model" not in modules


def test_cloud_dry_run_imports_no_jax(tmp_path):
    """A whole `ladder launch --dry-run` (jobs, slices, meshes, config hashes, worker scripts) stays JAX-free."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from launch_fixtures import tiny_plan, write_plan
from pathlib import Path
from ladder.launch import LaunchOptions, launch_plan
path = write_plan(Path({str(tmp_path)!r}) / "plan.json", tiny_plan())
lines = []
assert launch_plan(LaunchOptions(path, "gs://bkt/ladder", backend="queued-resources", dry_run=True,
                                 package="ladder[tpu]", work_dir={str(tmp_path / "w")!r}), lines.append) == 0
assert any("queued-resources create" in line for line in lines)
"""
    modules = _imported_after(code)
    assert "jax" not in modules and "ladder.train" not in modules


def test_one_rung_resolution_for_launcher_and_trainer(tmp_path):
    """The hash the launcher checks run dirs against is the hash `ladder train --plan --rung` trains with."""
    import argparse

    from launch_fixtures import tiny_plan, write_plan

    from ladder.commands.train import build_config
    from ladder.launch.jobs import make_jobs
    from ladder.train_config import config_hash, resolve_rung

    plan = tiny_plan()
    path = write_plan(tmp_path / "plan.json", plan)
    overrides = ("train.log_every=3", "model.remat=full")
    for job in make_jobs(plan, str(tmp_path / "runs"), chip=None, overrides=overrides):
        args = argparse.Namespace(plan=path, rung=job.name, config=None, config_overrides=list(job.overrides),
                                  coordinator=None, num_processes=None, process_id=None, distributed=True)
        trained = build_config(args)
        assert job.config_hash == config_hash(trained) == resolve_rung(plan, job.name, overrides)[1]
        assert trained.train.log_every == 3 and trained.model.remat and trained.name == job.name
    other = resolve_rung(plan, "20M-1xC", ("train.log_every=4",))[1]
    assert other != make_jobs(plan, str(tmp_path / "runs"), chip=None, overrides=overrides)[0].config_hash


def test_every_rung_key_the_config_reads_is_a_plan_field():
    """train_config.RUNG_KEYS (rung key -> config key) reads only fields a validated plan rung must carry."""
    from ladder.plan.planfile import RUNG_FIELDS
    from ladder.train_config import RUNG_KEYS

    assert set(RUNG_KEYS) <= set(RUNG_FIELDS)
