"""Command lines shared by the backends: the trainer's argv and the script a Cloud TPU worker runs.

Everything here returns strings or argv lists and runs nothing, so `--dry-run` can print exactly what a
launch would execute, and tests can compare it against golden text.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

from ladder import storage
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
            storage.write_text(path, text)
        if step.unless and runner(step.unless, capture_output=True, text=True).returncode == 0:
            print_fn(f"# skipped (exists): {shlex.join(step.argv[:6])} ...")
            continue
        print_fn(f"+ {shlex.join(step.argv)}")
        done = runner(step.argv, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
            raise LadderError(f"{step.argv[0]} failed (exit {done.returncode}) on `{shlex.join(step.argv[:5])} ...`:"
                              f" {' | '.join(tail)}")


# Stand-in hosts of `ladder launch --rehearse` set these; on Cloud TPU they are unset and the defaults apply.
HOST_ENV = {
    "LADDER_WORK_DIR": "where the worker keeps its venv, the plan and its log (default /tmp/ladder)",
    "LADDER_WORKER": "this worker's name in log file names (default: the VM's hostname)",
    "LADDER_DISTRIBUTED": "how JAX finds its peers (default --distributed: from the TPU metadata)",
}
# Seconds between copies of a worker's log to the rung's run dir (also copied when a rung ends and at exit).
LOG_EVERY_S = 60
WORKER_EXTRAS = ("gcs", "tpu")  # gcs: gcsfs for gs:// run dirs; tpu: libtpu, whatever the user's requirement says


def with_extras(requirement: str, extras=WORKER_EXTRAS) -> str:
    """`ladder @ git+URL` -> `ladder[gcs,tpu] @ git+URL`; extras the user gave are kept ('ladder[x]==1' ->
    'ladder[gcs,tpu,x]==1'). Workers always need libtpu and gcsfs, and forgetting the extra is easy."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*(.*)", requirement)
    if not m:
        return requirement
    name, given, rest = m.group(1), m.group(2) or "", m.group(3).strip()
    merged = sorted({e.strip() for e in given.split(",") if e.strip()} | set(extras))
    return f"{name}[{','.join(merged)}]" + (f" {rest}" if rest.startswith("@") else rest)


def worker_requirement(package: str) -> tuple[list[str], str]:
    """(shell lines fetching a gs:// wheel, the requirement string uv installs), extras added."""
    if package.startswith("gs://"):
        wheel = PurePosixPath(package).name
        fetch = [f"gcloud storage cp {shlex.quote(package)} \"$WORK/{wheel}\" || fail 'could not copy {wheel}'"]
        return fetch, with_extras(f"ladder @ file://$WORK/{wheel}")
    return [], with_extras(package)


def setup_lines(package: str, devices: int) -> list[str]:
    """Provision Python >= 3.11 with uv (stock TPU images ship an older python3; uv fetches a managed
    CPython when the image has none), install ladder[gcs,tpu] in a venv, then check that JAX sees the
    slice's devices. The venv records what it holds, so the rerun at every boot of a queued resource
    skips the install; a different --package reinstalls."""
    fetch, requirement = worker_requirement(package)
    return [
        'VENV="$WORK/venv"; PY="$VENV/bin/python"',
        f'PACKAGE="{requirement}"',
        'if [ "$(cat "$VENV/.ladder-package" 2>/dev/null)" != "$PACKAGE" ]; then',
        '  say "installing uv, a Python 3.11 venv and $PACKAGE"',
        "  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet --user --break-system-packages uv"
        " || fail 'pip could not install uv'",
        *(f"  {line}" for line in fetch),
        '  python3 -m uv venv --quiet --python 3.11 "$VENV" || fail "uv could not create a Python 3.11 venv in $VENV"',
        '  python3 -m uv pip install --quiet --python "$PY" "$PACKAGE" || fail "could not install $PACKAGE"',
        '  echo "$PACKAGE" > "$VENV/.ladder-package"',
        "fi",
        f'"$PY" -m ladder.launch.preflight --devices {devices} $DISTRIBUTED'
        f" || fail 'JAX does not see the {devices} TPU devices of this slice (preflight above)'",
    ]


