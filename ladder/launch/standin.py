"""gcloud's stand-in for `ladder launch --rehearse`: records every call and plays Cloud TPU on this machine.

`FakeCloud` is the launcher's runner. It keeps TPU VMs and queued resources by name with a state, and
each host of each slice is a local process: a queued resource's startup script starts on every host at
create; a TPU VM's script arrives by `scp --worker=all` and starts by `ssh --worker=all --command=...`.
A host is a work directory (LADDER_WORK_DIR) and an environment: JAX on CPU with the host's chip count of
devices, the coordinator of its slice on 127.0.0.1 (LADDER_DISTRIBUTED), the emulator's gs:// and a PATH
whose `gcloud` is `python -m ladder.launch.standin` (storage cp/ls through the emulator, each call recorded).
The venv the script would build is provisioned ahead (no network here): a wrapper of this interpreter and
the marker naming the requirement, so the script's install step finds it done.

`preempt(name)` is what Cloud TPU does to a spot slice: one host's process is killed (SIGKILL), the rest
of the slice with it, and the resource reports PREEMPTED (TPU VM) or SUSPENDED (queued resource). `delete`
shuts the hosts down like a VM shutdown: SIGTERM (the worker script's exit trap copies the log), then SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ladder import topology
from ladder.launch import commands
from ladder.launch.emulator import free_port

SHUTDOWN_GRACE_S = 15.0


@dataclasses.dataclass
class Resource:
    kind: str  # "tpu-vm" | "queued-resources"
    name: str
    accelerator: str
    num_slices: int
    state: str
    hosts: list[Path]  # work dirs, one per host of every slice
    pgids: list[int] = dataclasses.field(default_factory=list)  # live host process groups
    procs: list[subprocess.Popen] = dataclasses.field(default_factory=list)


def _flag(argv: list[str], name: str) -> str | None:
    for a in argv:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


class FakeCloud:
    """The launcher's `runner`: subprocess.run's signature, gcloud's exit codes and outputs."""

    def __init__(self, root: Path, package: str, host_env: dict[str, str]):
        self.root, self.package, self.host_env = Path(root).resolve(), package, dict(host_env)
        self.calls: list[list[str]] = []
        self.resources: dict[str, Resource] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.lock = threading.Lock()
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        gcloud = self.bin / "gcloud"
        gcloud.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ladder.launch.standin \"$@\"\n")
        gcloud.chmod(0o755)
        # The venv is provisioned ahead; a script that still tries to install (pip/uv need the network)
        # must fail loudly here instead of installing something else from PyPI.
        python3 = self.bin / "python3"
        python3.write_text("#!/bin/sh\necho \"stand-in python3: no installs in a rehearsal (python3 $*)\" >&2\nexit 1\n")
        python3.chmod(0o755)

    # ---------------------------------------------------------------- subprocess.run's interface
    def __call__(self, argv, capture_output=True, text=True, **kw) -> subprocess.CompletedProcess:
        with self.lock:
            self.calls.append(list(argv))
            rc, out = self.handle(list(argv))
        return subprocess.CompletedProcess(argv, rc, out, "" if rc == 0 else f"stand-in: {shlex.join(argv)}")

    def handle(self, argv: list[str]) -> tuple[int, str]:
        if argv[:2] == ["gcloud", "storage"]:
            return storage(argv[2:], capture=True)
        if argv[:3] != ["gcloud", "compute", "tpus"] or len(argv) < 6:
            return 2, f"stand-in gcloud does not know {shlex.join(argv[:4])}"
        kind, verb, name = argv[3], argv[4], argv[5]
        if verb == "scp":  # scp LOCAL NAME:DEST
            name = argv[6].split(":", 1)[0]
        res = self.resources.get(name)
        self.notice_dead_hosts()
        if verb == "describe":
            return (0, res.state + "\n") if res else (1, "")
        if verb == "delete":
            if not res:
                return 1, ""
            self.shut_down(res)
            del self.resources[name]
            self.deleted.append(name)
            return 0, ""
        if verb == "create":
            if res:
                return 1, "already exists"
            n = int(_flag(argv, "node-count") or 1)
            acc = _flag(argv, "accelerator-type")
            hosts = [self.root / "hosts" / f"{name}-w{i}" for i in range(topology.parse_topology(acc, n).hosts)]
            res = Resource(kind, name, acc, n, "READY" if kind == "tpu-vm" else "ACTIVE", hosts)
            for h in hosts:
                shutil.rmtree(h, ignore_errors=True)  # a new VM has a fresh disk
                self.provision(h)
            self.resources[name] = res
            self.created.append(name)
            if kind == "queued-resources":
                script = _flag(argv, "metadata-from-file").split("=", 1)[1]
                for h in hosts:
                    shutil.copy(script, h / "startup.sh")
                self.start(res, "bash startup.sh")
            return 0, ""
        if verb == "scp" and res:  # --worker=all: every host gets the file
            src, dest = argv[5], argv[6].split(":", 1)[1]
            for h in res.hosts:
                shutil.copy(src, h / dest)
            return 0, ""
        if verb == "ssh" and res:
            self.start(res, _flag(argv, "command"))
            return 0, ""
        return 1, f"stand-in: no resource {name}"

    # ---------------------------------------------------------------- hosts
    def provision(self, host: Path) -> None:
        """What the worker script's install step leaves behind, made here because there is no network."""
        venv = host / "venv"
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        py = venv / "bin" / "python"
        py.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        py.chmod(0o755)
        requirement = commands.worker_requirement(self.package)[1].replace("$WORK", str(host))
        (venv / ".ladder-package").write_text(requirement + "\n")

    def start(self, res: Resource, command: str) -> None:
        """Run `command` on every host: one process group each, the slice's coordinator on a free port."""
        port, per_host = free_port(), topology.parse_topology(res.accelerator).chips_per_host
        for i, host in enumerate(res.hosts):
            env = dict(os.environ, **self.host_env)
            env.update(
                PATH=f"{self.bin}:{env.get('PATH', '')}", JAX_PLATFORMS="cpu", LADDER_WORK_DIR=str(host),
                LADDER_WORKER=host.name,
                LADDER_DISTRIBUTED=f"--coordinator 127.0.0.1:{port} --num-processes {len(res.hosts)} --process-id {i}",
                XLA_FLAGS=(env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={per_host}").strip())
            proc = subprocess.Popen(["bash", "-c", command], cwd=host, env=env, start_new_session=True,
                                    stdout=open(host / "host.out", "a"), stderr=subprocess.STDOUT)
            res.procs.append(proc)
            res.pgids.append(proc.pid)

    def live(self, res: Resource) -> list[int]:
        out = []
        for pgid in res.pgids:
            try:
                os.killpg(pgid, 0)
                out.append(pgid)
            except ProcessLookupError:
                pass
        for p in res.procs:
            p.poll()  # reap
        return out

    def notice_dead_hosts(self) -> None:
        """A host process killed by a signal (not by our delete) takes its slice down: the resource is preempted."""
        for res in self.resources.values():
            if any(p.poll() is not None and p.returncode < 0 for p in res.procs) and res.state in ("READY", "ACTIVE"):
                self.preempted(res)

    def preempt(self, name: str, host: int = -1) -> None:
        """The drill: SIGKILL one host's processes; the cloud then takes the slice down."""
        with self.lock:
            res = self.resources[name]
            _kill(res.pgids[host], signal.SIGKILL)
            self.preempted(res)

    def preempted(self, res: Resource) -> None:
        for pgid in res.pgids:
            _kill(pgid, signal.SIGKILL)
        res.state = "PREEMPTED" if res.kind == "tpu-vm" else "SUSPENDED"

    def shut_down(self, res: Resource) -> None:
        for pgid in self.live(res):
            _kill(pgid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while self.live(res) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pgid in self.live(res):
            _kill(pgid, signal.SIGKILL)

    def shut_down_all(self) -> None:
        for res in list(self.resources.values()):
            self.shut_down(res)


def _kill(pgid: int, sig) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# -------------------------------------------------------------------- `gcloud storage` on the workers
def storage(args: list[str], capture: bool = False) -> tuple[int, str]:
    """`storage cp SRC DST` (either side gs:// or local) and `storage ls URI`, against the emulator's JSON
    API with urllib: a worker's gcloud call costs a Python start, not a gcsfs import (seconds on a busy box)."""
    args = [a for a in args if not a.startswith("--")]
    if args[:1] == ["ls"] and len(args) == 2:
        return (0, args[1] + "\n") if _gs_read(args[1], meta=True) is not None else (1, "")
    if args[:1] == ["cp"] and len(args) == 3:
        src, dst = args[1], args[2]
        data = _gs_read(src) if src.startswith("gs://") else (Path(src).read_bytes() if Path(src).exists() else None)
        if data is None:
            return 1, f"{src}: not found"
        if dst.startswith("gs://"):
            _gs_write(dst, data)
        else:
            tmp = Path(dst + ".part")
            tmp.write_bytes(data)
            tmp.replace(dst)
        return 0, ""
    return 2, f"stand-in gcloud storage: unsupported {args}"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://"):].partition("/")
    return bucket, name


def _gs_read(uri: str, meta: bool = False) -> bytes | None:
    import urllib.error
    import urllib.parse
    import urllib.request

    bucket, name = _split(uri)
    url = (f"{os.environ['STORAGE_EMULATOR_HOST']}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"
           + ("" if meta else "?alt=media"))
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def _gs_write(uri: str, data: bytes) -> None:
    import urllib.parse
    import urllib.request

    bucket, name = _split(uri)
    url = (f"{os.environ['STORAGE_EMULATOR_HOST']}/upload/storage/v1/b/{bucket}/o?uploadType=media&"
           f"name={urllib.parse.quote(name, safe='')}")
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, timeout=60).close()


def main(argv: list[str]) -> int:
    """The workers' `gcloud`: storage only (a worker never manages TPUs); each call appended to
    $LADDER_WORK_DIR/gcloud-calls.jsonl."""
    work = os.environ.get("LADDER_WORK_DIR")
    if work:
        with open(Path(work) / "gcloud-calls.jsonl", "a") as f:
            f.write(json.dumps(["gcloud", *argv]) + "\n")
    if argv[:1] != ["storage"]:
        print(f"stand-in gcloud: workers only use `gcloud storage`, not {shlex.join(argv[:3])}", file=sys.stderr)
        return 2
    rc, out = storage(argv[1:])
    print(out, end="", file=sys.stdout if rc == 0 else sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
