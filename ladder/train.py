"""The one trainer: a config (or a plan rung) in, a run directory out; resumes by itself.

    config = default_config()                      # every key a train config may have, with defaults
    summary = train(config, "runs/tiny")           # validate, init or resume, train, checkpoint, log

The order inside train() is the contract users rely on: every config check runs before anything is compiled
or written (a LadderError names the field and the fix); batches are a pure function of (data seed, step), so
the step stored in a checkpoint is the data position; metrics are read one step late so the host never
stalls the device queue; a NaN, Inf or diverged loss stops the run before a bad state can be checkpointed;
one process owns the run directory (ladder.runlock); a resume starts from the newest checkpoint that
verifies against its checksums (ladder.checkpoint.recover); a failed write stops the run at once.
Run-directory layout, status fields and these rules: docs/training.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Callable

import jax

from ladder import attention, checkpoint, cpu_threads, distributed
from ladder import rundir, storage
from ladder import runlock
from ladder import sharding
from ladder.arch import arch_of
from ladder.checkpoint import Checkpoints, check_restored_step, check_step_in_run
from ladder.data import make_source
from ladder.device_checks import check_fits_memory, validate_for_mesh
from ladder.errors import LadderError, TrainingFailed, require
from ladder.preemption import EvaluationInterrupted, Preemption
from ladder.step import TrainProgram, bind_logits_fn, make_train_step
from ladder.train_config import (  # noqa: F401 (re-exported: ladder.train is the documented entry point)
    RUNG_KEYS, config_changes, config_from_rung, config_hash, data_config, default_config, resolve_vocab, validate)
from ladder.train_log import TrainLog, first_batch_sha256
from ladder.warmstart import init_from_base, resolve_init


_STORAGE_REASONS = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied",
                    "Input/output error")


def storage_failure(e: BaseException, path, last_verified: int | None | str) -> TrainingFailed:
    """One line for a write that failed (permissions, a full disk, an orbax save that could not finish)."""
    if isinstance(e, OSError) and e.strerror:
        where, why = e.filename or path, e.strerror
    else:  # orbax / tensorstore wrap the OS error in text: pick out the reason and the file
        text = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x)
        why = next((r for r in _STORAGE_REASONS if r.lower() in text.lower()),
                   (str(e).strip().splitlines() or [type(e).__name__])[0][:200])
        quoted = re.search(r'"(/[^"]+|gs://[^"]+)"', text)
        where = quoted.group(1) if quoted else path
    kept = ("the checkpoints already there are untouched" if last_verified == "unknown" else
             f"the last verified checkpoint ({'step ' + str(last_verified) if last_verified is not None else 'none yet'})"
             " is intact")
    error = TrainingFailed(f"storage: cannot write {where} ({why}); stopped; {kept}; free space or fix "
                           "permissions, then run the same command to resume")
    error.storage = True
    return error


def train(config, run_dir, on_eval: Callable | None = None) -> dict:
    """Train (or resume, or notice it is already done). Returns a summary dict; see docs/training.md."""
    resolve_vocab(config)  # model.vocab_size = 0: from the tokenizer or the token store's manifest
    validate(config)
    rundir.check_run_dir(run_dir)
    rundir.check_run_dir_outside_data(config, run_dir)
    run_dir = storage.path(run_dir)
    distributed.initialize(config.distributed)
    # XLA CPU threads: the count this run started with, else LADDER_XLA_CPU_THREADS (ladder/cpu_threads.py)
    threads = cpu_threads.create_backend(cpu_threads.for_run(rundir.read_run_config(run_dir)))
    mesh = sharding.make_mesh(config.mesh)  # starts the backends (quietly: sharding.make_mesh)
    distributed.check_same_config(config_hash(config))  # a peer with other overrides: every process stops
    attention.resolve(config.model.attention, jax.default_backend(), config.model.seq_len)  # before any write
    validate_for_mesh(config, dict(mesh.shape), jax.process_count())
    check_fits_memory(config, dict(mesh.shape), device_bytes())
    # One writer per run directory: process 0 holds its lock for the whole run (the others write only
    # checkpoint shards, in step with it).
    with runlock.hold(run_dir, "--run-dir") if jax.process_index() == 0 else contextlib.nullcontext():
        try:
            return _train_locked(config, run_dir, mesh, on_eval, threads)
        except OSError as e:  # a write before the loop (config.json, metrics.jsonl): the loop has its own
            raise storage_failure(e, run_dir, "unknown") from e


def device_bytes() -> float | None:
    """What one local device may hold: the accelerator's allocator limit, or on CPU the host's memory (its
    cgroup limit where lower) shared by the forced host devices; None where neither can be read."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return float(stats["bytes_limit"])
    if jax.default_backend() != "cpu":
        return None
    try:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        host = min(host, int(limit)) if limit.isdigit() else host
    except OSError:
        pass
    return host / jax.local_device_count()


