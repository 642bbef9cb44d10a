"""`ladder launch --rehearse`: a Cloud TPU launch played on this machine. The emulator serves every gs://
client ladder uses (fast test); the rehearsal of a one-rung plan on a 2-host slice (v4-16: 2 hosts x 4
chips) finishes with results in the emulated bucket, the gcloud calls equal to the dry run's and teardown
done, and its preemption drill resumes bitwise (slow: several JAX processes on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.launch import LaunchOptions, jobs as jobs_lib
from launch_fixtures import rung, tiny_plan, with_rungs, write_plan

pytest.importorskip("ladder.train", reason="needs the trainer")


def test_emulator_serves_epath_orbax_and_tensorboard(gcs_emulator):
    """status.json (gcsfs), a checkpoint (tensorstore: generations, conditional writes) and TensorBoard
    (google-cloud-storage) on gs://, through the one emulator."""
    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp
    from etils import epath

    from ladder import rundir, storage

    run = "gs://test/run"
    storage.write_json(f"{run}/status.json", {"state": "done"})
    assert rundir.read_status(run) == {"state": "done"}
    with ocp.CheckpointManager(f"{run}/checkpoints") as mgr:
        mgr.save(3, args=ocp.args.StandardSave({"w": jnp.arange(6.0)}))
        mgr.wait_until_finished()
    with ocp.CheckpointManager(f"{run}/checkpoints") as mgr:
        got = mgr.restore(3, args=ocp.args.StandardRestore({"w": jnp.zeros(6)}))
    assert np.array_equal(got["w"], np.arange(6.0))
    # In a process of its own: tensorboardX's gs:// writer uploads once more when collected at exit, which
    # must happen while the emulator still serves (a worker's trainer exits long before the bucket goes).
    code = f"from ladder import metrics; metrics.log_eval({run!r}, 3, 96, [dict(task='piqa', loss=1.0, acc=0.5)])"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=dict(os.environ, **gcs_emulator))
    assert any(p.name.endswith(".eval-3") for p in epath.Path(f"{run}/tb").iterdir())


def rehearsal_plan(path: Path) -> str:
    """One rung that trains 8 steps (checkpoints at 4 and 8) and evaluates one embedded task at the end."""
    plan = tiny_plan(steps=8, defaults={"data.source": "synthetic", "train.log_every": 2, "train.checkpoint_every": 4,
                                        "train.async_checkpoints": False, "eval.tasks": "prose_continuation",
                                        "eval.n_questions": 8})
    plan = with_rungs(plan, [rung("20M-1xC", "20M", 1, 32, 1, 2, 8, batch=8, seq=128)])
    return write_plan(path, plan)


def rehearse(tmp_path, monkeypatch, backend: str, preempt_at=None):
    pytest.importorskip("gcp_storage_emulator", reason="needs ladder[rehearse]")
    from ladder.launch import rehearse as rehearse_lib

    monkeypatch.chdir(tmp_path)
    plan = rehearsal_plan(tmp_path / "tiny.json")
    printed: list[str] = []
    opts = LaunchOptions(plan, "", backend=backend, slices=jobs_lib.parse_slice_overrides(["20M-1xC=v4-16"]))
    rc = rehearse_lib.rehearse(opts, preempt_at=preempt_at, print_fn=printed.append)
    return rc, printed, tmp_path / ".ladder-rehearsal" / "tiny"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_queued_resources_rehearsal_with_a_preemption_drill(tmp_path, monkeypatch):
    rc, printed, root = rehearse(tmp_path, monkeypatch, "queued-resources", preempt_at=5)
    assert rc == 0, "\n".join(printed)
    text = "\n".join(printed)
    assert "# drill: preempting ladder-20m-1xc at step 6" in text
    assert "# drill: 20M-1xC: final parameters bitwise equal to the uninterrupted reference" in text
    assert "# rehearsal passed: every rung done, calls = the dry run's + the drill's recreation of ladder-20m-1xc" in text
    calls = [json.loads(line) for line in (root / "gcloud-calls.jsonl").read_text().splitlines()]
    verbs = [c[4] for c in calls if c[1] == "compute" and c[4] != "describe"]
    assert verbs == ["create", "delete", "create", "delete"]  # created, preempted -> recreated, torn down
    # Two hosts, each a JAX process with 4 CPU devices; both copied their logs to the bucket.
    hosts = sorted(p.name for p in (root / "hosts").iterdir())
    assert hosts == ["ladder-20m-1xc-w0", "ladder-20m-1xc-w1"]
    assert "8 cpu devices (cpu) on 2 host(s)" in (root / "hosts" / hosts[0] / f"{hosts[0]}.log").read_text()
    table = (root / "results.csv").read_text().splitlines()
    assert table[0].startswith("run,") and len(table) == 2 and ",prose_continuation," in table[1]


def test_sigterm_during_a_rehearsal_is_the_verbs_sigterm_and_the_handler_comes_back(monkeypatch):
    """Before: the rehearsal installed its own SIGTERM handler for good, raising a plain KeyboardInterrupt, so
    `timeout ... ladder launch --rehearse` ended "interrupted" and 130 instead of the SIGTERM line and 143."""
    import signal
    import time

    from ladder.errors import Terminated
    from ladder.launch import rehearse

    monkeypatch.setattr(rehearse, "prepare", lambda opts: os.kill(os.getpid(), signal.SIGTERM) or time.sleep(10))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as stopped:  # the plain one, before, would stop pytest itself
        rehearse.rehearse(None)
    assert stopped.type is Terminated and signal.getsignal(signal.SIGTERM) is before


def test_preflight_names_what_jax_sees_when_it_is_not_the_slice():
    """The worker script stops before training when JAX does not see the slice's devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    run = lambda n: subprocess.run([sys.executable, "-m", "ladder.launch.preflight", "--devices", str(n)], env=env,  # noqa: E731
                                   capture_output=True, text=True, timeout=120)
    bad, good = run(8), run(4)
    assert bad.returncode == 1 and "ladder preflight: FAILED: JAX sees 4 cpu device(s)" in bad.stdout
    assert "expected 8 cpu devices" in bad.stdout
    assert good.returncode == 0 and good.stdout.startswith("ladder preflight: ok: 4 cpu devices")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tpu_vm_rehearsal_creates_copies_starts_and_deletes(tmp_path, monkeypatch):
    """The TPU VM path: create, scp the script to both hosts, ssh to start it detached, delete when done."""
    rc, printed, root = rehearse(tmp_path, monkeypatch, "tpu-vm")
    assert rc == 0, "\n".join(printed)
    calls = [json.loads(line) for line in (root / "gcloud-calls.jsonl").read_text().splitlines()]
    assert [c[4] for c in calls if c[1] == "compute" and c[4] != "describe"] == ["create", "scp", "ssh", "delete"]
    assert (root / "results.csv").read_text().count("prose_continuation") == 1
