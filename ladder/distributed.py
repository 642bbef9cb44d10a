"""Multi-process runs end in bounded time with one line: a peer that never starts, one that dies mid-step, and
one started with another config.

JAX's distributed runtime bounds each of these (initialization_timeout, heartbeat_timeout_seconds,
shutdown_timeout_seconds) but ends the survivors through a C++ LOG(FATAL): a 20-line stack trace and SIGABRT
(exit -6), and only after a further shutdown barrier of up to 300 s. So:

- start-up runs under `deadline`: at distributed.timeout_s a Python thread prints one line and ends the process,
  before XLA's own deadline (given GRACE_S more) can abort it;
- a collective that fails because a peer is gone (gloo's "Connection reset by peer", a heartbeat timeout) is a
  TrainingFailed with one line, and the CLI ends the process at once (`exit_at_once`), skipping the shutdown
  barrier that would wait for the dead peer and then abort;
- right after start-up every process compares its config_hash with all the others' (one all-gather), so a peer
  started with other overrides stops every process with one line instead of training on silently with
  replicas that disagree.

Not covered: a peer stopped but not dead (SIGSTOP, a hung host) is caught by JAX's heartbeat after
distributed.heartbeat_timeout_s and ends through XLA's LOG(FATAL) (bounded, not one line). docs/training.md,
"Multi-process runs".
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import jax
import numpy as np

from ladder.errors import LadderError, TrainingFailed, require

GRACE_S = 15  # XLA's own start-up deadline is this much later than ours, so ours speaks first
# Text of a JaxRuntimeError that means a peer process is gone (gloo over TCP, the coordination service).
PEER_LOST = ("Gloo", "Connection reset by peer", "Connection closed by peer", "Broken pipe", "heartbeat timeout")


@contextlib.contextmanager
def deadline(seconds: float, line: str, exit_code: int = 1):
    """Run the block; if it has not finished after `seconds`, print `line` to stderr and end the process with
    `exit_code` (os._exit: the block is stuck in C++ and cannot be unwound)."""
    done = threading.Event()

    def watch():
        if not done.wait(seconds):
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                print(line, file=sys.stderr, flush=True)
            os._exit(exit_code)

    threading.Thread(target=watch, name="ladder-deadline", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def initialize(dist) -> None:
    """jax.distributed.initialize when the config asks; before any other JAX call touches the backend. Every
    process has distributed.timeout_s to join, else each ends with one line naming the coordinator."""
    if not dist.initialize:
        return
    timeout = int(dist.timeout_s)
    kwargs = {"initialization_timeout": timeout + GRACE_S, "heartbeat_timeout_seconds": int(dist.heartbeat_timeout_s),
              "shutdown_timeout_seconds": int(dist.heartbeat_timeout_s)}
    if dist.coordinator:
        require(dist.num_processes > 0 and 0 <= dist.process_id < dist.num_processes, "distributed.process_id",
                f"process_id={dist.process_id} with num_processes={dist.num_processes}",
                "give --num-processes N and --process-id in [0, N)")
        kwargs.update(coordinator_address=dist.coordinator, num_processes=dist.num_processes,
                      process_id=dist.process_id)
    where = dist.coordinator or "the TPU environment"
    who = f"process {dist.process_id} of {dist.num_processes}" if dist.coordinator else "this process"
    line = (f"ladder train: failed: distributed: {who} waited {timeout}s at {where} and not every process joined "
            "(one never started, died, or was given another --coordinator / --num-processes); start every process "
            "with the same command, or raise --config.distributed.timeout_s")
    try:
        with deadline(timeout, line):
            jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 (jax raises several types; all mean the same thing here)
        raise TrainingFailed(f"jax.distributed.initialize via {where} failed within {timeout}s "
                             f"(check the coordinator address/port and that every process started): "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def check_same_config(digest: str) -> None:
    """Every process trains the same config: one all-gather of the config_hash (without the `distributed`
    section, which differs per process). A mismatch stops every process with the same line. Call after the
    backends have started (jax.process_count() starts them, libtpu's start-up noise and all)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    mine = np.frombuffer(bytes.fromhex(digest[:64].ljust(64, "0")), dtype=np.uint8)
    try:
        every = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), -1)
    except jax.errors.JaxRuntimeError as e:  # a peer that stopped before it (its own bad input, a crash)
        error = peer_lost(e)
        if error is None:
            raise
        raise error from e
    hashes = [row.tobytes().hex()[:12] for row in every]
    odd = [i for i, h in enumerate(hashes) if h != hashes[0]]
    if odd:
        raise LadderError(f"distributed: process {odd[0]} runs another config than process 0 (config_hash "
                          f"{hashes[odd[0]]}... vs {hashes[0]}...); give every process the same config file, "
                          "--plan/--rung and --config overrides")


def peer_lost(e: BaseException) -> TrainingFailed | None:
    """The one line for a collective that failed because a peer process is gone, or None for another error
    (and always None in a one-process run)."""
    if jax.process_count() == 1 or not isinstance(e, jax.errors.JaxRuntimeError):
        return None
    text = str(e)
    if not any(mark.lower() in text.lower() for mark in PEER_LOST):
        return None
    first = text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__
    error = TrainingFailed(f"distributed: a peer process stopped mid-step ({first}); process "
                           f"{jax.process_index()} stopped too; restart every process with the same command to "
                           "resume from the last verified checkpoint")
    error.exit_at_once = True
    return error