def _train_locked(config, run_dir, mesh, on_eval, threads: int = 0) -> dict:
    """Holding the run directory: refuse another config's run, return a finished run's summary as it is, else
    write config.json, start from the newest verified checkpoint (or the base run, or a fresh init), run the
    steps and mark the run done."""
    digest = config_hash(config)
    saved = rundir.read_run_config(run_dir)
    if saved is not None and saved.get("config_hash") != digest:
        changed = config_changes(saved, config)
        raise LadderError(f"--run-dir: {run_dir} holds a run with another config ({changed or 'config_hash differs'}); "
                          "use a new --run-dir, or the config that wrote it to resume")
    status = rundir.read_status(run_dir)
    if status and status.get("state") == "done":
        return dict(status, run_dir=str(run_dir))
    init = storage.read_json(run_dir / rundir.INIT) or resolve_init(config)  # a resume keeps its base
    source, row_sharding = _open_source(config, mesh)

    # Everything checked: from here on we write.
    lead = jax.process_index() == 0
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        if saved is None:
            storage.write_json(run_dir / rundir.CONFIG, dict(config.to_dict(), config_hash=digest,
                                                             **{cpu_threads.RECORD: threads}))
    program = make_train_step(config, mesh, reuse=True)  # one trace per program in this process
    ckpts = _open_checkpoints(run_dir / "checkpoints", config.train, lead)
    state, start = _start_state(program, ckpts, init, config.train.seed, run_dir, lead, config.train.total_steps)
    log = TrainLog(config, run_dir, start, ckpts, lead, first_batch_sha256(source) if lead else "")
    preempted = _run_recording_failures(config, program, state, start, source, row_sharding, ckpts, log, on_eval,
                                        run_dir)
    if preempted:
        return preempted
    progress = log.progress
    progress["eta_s"] = 0.0
    try:
        log.set_status("done", mfu=progress["mfu"])
    except OSError as e:
        raise storage_failure(e, run_dir / rundir.STATUS, ckpts.last_verified) from e
    return dict(log.base, state="done", step=config.train.total_steps, loss=progress["loss"],
                tokens_per_s=progress["tokens_per_s"], mfu=progress["mfu"], run_dir=str(run_dir))


