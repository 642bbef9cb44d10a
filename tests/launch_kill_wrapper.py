"""Test-only stand-in for `python`: runs `python -m ladder ...`, but SIGKILLs itself right after the trainer
logs step $LADDER_TEST_KILL_AT_STEP of rung $LADDER_TEST_KILL_RUNG: a crash mid-way, between checkpoints,
with no chance to clean up (unlike SIGTERM, which the trainer catches to save first)."""

import os
import runpy
import signal
import sys

argv = sys.argv[1:]
assert argv[:2] == ["-m", "ladder"], argv
rung = argv[argv.index("--rung") + 1] if "--rung" in argv else None
if rung == os.environ.get("LADDER_TEST_KILL_RUNG"):
    from ladder import metrics

    kill_at, original = int(os.environ["LADDER_TEST_KILL_AT_STEP"]), metrics.MetricsWriter.write

    def write(self, row, *args, **kwargs):
        original(self, row, *args, **kwargs)
        if row["step"] >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    metrics.MetricsWriter.write = write
sys.argv = ["ladder", *argv[2:]]
runpy.run_module("ladder", run_name="__main__")
