"""`queued-resources`: one Cloud TPU queued-resource request per rung (or per slice type with --pack),
whose startup script installs ladder and trains; multislice rungs ask for --node-count slices.

The startup script runs at every boot and the trainer resumes from the rung's last checkpoint, so a
preempted spot request that is resubmitted continues where it stopped. Resubmitting is `ladder launch`
again: a request found FAILED or SUSPENDED is deleted and created anew; one waiting or active is left alone.
"""

from __future__ import annotations

import itertools

from ladder.launch import LaunchOptions, cloud, commands, jobs as jobs_lib
from ladder.launch.commands import Step
from ladder.launch.jobs import Job

DEAD_STATES = ("FAILED", "SUSPENDED")


class QueuedResourcesBackend(cloud.CloudBackend):
    name = "queued-resources"

    def check_options(self, opts: LaunchOptions) -> None:
        cloud.require_package(opts)

    def groups(self, jobs: list[Job], opts: LaunchOptions) -> list[tuple[str, list[Job]]]:
        """(request name, jobs) pairs: one per rung, or one per (slice type, count) when packed."""
        if not opts.pack:
            return [(jobs_lib.resource_name(opts.name_prefix, j.name), [j]) for j in jobs]
        key = lambda j: (j.accelerator, j.num_slices)  # noqa: E731
        out = []
        for (acc, n), group in itertools.groupby(sorted(jobs, key=key), key=key):
            out.append((jobs_lib.resource_name(opts.name_prefix, f"{n}x" if n > 1 else "", acc), list(group)))
        return out

    def steps(self, jobs: list[Job], opts: LaunchOptions) -> list[Step]:
        scope = commands.gcloud_scope(opts.project, opts.zone)
        steps = [cloud.upload_plan(opts)]
        for name, group in self.groups(jobs, opts):
            job = group[0]
            script_path = f"{opts.work_dir.rstrip('/')}/{name}.startup.sh"
            script = commands.worker_script(group, plan_uri=cloud.plan_uri(opts), package=opts.package,
                                            title=f"ladder: {', '.join(j.name for j in group)} on {name}")
            nodes = ([f"--node-id={name}"] if job.num_slices == 1
                     else [f"--node-count={job.num_slices}", f"--node-prefix={name}"])
            create = ["gcloud", "compute", "tpus", "queued-resources", "create", name, *nodes, *scope,
                      f"--accelerator-type={job.accelerator}",
                      f"--runtime-version={cloud.runtime_version(opts, job.accelerator)}",
                      f"--metadata-from-file=startup-script={script_path}"]
            if opts.spot:
                create.append("--spot")
            slices = f"{job.num_slices}x{job.accelerator}" if job.num_slices > 1 else job.accelerator
            if not opts.dry_run:
                steps += self.replace_if_dead(name, scope)
            steps.append(Step(create, files={script_path: script},
                              comment=f"{', '.join(j.name for j in group)}: {slices}, request {name}",
                              unless=["gcloud", "compute", "tpus", "queued-resources", "describe", name, *scope]))
        return steps

    def replace_if_dead(self, name: str, scope: list[str]) -> list[Step]:
        """A delete step for a request that was preempted or failed, so it is created anew."""
        probe = self.runner(["gcloud", "compute", "tpus", "queued-resources", "describe", name, *scope,
                                "--format=value(state.state)"], capture_output=True, text=True)
        if probe.returncode != 0 or probe.stdout.strip() not in DEAD_STATES:
            return []
        return [Step(delete_argv(name, scope), comment=f"{name} is {probe.stdout.strip()}: delete it and request it again")]


def delete_argv(name: str, scope: list[str]) -> list[str]:
    """Delete a request and its TPU nodes without prompting."""
    return ["gcloud", "compute", "tpus", "queued-resources", "delete", name, *scope, "--force", "--quiet"]