def _run_recording_failures(config, program: TrainProgram, state, start: int, source, row_sharding,
                            ckpts: Checkpoints, log: TrainLog, on_eval, run_dir) -> dict | None:
    """_run_steps, then the last save sealed; any failure recorded as status "failed" (or "preempted" for a
    second Ctrl-C) before it propagates, so status.json never says "running" for a run that stopped. Signal
    handlers are restored and the metrics writer and checkpoints closed on every path. Returns _run_steps's
    preempted summary, or None when every step ran."""
    preemption = Preemption()
    failed = False
    try:
        log.set_status("running")
        preempted = _run_steps(config, program, state, start, source, row_sharding, ckpts, log, preemption,
                               on_eval, run_dir)
        if preempted:
            return preempted
        try:
            ckpts.wait()
        except Exception as e:  # noqa: BLE001
            raise storage_failure(e, run_dir / "checkpoints", ckpts.last_verified) from e
    except OSError as e:  # metrics.jsonl, status.json, tb/: the disk is full or the directory went read-only
        failed = True
        error = storage_failure(e, run_dir, ckpts.last_verified)
        _record_failure(log.set_status, error)
        raise error from e
    except (TrainingFailed, LadderError) as e:  # LadderError: bad input found mid-run (an evaluation's task)
        failed = True
        _record_failure(log.set_status, e, ckpts)
        raise
    except jax.errors.JaxRuntimeError as e:  # a collective whose peer process is gone: one line, not a traceback
        error = distributed.peer_lost(e)
        if error is None:
            raise
        failed = True
        _record_failure(log.set_status, error)  # not ckpts.wait(): an async save may wait for the dead peer
        raise error from e
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, without a save, but never leave "running" behind
        failed = True
        with contextlib.suppress(OSError):
            log.set_status("preempted", signal="SIGINT", error="stopped at once by a second Ctrl-C, without a save; "
                           "the run resumes from the last verified checkpoint")
        raise
    finally:
        preemption.restore()
        # On a failure these may fail again on the same storage: the first error is the one reported.
        if log.writer:
            log.writer.abandon() if failed else log.writer.close()
        with contextlib.suppress(Exception) if failed else contextlib.nullcontext():
            ckpts.close()
    return None


def _open_source(config, mesh):
    """The batch source (a pure function of data seed and step) and the rows' sharding; each process must
    hold one contiguous block of rows, which is what the source reads for it."""
    t, a = config.train, arch_of(config)
    source = make_source(data_config(config), a.seq_len, t.global_batch, jax.process_index(), jax.process_count())
    row_sharding = sharding.batch_sharding(mesh)
    local = t.global_batch // jax.process_count()
    rows = sharding.local_rows(row_sharding, t.global_batch, a.seq_len)
    require(rows == (jax.process_index() * local, (jax.process_index() + 1) * local), "mesh",
            f"process {jax.process_index()} holds batch rows {rows}, not one contiguous per-process block",
            "keep mesh.tensor within one host")
    return source, row_sharding


def _open_checkpoints(ckpt_dir, t, lead: bool) -> Checkpoints:
    """The run's checkpoints, after process 0 has set aside newer steps that fail verification, and a probe
    that the directory takes writes (a LadderError now rather than a failed save later)."""
    good = checkpoint.recover(ckpt_dir) if lead else None  # newer steps that fail verification are set aside
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("ladder: checkpoints verified")
    try:
        ckpts = Checkpoints(ckpt_dir, t.keep_checkpoints, t.checkpoint_steps, t.async_checkpoints)
        if lead:
            probe = ckpt_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
    except OSError as e:
        raise LadderError(f"--run-dir: cannot write checkpoints into {ckpt_dir} ({e.strerror or e}); "
                          "make it writable or choose another --run-dir") from None
    ckpts.last_verified = good if lead else ckpts.latest_step()  # non-lead processes trust process 0's check
    return ckpts


def _start_state(program: TrainProgram, ckpts: Checkpoints, init: dict | None, seed: int, run_dir, lead: bool,
                 total_steps: int):
    """(state, step) to start from: the newest checkpoint (a resume), else the base run's (continual
    pretraining), else a fresh init from train.seed."""
    start = ckpts.latest_step()
    if start is None and init:
        state, start = init_from_base(program, init, jax.random.key(seed)), 0
        if lead:
            storage.write_json(run_dir / rundir.INIT, init)
            print(f"ladder train: continuing {init['base_run']} from its checkpoint at step {init['step']}"
                  + (" with its optimizer state" if init["restore_optimizer"] else " (weights only)"), file=sys.stderr)
    elif start is None:
        state, start = program.init_fn(jax.random.key(seed)), 0
    else:
        check_step_in_run(ckpts.directory, start, total_steps)
        state = ckpts.restore(start, program.abstract_state)  # verified above (by process 0)
        check_restored_step(ckpts.directory, start, state)
        if lead:
            print(f"ladder train: resuming {run_dir} from the checkpoint at step {start}", file=sys.stderr)
    return state, start


