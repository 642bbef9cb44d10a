"""`xpk`: one `xpk workload create` per rung on an existing GKE cluster, with the project's container
image (ladder installed in it); multislice rungs ask for `--num-slices`, trained data-parallel over DCN.

JobSet restarts the workload after a preemption or failure (--max-restarts) and the trainer resumes from
the rung's last checkpoint on gs://; `ladder launch` watches the rungs and deletes each workload once its
rung is done. xpk sets the TPU worker and multislice environment JAX reads, so every pod calls
jax.distributed.initialize() with no arguments. Spot capacity is a property of the cluster's node pools
(`xpk cluster create --spot`); `xpk workload create` has no --spot, so --spot is not passed to it.
"""

from __future__ import annotations

import shlex

from ladder.launch import LaunchOptions, cloud, commands
from ladder.launch.cloud import Group
from ladder.launch.commands import Step
from ladder.errors import LadderError


class XpkBackend(cloud.CloudBackend):
    name = "xpk"
    tools = ("xpk",)

    def check_options(self, opts: LaunchOptions) -> None:
        if not opts.image:
            raise LadderError("--image: xpk runs the project's container image; pass one with ladder installed, "
                              "e.g. us-docker.pkg.dev/PROJECT/ladder/ladder:TAG (docs/cloud-tpu.md)")
        if not opts.cluster:
            raise LadderError("--cluster: xpk needs the GKE cluster to run on (xpk cluster create ...)")

    def create_steps(self, group: Group, opts: LaunchOptions) -> list[Step]:
        scope = commands.gcloud_scope(opts.project, opts.zone)
        (job,), workload = group.jobs, group.name
        train = shlex.join(commands.train_argv("python3", "plan.json", job, commands.AUTO_DISTRIBUTED))
        fetch = shlex.join(["python3", "-m", "ladder.launch.fetch", cloud.plan_uri(opts), "plan.json"])
        create = ["xpk", "workload", "create", f"--cluster={opts.cluster}", f"--workload={workload}",
                  f"--docker-image={opts.image}", f"--tpu-type={job.accelerator}",
                  f"--num-slices={job.num_slices}", f"--max-restarts={commands.MAX_ATTEMPTS}",
                  "--restart-on-user-code-failure", *scope, f"--command={fetch} && {train}"]
        comment = f"{job.name}: {group.slices}, workload {workload}"
        if opts.spot:
            comment += " (spot: set on the cluster's node pools, `xpk cluster create --spot`; not a workload flag)"
        return [Step(create, comment=comment)]

    def delete_argv(self, name: str, opts: LaunchOptions) -> list[str]:
        return ["xpk", "workload", "delete", f"--workload={name}", f"--cluster={opts.cluster}",
                *commands.gcloud_scope(opts.project, opts.zone)]
