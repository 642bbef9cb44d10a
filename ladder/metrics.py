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

    tb = SummaryWriter(str(run_path(run_dir) / "tb"), filename_suffix=f".eval-{step}")  # its own event file
    try:
        for row in rows:
            log_scalars(tb, f"eval/{row.get('task', 'tasks')}",
                        {k: row[k] for k in ("loss", "acc", "acc_raw", "prob") if k in row}, step, tokens)
        if rows:
            log_scalars(tb, "eval", {k: v for k, v in rows[0].items() if k.endswith("_loss")}, step, tokens)
    finally:
        tb.close()


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
        log_scalars(self.tb, "train", {k: v for k, v in row.items() if k not in ("step", "time", "tokens")},
                    row["step"], row["tokens"])
        rate = "?" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:,.0f}"
        mfu = "?" if row["mfu"] is None else f"{row['mfu']:.1%}"
        line = (f"step {row['step']}/{self.total_steps}  loss {row['loss']:.4f}  {rate} tok/s  mfu {mfu}  "
                f"eta {format_duration(float('nan') if eta_s is None else eta_s)}")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def _flush_remote(self) -> None:
        (self.run_dir / "metrics.jsonl").write_text("".join(r + "\n" for r in self.lines))
        self.flushed = time.monotonic()

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


def truncate_jsonl(path, last_step: int) -> None:
    """Drop rows past `last_step` (written after the checkpoint a resumed run starts from)."""
    path = run_path(path)
    if not path.exists():
        return
    rows = [line for line in _read_lines(path) if json.loads(line)["step"] <= last_step]
    path.write_text("".join(r + "\n" for r in rows))
