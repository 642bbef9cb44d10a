"""Model-FLOP utilisation, the run directory's metric files and the terminal progress line.

MFU = (training FLOPs per token, from ladder.arch) x tokens/s / peak FLOP/s of all devices (docs/flops.md).
The peak comes from ladder.chips for TPUs and GPUs; a CPU has no datasheet peak, so the trainer measures a
jitted float32 matmul once per machine (kept in $LADDER_CACHE) and uses that.

The writer goes through ladder.storage, so a run directory may be local or `gs://...` (with gcsfs
installed). Object stores have no append: there metrics.jsonl is rewritten whole at most every
REMOTE_FLUSH_S seconds and at close.
"""

from __future__ import annotations

import functools
import json
import sys
import time

import jax
import jax.numpy as jnp

from ladder import formats, rundir, storage
from ladder.chips import CHIPS, chip_of_device_kind

def measure_matmul_peak(n: int = 2048, repeats: int = 5, dtype=jnp.float32, device=None) -> float:
    """FLOP/s of the best of `repeats` jitted n x n matmuls (2 n^3 FLOPs each) on one device."""
    device = device or jax.local_devices()[0]
    a = jax.device_put(jnp.ones((n, n), dtype), device)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()  # compile
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


PEAK_TTL_S = 24 * 3600  # a cached CPU peak is measured again after a day


@functools.cache
def _cpu_peak() -> float:
    """The host's matmul peak, measured at most once a day per machine and kept in $LADDER_CACHE/cpu-peak.json
    (delete it to measure again): the probe cost ~3 CPU-s per trainer, ~30 CPU-s of the smoke job's 11
    trainers, and one denominator makes a ladder's rungs' MFU comparable. Keyed by what sets the peak: host, CPU
    model, usable cores, JAX. A day, because a reading taken while neighbours load the machine is low and would
    inflate every MFU after it."""
    import os
    import platform
    from pathlib import Path

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    key = f"{platform.node()} | {model} | {cores} cores | jax {jax.__version__}"
    # The same directory as ladder.data's caches ($LADDER_CACHE, else ~/.cache/ladder); not imported from
    # there, which would load tensorflow_datasets into every trainer.
    path = Path(os.environ.get("LADDER_CACHE") or Path.home() / ".cache" / "ladder").expanduser() / "cpu-peak.json"
    try:
        cached = json.loads(path.read_text())
        entry = cached.get(key)
        if isinstance(entry, dict) and entry.get("flops", 0) > 0 and 0 <= time.time() - entry["measured"] < PEAK_TTL_S:
            return float(entry["flops"])
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        cached = {}
    peak = measure_matmul_peak()
    try:  # best effort: a read-only cache only costs the probe again
        path.parent.mkdir(parents=True, exist_ok=True)
        storage.write_text(str(path), json.dumps({**cached, key: {"flops": peak, "measured": time.time()}}, indent=1)
                           + "\n")
    except OSError:
        pass
    return peak


def _read_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.readlines()
    except OSError:
        return []


def peak_flops(devices) -> tuple[float, str]:
    """(peak FLOP/s summed over `devices`, where the number came from)."""
    devices = list(devices)
    if devices[0].platform == "cpu":
        # Forced host devices share one CPU: the host's peak is one matmul's, measured once per machine.
        return _cpu_peak() * jax.process_count(), "measured fp32 matmul (cpu)"
    name = chip_of_device_kind(devices[0].device_kind)
    if name is None:
        return float("nan"), f"unknown device kind {devices[0].device_kind!r} (add it to ladder.chips.DEVICE_KINDS)"
    return CHIPS[name].peak_flops * len(devices), f"ladder.chips[{name!r}] x {len(devices)}"


REMOTE_FLUSH_S = 30.0


def log_scalars(tb, group: str, values: dict, step: int, tokens: int) -> None:
    """TensorBoard scalars twice: `group/key` over steps and `tokens/group/key` over tokens seen, so a whole
    ladder (`tensorboard --logdir RUN_ROOT`: one run per rung) is compared on the tokens axis, where rungs of
    different batch sizes line up. None and non-numbers are skipped."""
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            tb.add_scalar(f"{group}/{key}", value, step)
            tb.add_scalar(f"tokens/{group}/{key}", value, int(tokens))


def log_eval(run_dir, step: int, tokens: int, rows: list[dict]) -> None:
    """An evaluation's rows into <run dir>/tb: `eval/<task>/loss|acc|...` per task, and the held-out LM
    losses (lm_loss, lm_loss_<domain>) as `eval/<column>`; over steps and over tokens (log_scalars)."""
    from tensorboardX import SummaryWriter

    tb = SummaryWriter(storage.join(run_dir, "tb"), filename_suffix=f".eval-{step}")  # its own event file
    try:
        for row in rows:
            log_scalars(tb, f"eval/{row.get('task', 'tasks')}",
                        {k: row[k] for k in ("loss", "acc", "acc_raw", "prob") if k in row}, step, tokens)
        if rows:
            log_scalars(tb, "eval", {k: v for k, v in rows[0].items() if k.endswith("_loss")}, step, tokens)
    finally:
        tb.close()