def worker_script(jobs: list[Job], *, plan_uri: str, package: str, title: str) -> str:
    """The bash script every worker of a slice runs: set up Python and ladder, check the TPU devices, fetch
    the plan, train each rung in turn, copying this worker's log to <run dir>/logs/<worker>.log.

    Each rung gets MAX_ATTEMPTS tries (exit 0 = done, 2 = bad input: no retry); the trainer resumes from
    the rung's last checkpoint on every try and does nothing for a finished rung, so the script is safe to
    run again after a preemption (a queued resource reruns it at every boot).
    """
    from ladder import topology

    devices = topology.parse_topology(jobs[0].accelerator, jobs[0].num_slices).n_devices
    lines = [
        "#!/bin/bash",
        f"# {title}",
        "# Stand-in hosts of `ladder launch --rehearse` set " + ", ".join(HOST_ENV) + ";",
        "# on Cloud TPU they are unset and the defaults below apply.",
        "set -u",
        'WORK="${LADDER_WORK_DIR:-/tmp/ladder}"; WORKER="${LADDER_WORKER:-$(hostname)}"',
        'DISTRIBUTED="${LADDER_DISTRIBUTED:---distributed}"',
        'export JAX_PLATFORMS="${JAX_PLATFORMS:-tpu}"  # no silent fallback to CPU',
        'mkdir -p "$WORK" && cd "$WORK" || exit 1',
        'LOG="$WORK/$WORKER.log"; echo "ladder worker $WORKER: log in $LOG, copied to <run dir>/logs/"',
        'exec >>"$LOG" 2>&1',
        'say() { echo "[ladder $(date -u +%FT%TZ) $WORKER] $*"; }',
        "RUN_DIRS=" + shlex.quote(" ".join(j.run_dir for j in jobs)) + "  # the rungs of this script, in turn",
        # A set-up failure fails every rung here: the exit markers tell the launcher to stop waiting.
        'fail() { say "FAILED: $*"; echo 1 > "$WORK/exit"; for d in $RUN_DIRS; do'
        ' gcloud storage cp "$WORK/exit" "$d/logs/$WORKER.exit" >/dev/null 2>&1; done; exit 1; }',
        f'echo {shlex.quote(jobs[0].run_dir)} > "$WORK/run-dir"  # where ship_log copies the log',
        'ship_log() { gcloud storage cp "$LOG" "$(cat "$WORK/run-dir")/logs/$WORKER.log" >/dev/null 2>&1; }',
        f"( while sleep {LOG_EVERY_S}; do ship_log; done ) & SHIPPER=$!",
        "trap 'kill $SHIPPER 2>/dev/null; ship_log' EXIT",
        "trap 'exit 143' TERM",
    ]
    lines += setup_lines(package, devices)
    lines.append(f"gcloud storage cp {shlex.quote(plan_uri)} plan.json || fail 'could not copy the plan'")
    for job in jobs:
        # The interpreter is the venv's "$PY"; $DISTRIBUTED is left unquoted so it splits into flags.
        argv = shlex.join(train_argv("PY", "plan.json", job, ("@DISTRIBUTED@",))[1:])
        argv = " " + argv.replace("@DISTRIBUTED@", "$DISTRIBUTED")
        lines += [
            f'echo {shlex.quote(job.run_dir)} > "$WORK/run-dir"',
            f"for attempt in {' '.join(str(i) for i in range(1, MAX_ATTEMPTS + 1))}; do",
            f'  say "{job.name}: attempt $attempt"',
            f'  "$PY"{argv}',
            "  rc=$?; if [ $rc -eq 0 ] || [ $rc -eq 2 ]; then break; fi",
            "done",
            f'say "{job.name}: exit $rc"; ship_log; echo $rc > "$WORK/exit"',
            f'gcloud storage cp "$WORK/exit" {shlex.quote(job.run_dir + "/logs/")}"$WORKER.exit" >/dev/null 2>&1'
            "  # tells the launcher",
            "if [ $rc -ne 0 ]; then exit $rc; fi",
        ]
    return "\n".join(lines) + "\n"


def gcloud_scope(project: str | None, zone: str | None) -> list[str]:
    """--zone/--project flags (left to gcloud's configured defaults when not given)."""
    return ([f"--zone={zone}"] if zone else []) + ([f"--project={project}"] if project else [])
