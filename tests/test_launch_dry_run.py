"""Golden `ladder launch --dry-run` output for every backend, checked against the real gcloud CLI offline.

The goldens are exact: a changed command is a changed launch, so update them only on purpose
(LADDER_UPDATE_GOLDENS=1 rewrites tests/golden/launch_*.txt; read the diff before committing).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ladder import chips
from ladder.errors import LadderError
from ladder.launch import LaunchOptions, get_backend, jobs as jobs_lib, launch_plan, queued_resources
from ladder.launch.commands import run_steps
from launch_fixtures import pin_choose_slice, tiny_plan, write_plan

GOLDEN = Path(__file__).parent / "golden"
PACKAGE = "ladder[tpu] @ git+https://github.com/org/ladder@v0.1.0"
IMAGE = "us-docker.pkg.dev/proj/ladder/ladder:v0.1.0"


def options(backend: str, **kw) -> LaunchOptions:
    base = dict(plan_path="plan.json", run_root="gs://bkt/ladder", backend=backend, dry_run=True, project="proj",
                zone="us-west4-a", package=PACKAGE, image=IMAGE, cluster="ladder-cluster",
                overrides=("data.data_dir=gs://bkt/tfds",), python="python3")
    base.update(kw)
    return LaunchOptions(**base)


CASES = {
    # Slices chosen by the planner (stubbed to v5litepod-8) except the 60M size, overridden.
    "tpu-vm": dict(slices=jobs_lib.parse_slice_overrides(["60M=v5litepod-16"])),
    # Spot capacity; the 60M rung on two slices (DCN data axis).
    "queued-resources": dict(spot=True, slices=jobs_lib.parse_slice_overrides(["60M-2xC=2xv5litepod-16"])),
    "xpk": dict(slices=jobs_lib.parse_slice_overrides(["60M=2xv5litepod-16"])),
    "local": dict(run_root="runs/tiny", overrides=()),
}


@pytest.fixture
def plan_dir(tmp_path, monkeypatch):
    pin_choose_slice(monkeypatch)
    monkeypatch.chdir(tmp_path)
    write_plan(tmp_path / "plan.json", tiny_plan())
    return tmp_path


def dry_run(backend: str, tmp: Path) -> str:
    lines: list[str] = []
    assert launch_plan(options(backend, **CASES[backend]), print_fn=lines.append) == 0
    # Time estimates come from the planner's throughput model (tested below), not part of the golden.
    text = "\n".join(line for line in lines if not line.startswith("# estimate:")) + "\n"
    return text.replace(str(tmp), "$TMP").replace(jobs_lib.plan_digest("plan.json"), "$DIGEST")


@pytest.mark.parametrize("backend", list(CASES))
def test_dry_run_matches_golden(backend, plan_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # a dry run needs no cloud tools
    got = dry_run(backend, plan_dir)
    golden = GOLDEN / f"launch_{backend}.txt"
    if os.environ.get("LADDER_UPDATE_GOLDENS"):
        golden.write_text(got)
    assert got == golden.read_text()
    assert not (plan_dir / ".ladder-launch").exists(), "a dry run writes nothing"


def test_dry_run_estimates_chip_hours_from_the_plan(plan_dir):
    from ladder import plan as plan_lib

    lines: list[str] = []
    launch_plan(options("xpk", **CASES["xpk"]), print_fn=lines.append)
    estimates = [line for line in lines if line.startswith("# estimate:")]
    rung = jobs_lib.load("plan.json")["rungs"][1]
    hours = plan_lib.estimate_seconds(rung, chips.chip("v5e"), 32) / 3600
    assert estimates[1] == f"# estimate: 60M-2xC: {hours:,.1f} h on 32 v5e chips = {hours * 32:,.0f} chip-hours"
    assert estimates[-1].startswith("# estimate: total ")


def test_pack_groups_rungs_by_slice(plan_dir):
    lines: list[str] = []
    launch_plan(options("queued-resources", pack=True), print_fn=lines.append)
    text = "\n".join(lines)
    assert text.count("queued-resources create") == 1
    assert "--node-id=ladder-v5litepod-8" in text
    assert "--rung 20M-1xC" in text and "--rung 60M-2xC" in text


def test_default_slice_comes_from_choose_slice(plan_dir, monkeypatch):
    pin_choose_slice(monkeypatch, choose=lambda rung, chip: {"v6e": "v6e-8", "v5e": "v5litepod-4"}[chip])
    plan = jobs_lib.load("plan.json")
    assert {j.accelerator for j in jobs_lib.make_jobs(plan, "gs://b/r", chip="v6e")} == {"v6e-8"}
    jobs = jobs_lib.make_jobs(plan, "gs://b/r", slices=jobs_lib.parse_slice_overrides(["20M-1xC=4xv5p-64"]))
    # 60M-2xC's batch of 2 cannot split over 4 chips: its 2 heads take tensor=2 (default_mesh)
    assert [(j.accelerator, j.num_slices, j.overrides) for j in jobs] == [
        ("v5p-64", 4, ("mesh.dcn_data=4",)), ("v5litepod-4", 1, ("mesh.fsdp=2", "mesh.tensor=2"))]


def test_dry_run_passes_the_chosen_mesh_to_the_trainer(plan_dir):
    """On v5litepod-4 60M-2xC's 2 sequences cannot split over 4 chips: the trainer gets the tensor-parallel
    mesh the planner and the compile check assume, as --config.mesh.* flags before the user's overrides.
    A user mesh (--config.mesh.*) wins and nothing is added."""
    slices = jobs_lib.parse_slice_overrides(["60M-2xC=v5litepod-4"])
    lines: list[str] = []
    launch_plan(options("tpu-vm", slices=slices, rungs=["60M-2xC"]), print_fn=lines.append)
    text = "\n".join(lines)
    assert ("--rung 60M-2xC --run-dir gs://bkt/ladder/60M-2xC --distributed --config.mesh.fsdp=2 "
            "--config.mesh.tensor=2 --config.data.data_dir=gs://bkt/tfds") in text
    lines.clear()
    launch_plan(options("tpu-vm", slices=slices, rungs=["60M-2xC"], overrides=("mesh.data=2",)), print_fn=lines.append)
    text = "\n".join(lines)
    assert "--config.mesh.data=2" in text and "--config.mesh.tensor" not in text


@pytest.mark.parametrize("backend, options_kw, message", [
    ("tpu-vm", dict(package=None), "--package"),
    ("xpk", dict(image=None), "--image"),
    ("xpk", dict(cluster=None), "--cluster"),
    ("queued-resources", dict(run_root="runs/x"), "gs://"),
    ("tpu-vm", dict(slices={"60M": ("v5litepod-16", 2)}), "multislice"),
    ("tpu-vm", dict(slices={"7B": ("v5litepod-16", 1)}), "no rung or size named 7B"),
])
def test_bad_options_are_clear_errors(backend, options_kw, message, plan_dir):
    with pytest.raises(LadderError, match=message):
        launch_plan(options(backend, **options_kw), print_fn=lambda s: None)


def test_missing_cli_without_dry_run_is_a_clear_error(plan_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LadderError, match="gcloud not found on PATH.*--dry-run"):
        launch_plan(options("tpu-vm", dry_run=False), print_fn=lambda s: None)
    with pytest.raises(LadderError, match="xpk not found"):
        launch_plan(options("xpk", dry_run=False), print_fn=lambda s: None)


@pytest.mark.parametrize("bad, message", [
    ("{not json", "plan"),
    (json.dumps(dict(tiny_plan(), version=99)), "version is 99"),
])
def test_bad_plan_file_is_a_clear_error(bad, message, plan_dir):
    (plan_dir / "plan.json").write_text(bad)
    with pytest.raises(LadderError, match=message):
        launch_plan(options("tpu-vm"), print_fn=lambda s: None)


def test_real_launch_runs_the_dry_run_commands(plan_dir):
    """Without --dry-run the same commands run, in order, probes first; existing resources are reused."""
    calls = []

    def fake(argv, **kw):
        calls.append(argv)
        exists = argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "describe"] and argv[5] == "ladder-20m-1xc"
        return subprocess.CompletedProcess(argv, 0 if exists else 1 if "describe" in argv or "ls" in argv else 0,
                                           "", "")

    backend = get_backend("tpu-vm")
    backend.runner = fake
    opts = options("tpu-vm", dry_run=False, **CASES["tpu-vm"])
    plan = jobs_lib.load("plan.json")
    jobs = jobs_lib.make_jobs(plan, opts.run_root, chip=opts.chip, slices=opts.slices, overrides=opts.overrides)
    backend.launch(jobs, opts, print_fn=lambda s: None)
    verbs = [" ".join(a[3:5]) if a[1] == "compute" else " ".join(a[1:3]) for a in calls]
    assert verbs == ["storage ls", "storage cp",
                     "tpu-vm describe", "tpu-vm scp", "tpu-vm ssh",  # 20M VM exists: not created
                     "tpu-vm describe", "tpu-vm create", "tpu-vm scp", "tpu-vm ssh"]
    script = (plan_dir / ".ladder-launch" / "ladder-20m-1xc.sh").read_text()
    assert "--rung 20M-1xC --run-dir gs://bkt/ladder/20M-1xC" in script


def test_queued_resource_found_preempted_is_deleted_and_recreated(plan_dir):
    calls = []

    def fake(argv, **kw):
        calls.append(argv)
        if "--format=value(state.state)" in argv:
            return subprocess.CompletedProcess(argv, 0, "SUSPENDED\n" if "ladder-20m-1xc" in argv else "ACTIVE\n", "")
        if argv[:5] == ["gcloud", "compute", "tpus", "queued-resources", "describe"]:
            return subprocess.CompletedProcess(argv, 0 if "ladder-60m-2xc" in argv else 1, "", "")
        return subprocess.CompletedProcess(argv, 0, "", "")

    backend = get_backend("queued-resources")
    backend.runner = fake
    opts = options("queued-resources", dry_run=False, spot=True)
    jobs = jobs_lib.make_jobs(jobs_lib.load("plan.json"), opts.run_root, chip=opts.chip)
    backend.launch(jobs, opts, print_fn=lambda s: None)
    acted = [(a[4], a[5]) for a in calls if a[1] == "compute" and a[4] in ("delete", "create")]
    assert acted == [("delete", "ladder-20m-1xc"), ("create", "ladder-20m-1xc")]  # 60M is ACTIVE: left alone


def gcloud_verdict(argv: list[str]) -> tuple[list[str], str]:
    env = dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    return argv, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud not on PATH")
@pytest.mark.timeout(120)
def test_generated_gcloud_commands_parse_with_the_real_cli(plan_dir):
    """gcloud parses every flag before it needs an account: an account error means well formed."""
    argvs: list[list[str]] = []

    def collect(argv, **kw):
        argvs.append(argv)
        return subprocess.CompletedProcess(argv, 1 if ("describe" in argv or "ls" in argv) else 0, "", "")

    for backend in ("tpu-vm", "queued-resources"):
        opts = options(backend, dry_run=False, **CASES[backend])
        jobs = jobs_lib.make_jobs(jobs_lib.load("plan.json"), opts.run_root, chip=opts.chip, slices=opts.slices)
        steps = get_backend(backend).steps(jobs, opts)
        run_steps(steps, dry_run=False, print_fn=lambda s: None, runner=collect)  # writes the startup scripts
    argvs.append(queued_resources.delete_argv("x", ["--zone=z", "--project=p"]))
    unique = {tuple(a[:5]) + tuple(x.split("=")[0] for x in a[5:] if x.startswith("--")): a for a in argvs}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for argv, text in pool.map(gcloud_verdict, unique.values()):
            assert "unrecognized arguments" not in text and "invalid choice" not in text, (argv, text)
            assert "active account" in text or "credential" in text.lower(), (argv, text)