class MetricsWriter:
    """metrics.jsonl, tb/ event files and a one-line progress display. Create it on process 0 only."""

    def __init__(self, run_dir, total_steps: int, stream=None, start: int = 0):
        from tensorboardX import SummaryWriter  # imported here: only process 0 pays for it

        self.run_dir, self.total_steps, self.stream = storage.path(run_dir), total_steps, stream or sys.stderr
        path = self.run_dir / rundir.METRICS
        if storage.is_remote(path):  # no append on object stores: keep the lines, rewrite the object now and then
            self.jsonl, self.lines, self.flushed = None, [json.dumps(r) for r in rundir.read_metrics(run_dir)], 0.0
        else:
            self.jsonl = open(path, "a")
        # A resumed run (from the checkpoint at `start`) logs steps start+1... again; the event file of the run
        # that died may hold some of them: purge_step makes TensorBoard hide that file's steps > start.
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start + 1 if start else None)
        self.tty = self.stream.isatty()
        self.console_lost = None  # the signal a closed console stands for, once a progress line could not be shown

    def write(self, row: dict, eta_s: float | None) -> None:
        """One metrics row; tokens_per_s, mfu and eta_s may be None (no rate yet: the first step after a start)."""
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()
        else:
            self.lines.append(json.dumps(row))
            if time.monotonic() - self.flushed > REMOTE_FLUSH_S:
                self._flush_remote()
        log_scalars(self.tb, "train", {k: v for k, v in row.items() if k not in ("step", "time", "tokens")},
                    row["step"], row["tokens"])
        rate = "?" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:,.0f}"
        mfu = "?" if row["mfu"] is None else f"{row['mfu']:.1%}"
        line = (f"step {row['step']}/{self.total_steps}  loss {row['loss']:.4f}  {rate} tok/s  mfu {mfu}  "
                f"eta {formats.format_duration(eta_s, unknown='?')}")
        self._show(("\r" + line + "\033[K") if self.tty else line + "\n")

    def _show(self, text: str) -> None:
        """The progress display, on a console that may close: `ladder train 2>&1 | head` or a dropped terminal
        made the line's write fail, and the run stopped as a *storage* failure without saving. The display is
        dropped from then on and `console_lost` names the signal the loss stands for (SIGPIPE, SIGHUP):
        the trainer then saves the step and stops, as it does for those signals."""
        if self.console_lost:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            self.console_lost = "SIGPIPE" if isinstance(e, BrokenPipeError) else "SIGHUP"
            self.tty = False

    def flush(self) -> None:
        """Every row written so far onto storage. The trainer calls it before each checkpoint save: a run killed
        later resumes after that step and never writes its rows again, so rows still buffered (gs://
        metrics.jsonl is rewritten only every REMOTE_FLUSH_S; tensorboardX queues events for a writer thread
        and flushes every 120 s) would be lost for good. The event queue is drained by stopping tensorboardX's
        writer thread (it writes every queued event first) and starting a new one on the same file."""
        if self.jsonl is None:
            self._flush_remote()
        for w in (self.tb.all_writers or {}).values():
            events = w.event_writer
            worker = getattr(events, "_worker", None)
            if worker is not None and not events._closed:
                worker.stop()
                events._worker = type(worker)(events._event_queue, events._ev_writer, events._flush_secs)
                events._worker.start()
            events.flush()

    def _flush_remote(self) -> None:
        storage.write_text(self.run_dir / rundir.METRICS, "".join(r + "\n" for r in self.lines))
        self.flushed = time.monotonic()

    def abandon(self) -> None:
        """Close after a storage failure without flushing again (a full disk would fail once more, and
        tensorboardX's exit hook would print its own tracebacks): the rows written so far stay."""
        import contextlib

        with contextlib.suppress(Exception):
            if self.jsonl is not None:
                self.jsonl.close()
        class Discard:  # takes the events still queued, so the writer thread ends without touching the disk
            def write_event(self, event): pass
            def flush(self): pass
            def close(self): pass

        with contextlib.suppress(Exception):
            for w in (self.tb.all_writers or {}).values():
                events = w.event_writer
                events._worker._record_writer = Discard()
                events._worker.stop()
                events._closed = True  # its atexit hook then does nothing

    def close(self) -> None:
        if self.tty:
            self._show("\n")
        if self.jsonl is not None:
            self.jsonl.close()
        else:
            self._flush_remote()
        self.tb.close()
