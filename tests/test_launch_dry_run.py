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
from ladder.launch import LaunchOptions, costs, get_backend, jobs as jobs_lib, launch_plan, queued_resources
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
    launch_plan(options("xpk", prices=costs.parse_prices(["v5e=1e6"]), **CASES["xpk"]), print_fn=lines.append)
    estimates = [line for line in lines if line.startswith("# estimate:")]
    rung = jobs_lib.load("plan.json")["rungs"][1]
    hours = plan_lib.estimate_seconds(rung, chips.chip("v5e"), 32) / 3600
    assert estimates[1] == (f"# estimate: 60M-2xC: 2xv5litepod-16, {hours:,.1f} h on 32 v5e chips = "
                            f"{costs.num(hours * 32)} chip-hours, ${costs.num(hours * 32 * 1e6)} at $1000000.00/chip-hour")
    assert estimates[-1].startswith("# estimate: total ")
    with pytest.raises(LadderError, match="--price v5x=1: expected CHIP=USD"):
        costs.parse_prices(["v5x=1"])


def test_a_ladder_that_evaluates_no_tasks_is_warned_before_it_starts(plan_dir, capsys):
    """Rungs with eval steps but no eval.tasks evaluate nothing and leave `ladder collect` no rows: said on stderr
    before the launch; naming tasks quiets it."""
    plan = tiny_plan()
    for rung in plan["rungs"]:
        rung["eval_steps"] = [rung["total_steps"]]
    write_plan(plan_dir / "plan.json", plan)
    launch_plan(options("tpu-vm", **CASES["tpu-vm"]), print_fn=lambda line: None)
    assert "2 rung(s) (20M-1xC, 60M-2xC) evaluate no tasks (eval.tasks is empty)" in capsys.readouterr().err
    launch_plan(options("tpu-vm", overrides=("eval.tasks=embedded",), **CASES["tpu-vm"]), print_fn=lambda line: None)
    assert "evaluate no tasks" not in capsys.readouterr().err


def test_one_chip_everywhere_from_the_plan(plan_dir, monkeypatch):
    """launch and compile take the chip from the plan's family (the OLMo ladder: v5p) unless overridden."""
    from ladder import plan as plan_lib

    if not hasattr(plan_lib, "FAMILIES"):
        pytest.skip("needs the planner's families")
    assert jobs_lib.plan_chip({"family": "olmo"}) == "v5p"
    assert jobs_lib.plan_chip({"family": "olmo"}, "v6e") == "v6e"
    assert jobs_lib.plan_chip({"family": "smoke"}) == jobs_lib.DEFAULT_CHIP  # planned on CPU: no TPU chip
    assert LaunchOptions("p", "r").chip is None


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
    assert ("--rung 60M-2xC --run-dir gs://bkt/ladder/60M-2xC $DISTRIBUTED --config.mesh.fsdp=2 "
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


class FakeCloud:
    """A gcloud stand-in for lifecycle tests: resources by name with a state; `tick` scripts the world."""

    def __init__(self, states=None):
        self.states, self.calls = dict(states or {}), []

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        verb, name = (argv[4], argv[5]) if argv[1] == "compute" else (argv[2], None)
        if verb == "describe":
            found = name in self.states
            return subprocess.CompletedProcess(argv, 0 if found else 1, self.states.get(name, "") + "\n", "")
        if verb == "create":
            self.states[name] = "READY" if argv[3] == "tpu-vm" else "ACTIVE"
        if verb == "delete":
            self.states.pop(name)
        return subprocess.CompletedProcess(argv, 0 if verb != "ls" else 1, "", "")

    def actions(self):
        return [(a[4], a[5]) for a in self.calls if a[1] == "compute" and a[4] not in ("describe",)]


def lifecycle_jobs(tmp, backend_name, **kw):
    opts = options(backend_name, dry_run=False, run_root=str(tmp / "runs"), poll_s=0, **kw)
    plan = jobs_lib.load("plan.json")
    jobs = jobs_lib.make_jobs(plan, opts.run_root, chip=jobs_lib.plan_chip(plan, opts.chip), slices=opts.slices)
    return opts, jobs


def finish(run_dir, state="done"):
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "status.json").write_text(json.dumps({"state": state, "step": 8}))


def test_tpu_vm_lifecycle_recreates_a_preempted_vm_and_deletes_finished_ones(plan_dir):
    """An existing live VM is watched (not restarted); a PREEMPTED one is deleted, created, its script copied
    and started again; each VM is deleted once its rung is done; launch.json counts the attempts."""
    from ladder.launch import lifecycle

    cloud = FakeCloud({"ladder-20m-1xc": "READY", "ladder-60m-2xc": "PREEMPTED"})
    backend = get_backend("tpu-vm")
    backend.runner = cloud
    opts, jobs = lifecycle_jobs(plan_dir, "tpu-vm", **CASES["tpu-vm"])
    ticks = iter([
        lambda: cloud.states.update({"ladder-60m-2xc": "PREEMPTED"}),  # preempted again mid-rung
        lambda: finish(jobs[0].run_dir),
        lambda: finish(jobs[1].run_dir),
    ])
    printed = []
    rc = lifecycle.watch(backend, backend.groups(jobs, opts), opts, printed.append, sleep=lambda s: next(ticks)())
    assert rc == 0, printed
    assert cloud.actions() == [
        ("delete", "ladder-60m-2xc"), ("create", "ladder-60m-2xc"), ("scp", ".ladder-launch/ladder-60m-2xc.sh"),
        ("ssh", "ladder-60m-2xc"),  # start: 20M's VM is READY (watched), 60M's is PREEMPTED
        ("delete", "ladder-60m-2xc"), ("create", "ladder-60m-2xc"), ("scp", ".ladder-launch/ladder-60m-2xc.sh"),
        ("ssh", "ladder-60m-2xc"),  # tick 1
        ("delete", "ladder-20m-1xc"),  # tick 2: 20M done
        ("delete", "ladder-60m-2xc")]  # tick 3: 60M done
    assert cloud.states == {}
    record = json.loads((Path(jobs[1].run_dir) / "launch.json").read_text())
    assert (record["attempts"], record["state"], record["resource"]) == (2, "done", "ladder-60m-2xc")
    assert record["logs"] == jobs[1].run_dir + "/logs"


