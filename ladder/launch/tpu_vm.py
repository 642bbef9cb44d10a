"""`tpu-vm`: one Cloud TPU VM per rung, the rung's script copied to every worker and started over
`gcloud compute tpus tpu-vm ssh --worker=all`, detached; `ladder launch` then watches (launch.lifecycle):
a PREEMPTED or TERMINATED VM is deleted, created again and the script restarted (the rung resumes from its
checkpoint); the VM is deleted once its rung is done.

On a TPU VM each worker's JAX finds its peers itself (jax.distributed.initialize() with no arguments).
"""

from __future__ import annotations

from ladder.launch import LaunchOptions, cloud, commands
from ladder.launch.cloud import Group
from ladder.launch.commands import Step
from ladder.launch.jobs import Job
from ladder.errors import LadderError


class TpuVmBackend(cloud.CloudBackend):
    name = "tpu-vm"
    dead_states = ("PREEMPTED", "TERMINATED", "STOPPED")

    def check_options(self, opts: LaunchOptions) -> None:
        cloud.require_package(opts)

    def groups(self, jobs: list[Job], opts: LaunchOptions) -> list[Group]:
        for job in jobs:
            if job.num_slices > 1:
                raise LadderError(f"--slice {job.name}: a TPU VM is one slice; multislice rungs need "
                                  "--backend queued-resources or xpk")
        return super().groups(jobs, opts)

    def create_steps(self, group: Group, opts: LaunchOptions) -> list[Step]:
        scope = commands.gcloud_scope(opts.project, opts.zone)
        (job,), vm = group.jobs, group.name
        create = ["gcloud", "compute", "tpus", "tpu-vm", "create", vm, *scope,
                  f"--accelerator-type={job.accelerator}", f"--version={cloud.runtime_version(opts, job.accelerator)}"]
        if opts.spot:
            create.append("--spot")
        script_path = f"{opts.work_dir.rstrip('/')}/{vm}.sh"
        script = commands.worker_script([job], plan_uri=cloud.plan_uri(opts), package=opts.package,
                                        title=f"ladder rung {job.name} on {vm}")
        return [
            Step(create, comment=f"{job.name}: {job.accelerator} TPU VM", unless=self.state_argv(vm, opts)[:-1]),
            Step(["gcloud", "compute", "tpus", "tpu-vm", "scp", script_path, f"{vm}:{vm}.sh", *scope, "--worker=all"],
                 files={script_path: script}, comment=f"{job.name}: copy the rung's script to every worker"),
            Step(["gcloud", "compute", "tpus", "tpu-vm", "ssh", vm, *scope, "--worker=all",
                  f"--command=nohup bash {vm}.sh > {vm}.log 2>&1 &"],
                 comment=f"{job.name}: train on every worker, detached (log: {job.run_dir}/logs/)"),
        ]

    def state_argv(self, name: str, opts: LaunchOptions) -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "describe", name,
                *commands.gcloud_scope(opts.project, opts.zone), "--format=value(state)"]

    def delete_argv(self, name: str, opts: LaunchOptions) -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "delete", name, *commands.gcloud_scope(opts.project, opts.zone),
                "--quiet"]
