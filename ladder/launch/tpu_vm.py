"""`tpu-vm`: one Cloud TPU VM per rung (created if absent, reused if present), the rung started on every
worker over `gcloud compute tpus tpu-vm ssh --worker=all`, detached so the launch returns at once.

On a TPU VM each worker's JAX finds its peers itself (jax.distributed.initialize() with no arguments).
A TPU VM is not resubmitted when preempted: relaunch, or use queued-resources for spot capacity.
"""

from __future__ import annotations

from ladder.launch import LaunchOptions, cloud, commands, jobs as jobs_lib
from ladder.launch.commands import Step
from ladder.launch.jobs import Job
from ladder.errors import LadderError


class TpuVmBackend(cloud.CloudBackend):
    name = "tpu-vm"

    def check_options(self, opts: LaunchOptions) -> None:
        cloud.require_package(opts)

    def steps(self, jobs: list[Job], opts: LaunchOptions) -> list[Step]:
        scope = commands.gcloud_scope(opts.project, opts.zone)
        steps = [cloud.upload_plan(opts)]
        for job in jobs:
            if job.num_slices > 1:
                raise LadderError(f"--slice {job.name}: a TPU VM is one slice; multislice rungs need "
                                  "--backend queued-resources or xpk")
            vm = jobs_lib.resource_name(opts.name_prefix, job.name)
            create = ["gcloud", "compute", "tpus", "tpu-vm", "create", vm, *scope,
                      f"--accelerator-type={job.accelerator}", f"--version={cloud.runtime_version(opts, job.accelerator)}"]
            if opts.spot:
                create.append("--spot")
            describe = ["gcloud", "compute", "tpus", "tpu-vm", "describe", vm, *scope]
            steps.append(Step(create, comment=f"{job.name}: {job.accelerator} TPU VM (reused if it exists)",
                              unless=describe))
            script_path = f"{opts.work_dir.rstrip('/')}/{vm}.sh"
            script = commands.worker_script([job], plan_uri=cloud.plan_uri(opts), package=opts.package,
                                            title=f"ladder rung {job.name} on {vm}")
            steps.append(Step(["gcloud", "compute", "tpus", "tpu-vm", "scp", script_path, f"{vm}:{vm}.sh", *scope,
                               "--worker=all"], files={script_path: script},
                              comment=f"{job.name}: copy the rung's script to every worker"))
            steps.append(Step(["gcloud", "compute", "tpus", "tpu-vm", "ssh", vm, *scope, "--worker=all",
                               f"--command=nohup bash {vm}.sh > {vm}.log 2>&1 &"],
                              comment=f"{job.name}: train on every worker, detached (log: ~/{vm}.log on each)"))
        return steps
