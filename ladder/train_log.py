"""What a training run reports as it goes, and the check that stops it: status.json and metrics.jsonl (process 0
writes them), tokens/s, ETA and MFU, and the divergence test every step's loss passes before its state can be
saved or evaluated. The trainer's loop (ladder/train.py) calls `TrainLog.record` one step late, so reading a
step's metrics never stalls the device queue. Fields: docs/training.md.
"""

from __future__ import annotations

import math
import sys
import time

import jax

from ladder import arch as arch_lib
from ladder import metrics as metrics_lib
from ladder import rundir, storage
from ladder.arch import arch_of
from ladder.checkpoint import Checkpoints
from ladder.errors import TrainingFailed

# A loss or gradient that is not finite at step 1 was computed from the initial weights, before any update: the
# learning rate cannot be the cause (before, the message said to lower it for model.init_std=1e30).
FIRST_STEP_FIX = ("the first step's loss comes from the initial weights, before any update, so the learning rate is "
                  "not the cause: check model.init_std, model.rope_theta, model.norm_eps, the dtypes and the data "
                  "(or the base run's weights with init.from_run)")


class TrainLog:
    """What the run reports as it goes: status.json and metrics.jsonl (process 0 writes them), the rates, and
    the check of every step's loss before anything is saved or evaluated (divergence)."""

    def __init__(self, config, run_dir, start: int, ckpts: Checkpoints, lead: bool, data_sha: str = ""):
        t, a = config.train, arch_of(config)
        self.t, self.run_dir, self.ckpts, self.lead = t, run_dir, ckpts, lead
        self.flops_per_token = arch_lib.flops_per_token(a, t.mfu_accounting)
        self.tokens_per_step = t.global_batch * a.seq_len
        self.peak, peak_source = metrics_lib.peak_flops(jax.devices())
        self.writer = None
        status_before = rundir.read_status(run_dir)
        # Divergence reference: the loss of the run's first step, kept in status.json so a resumed run judges
        # its steps against the same number an uninterrupted run does (docs/training.md, "Divergence").
        first_loss = saved_first_loss(status_before.get("first_loss"), run_dir) if start else None
        # A stop that interrupted the evaluation of the step this run resumes from: evaluate it first (an older
        # start passes that step again and evaluates it in the loop). Kept in status.json until done.
        pending = status_before.get("eval_pending")
        self.eval_pending = pending if start and pending == start else None
        if lead:
            rundir.truncate_metrics(run_dir, start)
            self.writer = metrics_lib.MetricsWriter(run_dir, t.total_steps, start=start)
        if lead and start and data_sha:
            same_data(status_before, data_sha, jax.process_count(), run_dir)
        self.base = dict(total_steps=t.total_steps, n=arch_lib.n_params(a), flops_per_token=self.flops_per_token,
                         peak_flops=self.peak, peak_source=peak_source, first_loss=first_loss,
                         **({"first_batch_sha256": data_sha, "processes": jax.process_count()} if data_sha else {}))
        self.progress = {"step": start, "loss": None, "tokens_per_s": 0.0, "eta_s": None, "mfu": None}
        self.clock = {"t": None, "step": start}

    def set_status(self, state_name, **extra):
        base, progress = self.base, self.progress
        base["last_verified_step"] = self.ckpts.last_verified
        if self.lead:
            done = progress["step"]
            storage.write_json(self.run_dir / rundir.STATUS, dict(
                base, state=state_name, step=done, loss=progress["loss"], tokens_per_s=progress["tokens_per_s"],
                eta_s=progress["eta_s"], tokens=done * self.tokens_per_step,
                flops_done=done * self.tokens_per_step * self.flops_per_token, updated=time.time(),
                **({"eval_pending": self.eval_pending} if self.eval_pending is not None else {}), **extra))

    def flush(self) -> None:
        """The rows logged so far onto storage (before a checkpoint save: see MetricsWriter.flush)."""
        if self.writer is not None:
            self.writer.flush()

    def record(self, done: int, device_metrics, force_log: bool) -> None:
        """Read one step's metrics (blocking on that step only), stop on NaN/Inf, log on schedule."""
        t, base, progress, clock = self.t, self.base, self.progress, self.clock
        tokens_per_step = self.tokens_per_step
        m = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        if base["first_loss"] is None and math.isfinite(m["loss"]):
            base["first_loss"] = m["loss"]
        problem = diverged(m["loss"], m["grad_norm"], base["first_loss"], t.divergence_margin)
        if problem:
            self.ckpts.wait()  # a save still in flight is an earlier, checked state: seal it before naming it
            kept = self.ckpts.last_verified
            raise TrainingFailed(f"step {done}: {problem}; stopped before saving it; the last verified checkpoint "
                                 f"is {'step ' + str(kept) if kept is not None else 'none (nothing saved yet)'}; "
                                 + (FIRST_STEP_FIX if done == 1 else "lower optim.peak_lr, raise "
                                    "optim.warmup_steps or check the data"))
        now = time.perf_counter()
        progress.update(step=done, loss=m["loss"])
        first = clock["t"] is None  # the first step after a start includes compilation: rates start after it
        if first:
            clock.update(t=now, step=done)
        if not (force_log or done % t.log_every == 0):
            return
        # Every step due is logged, the first after a start too, so a resumed run's metrics.jsonl has the
        # rows an uninterrupted run's has; that first row has no rate (tokens_per_s, mfu: null).
        rate = eta = mfu = None
        if not first:
            rate = (done - clock["step"]) * tokens_per_step / (now - clock["t"])
            eta = (t.total_steps - done) * tokens_per_step / rate
            mfu = self.flops_per_token * rate / self.peak
            progress.update(tokens_per_s=rate, eta_s=eta, mfu=mfu)
            clock.update(t=now, step=done)
        if self.lead:
            self.writer.write(dict(step=done, loss=m["loss"], z_loss=m["z_loss"], grad_norm=m["grad_norm"],
                                   lr=m["lr"], tokens=done * tokens_per_step, tokens_per_s=rate, mfu=mfu,
                                   time=time.time()), eta)
            self.set_status("running")


