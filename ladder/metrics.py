"""Model-FLOP utilisation, the run directory's metric files and the terminal progress line.

MFU = (training FLOPs per token, from ladder.arch) x tokens/s / peak FLOP/s of all devices (docs/flops.md).
The peak comes from ladder.chips for TPUs and GPUs; a CPU has no datasheet peak, so the trainer measures a
jitted float32 matmul once at start and uses that.

Run-directory files go through etils.epath, so a run directory may be local or `gs://...` (with gcsfs
installed). Object stores have no append and no rename-over: there JSON files are written whole (an object
appears only once its upload completes, which is the atomicity a local tmp + rename gives) and
metrics.jsonl is rewritten whole at most every REMOTE_FLUSH_S seconds and at close.
"""

from __future__ import annotations

import json
import os
import sys
import time
from etils import epath

import jax
import jax.numpy as jnp

from ladder.chips import CHIPS

# device_kind substrings (lower case) -> ladder.chips name; first match wins, so "v5 lite" precedes "v5".
DEVICE_KINDS = (("v5 lite", "v5e"), ("v5e", "v5e"), ("v6 lite", "v6e"), ("v6e", "v6e"), ("v5p", "v5p"),
                ("v5", "v5p"), ("v4", "v4"), ("h200", "h200"), ("h100", "h100"), ("a100", "a100"))


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


def chip_for(device) -> str | None:
    kind = device.device_kind.lower()
    return next((chip for key, chip in DEVICE_KINDS if key in kind), None)


def peak_flops(devices) -> tuple[float, str]:
    """(peak FLOP/s summed over `devices`, where the number came from)."""
    devices = list(devices)
    if devices[0].platform == "cpu":
        # Forced host devices share one CPU: the host's peak is one matmul's, once per process.
        return measure_matmul_peak() * jax.process_count(), "measured fp32 matmul (cpu)"
    name = chip_for(devices[0])
    if name is None:
        return float("nan"), f"unknown device kind {devices[0].device_kind!r} (add it to metrics.DEVICE_KINDS)"
    return CHIPS[name].peak_flops * len(devices), f"ladder.chips[{name!r}] x {len(devices)}"


REMOTE_FLUSH_S = 30.0


def run_path(path) -> epath.Path:
    """A run-directory path, local or gs:// (etils.epath)."""
    return epath.Path(path)


def is_remote(path) -> bool:
    return "://" in str(path)


def read_json(path) -> dict | None:
    """A JSON file (local or gs://); None when absent or torn."""
    try:
        return json.loads(run_path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json_atomic(path, obj: dict) -> None:
    path, text = run_path(path), json.dumps(obj, indent=2, default=float)
    if is_remote(path):
        path.write_text(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def format_duration(seconds: float) -> str:
    if not seconds == seconds or seconds == float("inf"):  # nan or inf
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class MetricsWriter:
    """metrics.jsonl, tb/ event files and a one-line progress display. Create it on process 0 only."""

    def __init__(self, run_dir, total_steps: int, stream=None):
        from tensorboardX import SummaryWriter  # imported here: only process 0 pays for it

        self.run_dir, self.total_steps, self.stream = run_path(run_dir), total_steps, stream or sys.stderr
        path = self.run_dir / "metrics.jsonl"
        if is_remote(path):  # no append on object stores: keep the lines, rewrite the object now and then
            self.jsonl, self.lines, self.flushed = None, _read_lines(path), 0.0
        else:
            self.jsonl = open(path, "a")
        self.tb = SummaryWriter(str(self.run_dir / "tb"))
        self.tty = self.stream.isatty()

    def write(self, row: dict, eta_s: float | None) -> None:
        """One metrics row; tokens_per_s, mfu and eta_s may be None (no rate yet: the first step after a start)."""
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()
        else:
            self.lines.append(json.dumps(row))
            if time.monotonic() - self.flushed > REMOTE_FLUSH_S:
                self._flush_remote()
        for key, value in row.items():
            if key not in ("step", "time") and value is not None:
                self.tb.add_scalar(f"train/{key}", value, row["step"])
        rate = "?" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:,.0f}"
        mfu = "?" if row["mfu"] is None else f"{row['mfu']:.1%}"
        line = (f"step {row['step']}/{self.total_steps}  loss {row['loss']:.4f}  {rate} tok/s  mfu {mfu}  "
                f"eta {format_duration(float('nan') if eta_s is None else eta_s)}")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def _flush_remote(self) -> None:
        (self.run_dir / "metrics.jsonl").write_text("".join(r + "\n" for r in self.lines))
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
            self.stream.write("\n")
        if self.jsonl is not None:
            self.jsonl.close()
        else:
            self._flush_remote()
        self.tb.close()


def _read_lines(path) -> list[str]:
    path = run_path(path)
    return [line for line in path.read_text().splitlines() if line] if path.exists() else []


def read_metrics(path, warn=None) -> list[dict]:
    """metrics.jsonl rows; [] when absent. A torn last line (a crash mid-write) is dropped with a note; a bad
    line before the last is damage, not a crash, and is a LadderError naming file and line."""
    from ladder.errors import LadderError

    path = run_path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("no integer step")
        except (ValueError, UnicodeDecodeError) as e:
            if all(not rest.strip() for rest in lines[i + 1:]):
                (warn or (lambda m: print(m, file=sys.stderr)))(
                    f"ladder: {path}: dropped a torn last line ({len(line)} bytes, line {i + 1}) left by a crash")
                break
            raise LadderError(f"{path}: line {i + 1} is not a metrics row ({e}); delete that line, or the file "
                              "(metrics are rewritten as the run resumes from its checkpoint)") from None
        rows.append(row)
    return rows


def truncate_jsonl(path, last_step: int) -> None:
    """Drop rows past `last_step` (written after the checkpoint a resumed run starts from), and a torn last
    line; the file is rewritten whole (atomically where local), so new rows never join a torn one."""
    path = run_path(path)
    if not path.exists():
        return
    text = "".join(json.dumps(r) + "\n" for r in read_metrics(path) if r["step"] <= last_step)
    if is_remote(path):
        path.write_text(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
