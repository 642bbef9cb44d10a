"""A local Cloud Storage emulator for gs:// run roots without a bucket: the rehearsal starts one itself, tests
use it through a fixture, and a user can read a rehearsal's bucket again:

    python -m ladder.launch.emulator --data-dir .ladder-rehearsal/PLAN/bucket -- ladder collect PLAN --run-root gs://...

It runs `gcp-storage-emulator` (pip install 'ladder[rehearse]'; launch.emulator_server adds what
tensorstore needs) on 127.0.0.1 and points every gs:// client
ladder uses at it: gcsfs (etils.epath: status.json, metrics, results) and google-cloud-storage (tensorboardX)
read STORAGE_EMULATOR_HOST; tensorstore (orbax checkpoints) reads TENSORSTORE_GCS_HTTP_URL and takes
GOOGLE_AUTH_TOKEN_FOR_TESTING as its credentials. Objects persist in the data directory between starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ladder.errors import LadderError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(url: str) -> dict[str, str]:
    """Environment that sends gs:// traffic of every client ladder uses to `url`."""
    return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "ladder-rehearsal", "GOOGLE_CLOUD_PROJECT": "ladder-rehearsal",
            "NO_GCE_CHECK": "True",  # google-auth: no probing for a GCE metadata server (seconds per process)
            # gcsfs (read at its import, so this reaches subprocesses): its experimental file system asks the
            # Storage Control API for each bucket's layout before every call and never caches the failure; the
            # emulator has no such API, so each call paid a failed lookup and fell back to the plain one anyway
            # (270 lookups per rehearsal host, 14 vs 4 ms CPU per status read).
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def _forget_clients() -> None:
    """gcsfs caches file systems with the endpoint they were made with, and etils.epath keeps the one it made
    for good (an lru_cache), listings included; a new emulator needs new ones (a second rehearsal in one
    process saw the first one's checkpoints listed under a fresh, empty bucket)."""
    try:
        import gcsfs

        gcsfs.GCSFileSystem.clear_instance_cache()
    except ImportError:
        return
    from etils.epath import backend

    backend.fsspec_backend._get_filesystem.cache_clear()


@contextlib.contextmanager
def serving(data_dir: str | Path, buckets: list[str], *, timeout_s: float = 30.0):
    """Run the emulator on a free port with `buckets` created, with os.environ pointed at it; yields the env
    (for subprocesses). Stops it and restores the environment on exit."""
    try:
        import gcp_storage_emulator  # noqa: F401
    except ImportError as e:
        raise LadderError("the Cloud Storage emulator is not installed; pip install 'ladder[rehearse]' "
                          "(gcp-storage-emulator, gcsfs)") from e
    data_dir = Path(data_dir).resolve()  # the emulator wants an absolute path
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(data_dir.parent / "emulator.log", "a")
    proc = subprocess.Popen([sys.executable, "-m", "ladder.launch.emulator_server", str(data_dir), str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])))
    url = f"http://127.0.0.1:{port}"
    env = client_env(url)
    saved = {k: os.environ.get(k) for k in env}
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise LadderError(f"the Cloud Storage emulator did not start (see {log.name})")
                time.sleep(0.1)
        os.environ.update(env)
        # gcsfs warns on every new file system that it cannot ask a real bucket its type: noise here.
        logging.getLogger("gcsfs").setLevel(logging.ERROR)
        _forget_clients()
        for bucket in buckets:
            _create_bucket(url, bucket)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _forget_clients()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _create_bucket(url: str, bucket: str) -> None:
    """POST /storage/v1/b (the JSON API's bucket insert); an existing bucket is fine."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url}/storage/v1/b?project=ladder-rehearsal", method="POST",
                                 data=json.dumps({"name": bucket}).encode(), headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as e:
        if e.code != 409:  # 409: exists
            raise


def bucket_of(uri: str) -> str:
    if not uri.startswith("gs://") or len(uri) <= 5:
        raise LadderError(f"--run-root: {uri!r} is not gs://BUCKET/PATH")
    return uri[5:].split("/", 1)[0]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ladder.launch.emulator",
                                description="run COMMAND with gs:// served by a local emulator over DATA_DIR")
    p.add_argument("--data-dir", required=True, help="the emulator's storage (a rehearsal's .../bucket)")
    p.add_argument("--bucket", action="append", default=[], help="create this bucket first (repeatable)")
    p.add_argument("command", nargs="+", help="the command to run, after --")
    args = p.parse_args(argv)
    with serving(args.data_dir, args.bucket) as env:
        return subprocess.run(args.command, env=dict(os.environ, **env)).returncode


if __name__ == "__main__":
    sys.exit(main())