def first_batch_sha256(source) -> str:
    """sha256 of this process's rows of batch 0 (every array, in key order): a fingerprint of what the run reads.
    A source is a pure function of (data, seed, step), so a resume that gets another value reads other data."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for key, value in sorted(source.batch(0).items()):
        h.update(key.encode() + np.ascontiguousarray(value, np.int32).tobytes())
    return h.hexdigest()


def same_data(status_before: dict, data_sha: str, processes: int, run_dir) -> bool:
    """On a resume: whether the first batch is the one the run started on (status.json's first_batch_sha256,
    compared when the process count is the same); if not, one note. A corpus file edited or added, another
    tokenizer or a rebuilt cache changed the data under a resumed run without a word before (config_hash
    holds the corpus's path, not its content). A note, not a stop: the checkpoints stay usable."""
    saved = status_before.get("first_batch_sha256")
    if not isinstance(saved, str) or status_before.get("processes") != processes or saved == data_sha:
        return True
    print(f"ladder train: note: {run_dir} was started on other training data (the first batch's sha256 "
          f"{data_sha[:12]} is not status.json's {saved[:12]}): a corpus file, the tokenizer or the token cache "
          "changed since; resuming on the data as they are now (restore the old data for a run that is a pure "
          "function of its config)", file=sys.stderr)
    return False


def saved_first_loss(value, run_dir) -> float | None:
    """status.json's first_loss if it is a loss (finite, >= 0), else None with a note: the resumed run then
    judges divergence against its own first step. A hand-edited value was a TypeError mid-run (text), turned
    the check off (NaN) or stopped a healthy run as diverged (negative)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                         and value >= 0):
        return value
    print(f"ladder train: {run_dir}/status.json: first_loss={str(value)[:40]!r} is not a loss; the divergence "
          "reference is this run's first step instead", file=sys.stderr)
    return None


def diverged(loss: float, grad_norm: float, first_loss: float | None, margin: float) -> str | None:
    """Why a step's loss means the run has diverged, or None. Rule (docs/training.md, "Divergence"): the loss
    or gradient norm is NaN/Inf, or the loss exceeds the run's first-step loss by more than `margin` nats
    (0 turns the second test off). A random model starts near ln(vocab), so a loss far above where the run
    started is a blow-up, not noise; a finite 1e6 would otherwise train on and end "done"."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return f"loss={loss} grad_norm={grad_norm} is not finite"
    if margin > 0 and first_loss is not None and loss > first_loss + margin:
        return (f"loss {loss:.6g} exceeds the first step's {first_loss:.6g} by more than train.divergence_margin="
                f"{margin:g} nats (diverged)")
    return None
