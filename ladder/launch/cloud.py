"""What the three Cloud TPU backends share: shipping the plan, naming resources, running the steps, and the
lifecycle of what a launch creates (launch.lifecycle watches it until its rungs are done, then deletes it).

A backend says how to create a group of rungs' resource (a TPU VM, a queued resource, an xpk workload), how
to delete it and how to read its state; everything else (recreating a preempted resource, tearing down a
finished one, the dry run's text) is written once here and in lifecycle.py.
"""

from __future__ import annotations

import abc
import dataclasses
import subprocess

from ladder.launch import Backend, LaunchOptions
from ladder.launch import commands, costs, jobs as jobs_lib
from ladder.launch.commands import Step
from ladder.launch.jobs import Job
from ladder import chips, storage
from ladder.errors import LadderError


@dataclasses.dataclass(frozen=True)
class Group:
    """One cloud resource and the rungs it trains, in turn."""

    name: str
    jobs: tuple[Job, ...]

    @property
    def slices(self) -> str:
        job = self.jobs[0]
        return f"{job.num_slices}x{job.accelerator}" if job.num_slices > 1 else job.accelerator


class CloudBackend(Backend):
    """A backend whose launch is a list of CLI commands (printed by --dry-run, else run in order, then
    watched until the rungs are done)."""

    tools = ("gcloud",)
    # Resource states after which nothing runs on it any more: it is deleted and created again.
    dead_states: tuple[str, ...] = ()

    def __init__(self, runner=subprocess.run):
        self.runner = runner  # how commands run (tests and the rehearsal pass a stand-in)

    def groups(self, jobs: list[Job], opts: LaunchOptions) -> list[Group]:
        """One resource per rung (queued-resources --pack overrides)."""
        return [Group(jobs_lib.resource_name(opts.name_prefix, j.name), (j,)) for j in jobs]

    @abc.abstractmethod
    def create_steps(self, group: Group, opts: LaunchOptions) -> list[Step]:
        """Create the group's resource and start its rungs (a probe skips the create when it exists)."""

    @abc.abstractmethod
    def delete_argv(self, name: str, opts: LaunchOptions) -> list[str]: ...

    def state_argv(self, name: str, opts: LaunchOptions) -> list[str] | None:
        """A command printing the resource's state (exit != 0: it does not exist); None: not observable."""
        return None

    def state(self, name: str, opts: LaunchOptions) -> str | None:
        """The resource's state ('ACTIVE', 'PREEMPTED', ...), None when it does not exist, '?' when unknown."""
        argv = self.state_argv(name, opts)
        if argv is None:
            return "?"
        probe = self.runner(argv, capture_output=True, text=True)
        return probe.stdout.strip() or "?" if probe.returncode == 0 else None

    def steps(self, jobs: list[Job], opts: LaunchOptions) -> list[Step]:
        """Everything a launch runs before it starts watching: ship the plan, create each group."""
        steps = [upload_plan(opts)]
        for group in self.groups(jobs, opts):
            steps += self.create_steps(group, opts)
        return steps

    def delete_step(self, group: Group, opts: LaunchOptions) -> Step:
        return Step(self.delete_argv(group.name, opts),
                    comment=f"{', '.join(j.name for j in group.jobs)} done: delete {group.name}")

    def launch(self, jobs: list[Job], opts: LaunchOptions, print_fn=print) -> int:
        from ladder.launch import lifecycle

        groups = self.groups(jobs, opts)
        require_distinct_names(groups)
        if opts.dry_run:
            commands.run_steps(self.steps(jobs, opts), dry_run=True, print_fn=print_fn)
            print_fn(f"# then `ladder launch` watches every {opts.poll_s:g} s: a resource found "
                     f"{' or '.join(self.dead_states) or 'gone'} is deleted and created again (its rungs resume "
                     "from their checkpoints); when a resource's rungs are done it is deleted"
                     + (" (--keep: not deleted)" if opts.keep else ":"))
            if not opts.keep:
                commands.run_steps([self.delete_step(g, opts) for g in groups], dry_run=True, print_fn=print_fn)
            for line in costs.estimate_lines(jobs, opts.prices):
                print_fn(line)
            return 0
        for line in costs.estimate_lines(jobs, opts.prices):
            print_fn(line)
        commands.run_steps([upload_plan(opts)], dry_run=False, print_fn=print_fn, runner=self.runner)
        return lifecycle.watch(self, groups, opts, print_fn)

    def teardown_leftovers(self, jobs: list[Job], opts: LaunchOptions, print_fn=print) -> None:
        """Delete resources still standing for rungs that are all done (a launch that stopped watching)."""
        if opts.keep:
            return
        for group in self.groups(jobs, opts):
            if self.state(group.name, opts) not in (None, "?"):  # "?": not observable (xpk)
                commands.run_steps([self.delete_step(group, opts)], dry_run=False, print_fn=print_fn,
                                   runner=self.runner)


def require_distinct_names(groups: list[Group]) -> None:
    """Resource names are lowercase with '-' for anything else (jobs.resource_name), so rungs '370M-1xC' and
    '370m-1xC', or '1.3B-1xC' and '1-3B-1xC', of a hand-edited plan got one TPU VM: the second rung's "describe ||
    create" found the first's VM and started its trainer there. Refused, naming both."""
    seen: dict[str, Group] = {}
    for g in groups:
        if g.name in seen:
            a, b = (", ".join(j.name for j in x.jobs) for x in (seen[g.name], g))
            raise LadderError(f"rungs {a} and {b} would share the cloud resource name {g.name} (names are lowercased "
                              "and punctuation becomes '-'); rename one in the plan")
        seen[g.name] = g


def plan_uri(opts: LaunchOptions) -> str:
    """Where workers read the plan: content-addressed, so a different plan never overwrites it."""
    return storage.join(opts.run_root, f"plans/plan-{jobs_lib.plan_digest(opts.plan_path)}.json")


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
            "'ladder @ git+https://github.com/ORG/ladder@REF' or a wheel on gs:// "
            "(python -m build --wheel; gcloud storage cp dist/*.whl gs://BUCKET/wheels/)")
