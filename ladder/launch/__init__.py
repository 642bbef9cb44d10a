"""Launch a plan's rungs on the engines users already have: this machine, Cloud TPU VMs, queued resources,
or GKE through xpk. Never a scheduler of our own: each backend turns `Job`s into that engine's commands.

    from ladder.launch import LaunchOptions, launch_plan
    launch_plan(LaunchOptions("plan.json", "gs://bucket/ladder", backend="queued-resources", ...))

Relaunching is always safe: finished rungs are skipped, partial ones resume from their last checkpoint
(the trainer does that), and a run directory written by another plan is refused before anything starts.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import shutil
import sys
from typing import ClassVar

from ladder import rundir, storage
from ladder.errors import LadderError
from ladder.launch import jobs as jobs_lib
from ladder.launch.jobs import Job

BACKENDS = {
    "local": ("ladder.launch.local", "LocalBackend"),
    "tpu-vm": ("ladder.launch.tpu_vm", "TpuVmBackend"),
    "queued-resources": ("ladder.launch.queued_resources", "QueuedResourcesBackend"),
    "xpk": ("ladder.launch.xpk", "XpkBackend"),
}
CLOUD = ("tpu-vm", "queued-resources", "xpk")
# A `ladder run` config's launch field -> the backends that read it (config_checks.check_read_fields).
RUN_LAUNCH_READERS = {
    "chip": CLOUD, "project": CLOUD, "zone": CLOUD, "spot": CLOUD, "package": ("tpu-vm", "queued-resources"),
    "image": ("xpk",), "cluster": ("xpk",), "parallel": ("local",), "devices": ("local",),
    "max_attempts": ("local",), "stall_minutes": ("local",),
}


@dataclasses.dataclass
class LaunchOptions:
    plan_path: str
    run_root: str
    backend: str = "local"
    dry_run: bool = False
    chip: str | None = None  # TPU generation; None: the plan's (jobs.plan_chip)
    slices: dict = dataclasses.field(default_factory=dict)  # from jobs.parse_slice_overrides
    rungs: list[str] | None = None  # launch only these rungs
    overrides: tuple[str, ...] = ()  # "key=value" train-config overrides for every rung
    # Dry runs on cloud backends: compile each rung for its slice here first (ladder.aot, needs libtpu) and
    # stop when one does not fit. The CLI turns it on (--no-compile-check turns it off).
    compile_check: bool = False
    # Cloud backends.
    project: str | None = None
    zone: str | None = None
    runtime_version: str | None = None
    package: str | None = None  # pip requirement or gs:// wheel installed on TPU VMs
    image: str | None = None  # container image with ladder installed (xpk)
    cluster: str | None = None  # GKE cluster (xpk)
    spot: bool = False
    keep: bool = False  # leave the resources standing when their rungs are done (default: delete them)
    poll_s: float = 60.0  # how often a cloud launch checks its resources and rungs
    max_recreates: int = 20  # a resource preempted or failed this many times is given up
    prices: dict | None = None  # USD per chip-hour by chip name (launch.costs.parse_prices)
    pack: bool = False  # queued-resources: one request per slice type, running its rungs in turn
    name_prefix: str = "ladder"
    work_dir: str = ".ladder-launch"  # local files a cloud launch writes (startup scripts)
    # Local backend.
    parallel: int = 1
    # Plans whose pending rungs join this launch's pool (local backend): `ladder run` trains the self-check's
    # rung beside the ladder's, as it reads nothing of theirs, so both cores stay busy to the end.
    extra_plans: tuple[str, ...] = ()
    processes: int = 1
    devices: list[str] | None = None
    max_attempts: int = 3
    # An attempt whose trainers write no log line, metrics row or status for this long is stopped as hung and
    # retried (0: wait forever). Longer than any compile or evaluation between two log lines.
    stall_minutes: float = 60.0
    python: str = sys.executable


class Backend(abc.ABC):
    """An engine that runs jobs. `launch` returns an exit code (0: all launched or done)."""

    name: ClassVar[str]
    tools: ClassVar[tuple[str, ...]] = ()  # CLIs a real launch needs (never a dry run)
    cloud: ClassVar[bool] = True  # cloud backends need a gs:// run root and a slice per rung

    def check_options(self, opts: LaunchOptions) -> None:
        """Raise LadderError for options this backend cannot work with."""

    @abc.abstractmethod
    def launch(self, jobs: list[Job], opts: LaunchOptions, print_fn=print) -> int: ...


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise LadderError(f"--backend: unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()


def launch_plan(opts: LaunchOptions, print_fn=print, runner=None) -> int:
    """Check everything, then hand the rungs that still need work to the backend. `runner` replaces
    subprocess.run for a cloud backend's commands (the rehearsal's gcloud stand-in; no CLI needed then)."""
    backend = get_backend(opts.backend)
    if runner is not None:
        backend.runner = runner
    if opts.extra_plans and backend.cloud:
        raise LadderError(f"--backend {opts.backend}: extra plans ride along in local launches only; launch "
                          f"{', '.join(opts.extra_plans)} on its own")
    if backend.cloud and not opts.run_root.startswith("gs://"):
        raise LadderError(f"--run-root: {opts.backend} workers write to Cloud Storage; pass gs://BUCKET/PATH "
                          f"(got {opts.run_root!r})")
    if backend.cloud:
        from ladder.launch.cloud_names import check_cloud_options

        check_cloud_options(opts)  # project, zone, bucket, ... as gcloud will read them, before the plan ships
    backend.check_options(opts)
    if not opts.dry_run and runner is None:
        missing = [t for t in backend.tools if shutil.which(t) is None]
        if missing:
            raise LadderError(f"--backend {opts.backend}: {', '.join(missing)} not found on PATH; install it "
                              "(docs/cloud-tpu.md) or pass --dry-run to print the commands")
    plan = jobs_lib.load(opts.plan_path)
    all_jobs = jobs_lib.make_jobs(plan, opts.run_root, chip=jobs_lib.plan_chip(plan, opts.chip) if backend.cloud else None,
                                  slices=opts.slices, rungs=opts.rungs, overrides=opts.overrides)
    for extra in opts.extra_plans:
        all_jobs += [dataclasses.replace(job, plan_path=extra) for job in jobs_lib.make_jobs(
            jobs_lib.load(extra), opts.run_root, chip=None, overrides=opts.overrides)]
    names = [job.name for job in all_jobs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # two trainers on one run directory
        raise LadderError(f"extra plans: rung {', '.join(twice)} is in two of the plans launched together; "
                          "rename it in one of them")
    todo = pending(all_jobs, read_remote=not opts.dry_run, print_fn=print_fn)
    if not todo:
        print_fn(f"# all {len(all_jobs)} rungs are done; see `ladder status {opts.plan_path}`")
        if backend.cloud and not opts.dry_run:
            backend.teardown_leftovers(all_jobs, opts, print_fn)
        return 0
    for job in todo:  # the memory recipe each rung trains with on its slice (jobs.recipe_note)
        if job.recipe:
            print_fn(f"# {job.recipe}")
    warn_no_eval_tasks(todo)
    if opts.compile_check and opts.dry_run and backend.cloud:
        compile_check(plan, todo, print_fn)
    return backend.launch(todo, opts, print_fn)


def warn_no_eval_tasks(jobs: list[Job]) -> None:
    """Rungs with eval steps and no eval.tasks evaluate nothing: `ladder collect` then finds no rows and there is
    nothing to predict from, found only after the ladder has trained. Said before it starts (stderr)."""
    bare = [job.name for job in jobs if list(job.config.train.eval_steps) and not job.config.eval.tasks]
    if bare:
        print(f"ladder launch: warning: {len(bare)} rung(s) ({', '.join(bare[:3])}{', ...' if len(bare) > 3 else ''}) "
              "evaluate no tasks (eval.tasks is empty), so their eval steps write no results and `ladder collect` "
              "will find none; add --config.eval.tasks=... (docs/tasks.md; configs/olmo_ladder.py lists the "
              "published ladder's)", file=sys.stderr, flush=True)


def compile_check(plan: dict, jobs: list[Job], print_fn=print) -> None:
    """Compile each job's train step for its slice on this machine and print one fit line per rung. A rung
    that does not fit stops the launch, after its suggestions and the smallest larger slice on which it
    compiles and fits (aot.choose_slice) as a --slice flag. Skipped, saying so, without libtpu.
    Method and measured figures: docs/tpu-compile.md."""
    from ladder import aot, chips, topology

    if not aot.libtpu_available():
        print_fn("# compile check skipped: libtpu is not installed (pip install 'ladder[tpu]')")
        return

    def log(report):
        for line in report.fit_lines():
            print_fn("# " + line)

    # minutes of silence otherwise (stdout is often a file: `--dry-run > launch.sh`), so say it on stderr
    print(f"ladder launch: compiling {len(jobs)} rung(s) for their slices on this CPU before printing the commands "
          "(1-8 min a rung, docs/tpu-compile.md; --no-compile-check skips it)", file=sys.stderr, flush=True)

    placements = [(job.rung, job.accelerator, job.num_slices, job.overrides) for job in jobs]
    reports = aot.check_rungs(plan, placements, count_flops=False, log=log)
    flags = []
    for job, report in zip(jobs, reports):
        if report.fits:
            continue
        bigger = topology.next_topology(topology.parse_topology(job.accelerator, job.num_slices))
        try:
            if bigger is None:
                raise LadderError("no larger slice")
            accelerator, fit = aot.choose_slice(job.config, chips.parse_slice(job.accelerator)[0].name,
                                                start=bigger.accelerator_type, num_slices=job.num_slices)
        except LadderError:
            print_fn(f"# {job.name}: no larger {job.accelerator.split('-')[0]} slice fits either")
            continue
        prefix = f"{job.num_slices}x" if job.num_slices > 1 else ""
        flags.append(f"--slice {job.name}={prefix}{accelerator}")
        print_fn(f"# {job.name}: compiled, it fits {prefix}{accelerator} ({fit.total / chips.GiB:.2f} GiB per device)")
    bad = [r.rung for r in reports if not r.fits]
    if bad:
        raise LadderError(f"compile check: {', '.join(bad)} do not fit their slices; "
                          + (f"relaunch with {' '.join(flags)}, or " if flags else "")
                          + "follow a suggestion above, or pass --no-compile-check to see the commands")


def pending(jobs: list[Job], *, read_remote: bool = True, print_fn=print) -> list[Job]:
    """The jobs still to run. Done rungs are skipped; a run dir of another plan is an error.

    With read_remote=False (a dry run), gs:// run dirs are not read: every rung is listed, which is
    still safe because the trainer does nothing for a finished rung.
    """
    todo = []
    for job in jobs:
        if job.run_dir.startswith("gs://") and not read_remote:
            todo.append(job)
            continue
        if not storage.is_remote(job.run_dir):  # a file where the run directory belongs, a directory for a file
            if storage.path(job.run_dir).exists() and not storage.path(job.run_dir).is_dir():
                raise LadderError(f"rung {job.name}: {job.run_dir} is a file, not a run directory; move it away")
            rundir.check_layout(job.run_dir, f"rung {job.name}")
        check_owner(job)
        status = rundir.read_status(job.run_dir)
        if status.get("state") == "done":
            print_fn(f"# {job.name}: done (step {status.get('step')}), skipped")
            continue
        todo.append(job)
    return todo


def check_owner(job: Job) -> None:
    """Refuse a run dir whose config.json was written for a different config (another plan, other
    overrides): resuming it would mix two runs. Nothing is overwritten."""
    # Unreadable (or absent beside checkpoints) is an error too: whose run it is cannot be told.
    saved = rundir.read_run_config(job.run_dir, f"rung {job.name}")
    if not saved or "config_hash" not in saved:
        return
    if saved["config_hash"] != job.config_hash:
        raise LadderError(
            f"{job.run_dir}: this run directory belongs to a different plan or config (config_hash "
            f"{saved['config_hash'][:12]} there, {job.config_hash[:12]} for rung {job.name} of this plan); "
            "pass another --run-root, or delete the directory if it is no longer needed"
        )
