"""Two real processes (jax.distributed on 127.0.0.1, gloo collectives) train on one global batch and report
the same losses as one process does."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # two JAX processes over a socket

# Each process builds its half of the global batch from host-local rows; losses are printed per step.

WORKER = textwrap.dedent("""
    import json, sys
    from tests.test_train import tiny_config
    from ladder.train import train
    run_dir, coordinator, n, i = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cfg = tiny_config(total_steps=4, checkpoint_every=0)
    cfg.mesh.update(data=-1, fsdp=1, tensor=1)
    if n > 1:
        cfg.distributed.update(initialize=True, coordinator=coordinator, num_processes=n, process_id=i, timeout_s=60)
    summary = train(cfg, run_dir, on_eval=lambda step, params, logits_fn: None)
    print(json.dumps({"loss": summary["loss"], "step": summary["step"]}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu")
    coordinator = f"127.0.0.1:{free_port()}"
    cmd = lambda run_dir, n, i: [sys.executable, "-c", WORKER, str(run_dir), coordinator, str(n), str(i)]  # noqa: E731
    procs = [subprocess.Popen(cmd(tmp_path / "two", 2, i), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for i in range(2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    one = subprocess.run(cmd(tmp_path / "one", 1, 0), capture_output=True, text=True, timeout=240, env=env)
    assert one.returncode == 0, one.stderr[-3000:]

    reference = json.loads(one.stdout.strip().splitlines()[-1])
    for out, _ in outs:
        result = json.loads(out.strip().splitlines()[-1])
        assert result["step"] == 4 and result["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    # Only process 0 writes the logs; both wrote their shards of the final checkpoint.
    two = [json.loads(line)["loss"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line)["loss"] for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert two == pytest.approx(ref, rel=1e-5) and len(two) == 4  # steps 1-4
    assert (tmp_path / "two" / "checkpoints" / "4").is_dir()
