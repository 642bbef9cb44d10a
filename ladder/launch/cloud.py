"""What the three Cloud TPU backends share: shipping the plan, naming resources, running the steps."""

from __future__ import annotations

import abc
import subprocess

from ladder.launch import Backend, LaunchOptions
from ladder.launch import commands, jobs as jobs_lib
from ladder.launch.commands import Step
from ladder.launch.jobs import Job
from ladder import chips, rundir
from ladder.errors import LadderError


class CloudBackend(Backend):
    """A backend whose launch is a list of CLI commands (printed by --dry-run, else run in order)."""

    tools = ("gcloud",)

    def __init__(self, runner=subprocess.run):
        self.runner = runner  # how commands run (tests pass a fake)

    @abc.abstractmethod
    def steps(self, jobs: list[Job], opts: LaunchOptions) -> list[Step]: ...

    def launch(self, jobs: list[Job], opts: LaunchOptions, print_fn=print) -> int:
        commands.run_steps(self.steps(jobs, opts), dry_run=opts.dry_run, print_fn=print_fn, runner=self.runner)
        for line in estimate_lines(jobs):
            print_fn(line)
        if not opts.dry_run:
            print_fn(f"# launched {len(jobs)} rung(s); watch them with `ladder status {opts.plan_path} "
                     f"--run-root {opts.run_root}`")
        return 0


def estimate_lines(jobs: list[Job]) -> list[str]:
    """'# estimate: ...' lines: hours and chip-hours per rung from the planner's throughput model (FLOPs at
    its assumed MFU), and the total. Multiply chip-hours by your price per chip-hour for the cost."""
    from ladder import plan as plan_lib

    if not hasattr(plan_lib, "estimate_seconds"):
        return []
    out, total = [], 0.0
    for job in jobs:
        chip, n = chips.parse_slice(job.accelerator)
        n *= job.num_slices
        hours = plan_lib.estimate_seconds(job.rung, chip, n) / 3600
        total += hours * n
        out.append(f"# estimate: {job.name}: {hours:,.1f} h on {n} {chip.name} chips = {hours * n:,.0f} chip-hours")
    mfu = getattr(plan_lib, "MFU", None)
    out.append(f"# estimate: total {total:,.0f} chip-hours" + (f" at {mfu:.0%} MFU" if mfu else "")
               + " (cost = chip-hours x price per chip-hour)")
    return out


def plan_uri(opts: LaunchOptions) -> str:
    """Where workers read the plan: content-addressed, so a different plan never overwrites it."""
    return rundir.join(opts.run_root, f"plans/plan-{jobs_lib.plan_digest(opts.plan_path)}.json")


def upload_plan(opts: LaunchOptions) -> Step:
    uri = plan_uri(opts)
    return Step(["gcloud", "storage", "cp", opts.plan_path, uri], comment="ship the plan to the run root",
                unless=["gcloud", "storage", "ls", uri])


def runtime_version(opts: LaunchOptions, accelerator: str) -> str:
    if opts.runtime_version:
        return opts.runtime_version
    chip, _ = chips.parse_slice(accelerator)
    if chip.name not in commands.RUNTIME_VERSIONS:
        raise LadderError(f"--runtime-version: no default for {chip.name}; pass one (gcloud compute tpus "
                          "versions list)")
    return commands.RUNTIME_VERSIONS[chip.name]


def require_package(opts: LaunchOptions) -> None:
    if not opts.package:
        raise LadderError(
            f"--package: {opts.backend} installs ladder on every worker; pass a pip requirement such as "
            "'ladder[tpu] @ git+https://github.com/ORG/ladder@REF' or a wheel on gs:// "
            "(python -m build --wheel; gcloud storage cp dist/*.whl gs://BUCKET/wheels/)")
