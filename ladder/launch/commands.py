"""Command lines shared by the backends: the trainer's argv and the script a Cloud TPU worker runs.

Everything here returns strings or argv lists and runs nothing, so `--dry-run` can print exactly what a
launch would execute, and tests can compare it against golden text.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from pathlib import Path, PurePosixPath

from ladder.launch.jobs import Job

# Cloud TPU software (runtime) versions per chip, from the Cloud TPU "TPU software versions" page.
RUNTIME_VERSIONS = {
    "v4": "tpu-ubuntu2204-base",
    "v5e": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}
# A rung that fails this many times in a row is reported failed (the trainer resumes between attempts).
MAX_ATTEMPTS = 3
# Trainer flag that makes every TPU worker call jax.distributed.initialize() with no arguments: on Cloud
# TPU VMs and GKE TPU pods JAX finds the coordinator, process count and id itself.
AUTO_DISTRIBUTED = ("--distributed",)


def train_argv(python: str, plan: str, job: Job, extra: tuple[str, ...] = ()) -> list[str]:
    """`python -m ladder train --plan PLAN --rung NAME --run-dir DIR [extra] [--config.k=v ...]`."""
    return [python, "-m", "ladder", "train", "--plan", plan, "--rung", job.name, "--run-dir", job.run_dir,
            *extra, *(f"--config.{o}" for o in job.overrides)]


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a cloud launch.

    files: local files to write first (path -> text), e.g. a startup script.
    unless: a probe command; when it succeeds the step is skipped (e.g. `describe` before `create`).
    """

    argv: list[str]
    comment: str = ""
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    unless: list[str] | None = None

    def shell(self) -> str:
        """The step as shell text that does exactly what `run` does."""
        out = [f"# {self.comment}"] if self.comment else []
        for path, text in self.files.items():
            out.append(f"cat > {shlex.quote(path)} <<'EOF'\n{text.rstrip()}\nEOF")
        cmd = shlex.join(self.argv)
        if self.unless:
            cmd = f"{shlex.join(self.unless)} >/dev/null 2>&1 || {cmd}"
        out.append(cmd)
        return "\n".join(out)


def run_steps(steps: list[Step], *, dry_run: bool, print_fn=print, runner=subprocess.run) -> None:
    """Print the steps (dry run) or execute them in order, stopping at the first failure."""
    from ladder.errors import LadderError

    for step in steps:
        if dry_run:
            print_fn(step.shell())
            continue
        for path, text in step.files.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        if step.unless and runner(step.unless, capture_output=True, text=True).returncode == 0:
            print_fn(f"# skipped (exists): {shlex.join(step.argv[:6])} ...")
            continue
        print_fn(f"+ {shlex.join(step.argv)}")
        done = runner(step.argv, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
            raise LadderError(f"{step.argv[0]} failed (exit {done.returncode}) on `{shlex.join(step.argv[:5])} ...`:"
                              f" {' | '.join(tail)}")


def install_lines(package: str) -> list[str]:
    """Shell lines installing the ladder package on a worker: a pip requirement or a gs:// wheel.

    gcsfs comes along: etils.epath needs it to write status.json and metrics to a gs:// run dir.
    """
    if package.startswith("gs://"):
        wheel = PurePosixPath(package).name
        return [f"gcloud storage cp {shlex.quote(package)} {shlex.quote(wheel)}",
                f"python3 -m pip install --quiet {shlex.quote('./' + wheel + '[tpu]')} gcsfs"]
    return [f"python3 -m pip install --quiet {shlex.quote(package)} gcsfs"]


def worker_script(jobs: list[Job], *, plan_uri: str, package: str | None, title: str) -> str:
    """The bash script every worker of a slice runs: install, fetch the plan, train each rung in turn.

    Each rung gets MAX_ATTEMPTS tries (exit 0 = done, 2 = bad input: no retry); the trainer resumes from
    the rung's last checkpoint on every try and does nothing for a finished rung, so the script is safe to
    run again after a preemption (a queued resource reruns it at every boot).
    """
    lines = ["#!/bin/bash", f"# {title}", "set -u", "mkdir -p /tmp/ladder && cd /tmp/ladder"]
    if package:
        lines += [f"{line} || exit 1" for line in install_lines(package)]
    lines.append(f"gcloud storage cp {shlex.quote(plan_uri)} plan.json || exit 1")
    for job in jobs:
        argv = shlex.join(train_argv("python3", "plan.json", job, AUTO_DISTRIBUTED))
        lines += [
            f"for attempt in {' '.join(str(i) for i in range(1, MAX_ATTEMPTS + 1))}; do",
            f"  {argv}",
            "  rc=$?; if [ $rc -eq 0 ] || [ $rc -eq 2 ]; then break; fi",
            "done",
            "if [ $rc -ne 0 ]; then exit $rc; fi",
        ]
    return "\n".join(lines) + "\n"


def gcloud_scope(project: str | None, zone: str | None) -> list[str]:
    """--zone/--project flags (left to gcloud's configured defaults when not given)."""
    return ([f"--zone={zone}"] if zone else []) + ([f"--project={project}"] if project else [])