def _run_steps(config, program: TrainProgram, state, start: int, source, row_sharding, ckpts: Checkpoints,
               log: TrainLog, preemption: Preemption, on_eval, run_dir) -> dict | None:
    """Steps start..total_steps: dispatch, check the previous step's loss, evaluate and save when due. Returns
    the preempted summary when a signal stopped it (after its save), else None."""
    t = config.train
    dp = dict(program.mesh.shape)["data"] * dict(program.mesh.shape)["fsdp"]
    eval_steps, save_steps = set(t.eval_steps), set(t.checkpoint_steps) | {t.total_steps}
    if log.eval_pending is not None and on_eval:  # the evaluation a stop interrupted, of the step resumed from
        if not _evaluate(on_eval, log.eval_pending, state, program, dp, preemption):
            return _preempted(log, preemption, run_dir)  # stopped again: that step's checkpoint is already there
    log.eval_pending = None
    pending = None  # (step, device metrics) of the step before the newest: read after the next dispatch
    for k in range(start, t.total_steps):
        batch = sharding.to_global(source.batch(k), row_sharding, t.global_batch)
        state, device_metrics = program.step_fn(state, batch)
        done = k + 1
        if pending:
            log.record(*pending, force_log=False)
        pending = (done, device_metrics)
        if log.writer and log.writer.console_lost:
            preemption.request(log.writer.console_lost)
        preempted = preemption.reached(done)
        scheduled_save = done in save_steps or bool(t.checkpoint_every and done % t.checkpoint_every == 0)
        forced = scheduled_save or done in eval_steps  # logged whatever log_every says (save_steps has the end)
        if forced or preempted:  # a state is saved or evaluated only after its loss is checked
            log.record(*pending, force_log=forced)  # a preemption adds no row: resumed == uninterrupted
            pending = None
        if on_eval and (done in eval_steps or done == t.total_steps):
            if not _evaluate(on_eval, done, state, program, dp, preemption):
                # Stopped between two batches: save this step with the mark "evaluation pending", written
                # before the save can commit, so a resume from this step redoes its evaluation first.
                log.eval_pending = done
                log.set_status("running")
            preempted = preempted or preemption.requested()  # a signal during the evaluation: stop here
        must_save = scheduled_save or preempted
        if must_save:
            log.flush()  # rows up to `done` on storage before `done` can become a resume point
        try:
            if must_save:
                ckpts.save(done, state)
            ckpts.poll()  # a background save that failed stops the run now, not at the next save
            if preempted:
                ckpts.wait()
        except Exception as e:  # noqa: BLE001 (orbax re-raises its writer threads' errors as they came)
            raise storage_failure(e, run_dir / "checkpoints", ckpts.last_verified) from e
        if preempted:
            return _preempted(log, preemption, run_dir)
    return None


def _evaluate(on_eval, step: int, state, program: TrainProgram, dp: int, preemption: Preemption) -> bool:
    """on_eval of the state after `step`; False when a stop request interrupted it between two batches (its
    rows are written only at its end, so nothing of it was written)."""
    logits_fn = preemption.interruptible(bind_logits_fn(program, state["params"], dp))
    try:
        on_eval(step, state["params"], logits_fn)
    except EvaluationInterrupted:
        print(f"ladder train: evaluation of step {step} stopped by {preemption.signal_name}; it is redone when the "
              "run resumes", file=sys.stderr)
        return False
    return True


def _preempted(log: TrainLog, preemption: Preemption, run_dir) -> dict:
    log.set_status("preempted", signal=preemption.signal_name)
    return dict(log.base, state="preempted", step=log.progress["step"], loss=log.progress["loss"],
                run_dir=str(run_dir), signal=preemption.signal_name,
                **({"eval_pending": log.eval_pending} if log.eval_pending is not None else {}))


def _record_failure(set_status, error: BaseException, ckpts=None) -> None:
    """status.json "failed" with the message, where storage still allows it (a full disk may not)."""
    with contextlib.suppress(Exception):
        if ckpts is not None:
            ckpts.wait()
    with contextlib.suppress(OSError):
        set_status("failed", error=str(error))