def test_queued_resources_keep_and_give_up(plan_dir):
    """--keep leaves finished requests standing; a request FAILED max_recreates times is given up."""
    from ladder.launch import lifecycle

    cloud = FakeCloud()
    backend = get_backend("queued-resources")
    backend.runner = cloud
    opts, jobs = lifecycle_jobs(plan_dir, "queued-resources", keep=True, max_recreates=2)

    def tick():
        finish(jobs[0].run_dir)
        cloud.states["ladder-60m-2xc"] = "FAILED"

    printed = []
    rc = lifecycle.watch(backend, backend.groups(jobs, opts), opts, printed.append, sleep=lambda s: tick())
    assert rc == 1 and printed[-1].startswith("# failed: 60M-2xC")
    assert cloud.actions() == [("create", "ladder-20m-1xc"), ("create", "ladder-60m-2xc"),
                               ("delete", "ladder-60m-2xc"), ("create", "ladder-60m-2xc")]
    assert cloud.states == {"ladder-20m-1xc": "ACTIVE", "ladder-60m-2xc": "FAILED"}  # kept; given up


def test_a_worker_that_gave_up_fails_the_rung(plan_dir):
    """A worker's exit marker (non-zero after its retries) ends the watch for that rung; the resource goes."""
    from ladder.launch import lifecycle

    cloud = FakeCloud()
    backend = get_backend("queued-resources")
    backend.runner = cloud
    opts, jobs = lifecycle_jobs(plan_dir, "queued-resources", rungs=None)
    jobs = jobs[:1]

    def tick():
        (Path(jobs[0].run_dir) / "logs").mkdir(parents=True, exist_ok=True)
        (Path(jobs[0].run_dir) / "logs" / "w0.exit").write_text("1\n")

    printed = []
    assert lifecycle.watch(backend, backend.groups(jobs, opts), opts, printed.append, sleep=lambda s: tick()) == 1
    assert cloud.actions() == [("create", "ladder-20m-1xc"), ("delete", "ladder-20m-1xc")]


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
        jobs = jobs_lib.make_jobs(jobs_lib.load("plan.json"), opts.run_root, chip=jobs_lib.plan_chip(jobs_lib.load('plan.json'), opts.chip), slices=opts.slices)
        steps = get_backend(backend).steps(jobs, opts)
        run_steps(steps, dry_run=False, print_fn=lambda s: None, runner=collect)  # writes the startup scripts
    for backend in ("tpu-vm", "queued-resources"):  # the lifecycle's probes and deletes
        b, opts = get_backend(backend), options(backend)
        argvs += [b.state_argv("x", opts), b.delete_argv("x", opts)]
    unique = {tuple(a[:5]) + tuple(x.split("=")[0] for x in a[5:] if x.startswith("--")): a for a in argvs}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for argv, text in pool.map(gcloud_verdict, unique.values()):
            assert "unrecognized arguments" not in text and "invalid choice" not in text, (argv, text)
            assert "active account" in text or "credential" in text.lower(), (argv, text)


@pytest.mark.parametrize("given, wanted", [
    ("ladder @ git+https://github.com/org/ladder@v1", "ladder[gcs,tpu] @ git+https://github.com/org/ladder@v1"),
    ("ladder[tpu] @ git+https://x/y", "ladder[gcs,tpu] @ git+https://x/y"),
    ("ladder[bench]==0.1.0", "ladder[bench,gcs,tpu]==0.1.0"),
    ("ladder", "ladder[gcs,tpu]"),
])
def test_workers_install_the_tpu_extra_whatever_the_user_passed(given, wanted):
    from ladder.launch.commands import with_extras

    assert with_extras(given) == wanted


def test_worker_script_sets_itself_up_and_is_valid_bash(plan_dir, tmp_path):
    """uv-provisioned Python 3.11 venv, the tpu extra, a device check before training, valid bash."""
    from ladder.launch.commands import worker_script

    plan = jobs_lib.load("plan.json")
    jobs = jobs_lib.make_jobs(plan, "gs://b/r", slices=jobs_lib.parse_slice_overrides(["20M-1xC=v4-16"]))
    text = worker_script(jobs[:1], plan_uri="gs://b/r/plan.json", package="gs://b/wheels/ladder-0.1.0-py3-none-any.whl",
                         title="t")
    assert "uv venv --quiet --python 3.11" in text
    assert 'PACKAGE="ladder[gcs,tpu] @ file://$WORK/ladder-0.1.0-py3-none-any.whl"' in text
    # v4-16 = 8 chips: the preflight runs before the plan is fetched and before any rung trains
    assert text.index("-m ladder.launch.preflight --devices 8") < text.index("-m ladder train")
    (tmp_path / "w.sh").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "w.sh")]).returncode == 0
