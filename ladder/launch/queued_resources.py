"""`queued-resources`: one Cloud TPU queued-resource request per rung (or per slice type with --pack),
whose startup script sets the worker up and trains; multislice rungs ask for --node-count slices.

The startup script runs at every boot and the trainer resumes from the rung's last checkpoint. `ladder
launch` watches the requests (launch.lifecycle): one found FAILED or SUSPENDED (a spot preemption) is deleted
and requested anew; one whose rungs are done is deleted (--keep leaves it).
"""

from __future__ import annotations

import itertools

from ladder.launch import LaunchOptions, cloud, commands, jobs as jobs_lib
from ladder.launch.cloud import Group
from ladder.launch.commands import Step
from ladder.launch.jobs import Job

DEAD_STATES = ("FAILED", "SUSPENDED")


class QueuedResourcesBackend(cloud.CloudBackend):
    name = "queued-resources"
    dead_states = DEAD_STATES

    def check_options(self, opts: LaunchOptions) -> None:
        cloud.require_package(opts)

    def groups(self, jobs: list[Job], opts: LaunchOptions) -> list[Group]:
        """One request per rung, or one per (slice type, count) when packed."""
        if not opts.pack:
            return super().groups(jobs, opts)
        key = lambda j: (j.accelerator, j.num_slices)  # noqa: E731
        return [Group(jobs_lib.resource_name(opts.name_prefix, f"{n}x" if n > 1 else "", acc), tuple(group))
                for (acc, n), group in itertools.groupby(sorted(jobs, key=key), key=key)]

    def create_steps(self, group: Group, opts: LaunchOptions) -> list[Step]:
        scope = commands.gcloud_scope(opts.project, opts.zone)
        name, job = group.name, group.jobs[0]
        script_path = f"{opts.work_dir.rstrip('/')}/{name}.startup.sh"
        script = commands.worker_script(list(group.jobs), plan_uri=cloud.plan_uri(opts), package=opts.package,
                                        title=f"ladder: {', '.join(j.name for j in group.jobs)} on {name}")
        nodes = ([f"--node-id={name}"] if job.num_slices == 1
                 else [f"--node-count={job.num_slices}", f"--node-prefix={name}"])
        create = ["gcloud", "compute", "tpus", "queued-resources", "create", name, *nodes, *scope,
                  f"--accelerator-type={job.accelerator}",
                  f"--runtime-version={cloud.runtime_version(opts, job.accelerator)}",
                  f"--metadata-from-file=startup-script={script_path}"]
        if opts.spot:
            create.append("--spot")
        return [Step(create, files={script_path: script},
                     comment=f"{', '.join(j.name for j in group.jobs)}: {group.slices}, request {name}",
                     unless=self.state_argv(name, opts)[:-1])]

    def state_argv(self, name: str, opts: LaunchOptions) -> list[str]:
        return ["gcloud", "compute", "tpus", "queued-resources", "describe", name,
                *commands.gcloud_scope(opts.project, opts.zone), "--format=value(state.state)"]

    def delete_argv(self, name: str, opts: LaunchOptions) -> list[str]:
        return delete_argv(name, commands.gcloud_scope(opts.project, opts.zone))


def delete_argv(name: str, scope: list[str]) -> list[str]:
    """Delete a request and its TPU nodes without prompting."""
    return ["gcloud", "compute", "tpus", "queued-resources", "delete", name, *scope, "--force", "--quiet"]
