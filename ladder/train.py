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
import dataclasses
import json
import math
import re
import signal
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import NamedSharding, PartitionSpec as P

from ladder import arch as arch_lib
from ladder import checkpoint
from ladder import metrics as metrics_lib
from ladder import rundir
from ladder import runlock
from ladder import sharding
from ladder.checkpoint import Checkpoints
from ladder.data import make_source
from ladder.errors import LadderError, require
from ladder.model import loss_fn, make_model
from ladder.optimizer import make_optimizer
from ladder.train_config import (  # noqa: F401 (re-exported: ladder.train is the documented entry point)
    RUNG_KEYS, arch_of, check_base_architecture, check_run_dir, config_from_rung, config_hash, data_config,
    default_config, resolve_vocab, validate, validate_for_mesh)


class TrainingFailed(Exception):
    """The run started but cannot go on (NaN or diverged loss, a failed write, distributed start-up): exit 1."""

    storage = False  # a failed write: orbax's writer threads may still hold failing futures (see commands/train)


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


def initialize_distributed(dist) -> None:
    """jax.distributed.initialize when the config asks; before any other JAX call touches the backend."""
    if not dist.initialize:
        return
    kwargs = {"initialization_timeout": int(dist.timeout_s)}
    if dist.coordinator:
        require(dist.num_processes > 0 and 0 <= dist.process_id < dist.num_processes, "distributed.process_id",
                f"process_id={dist.process_id} with num_processes={dist.num_processes}",
                "give --num-processes N and --process-id in [0, N)")
        kwargs.update(coordinator_address=dist.coordinator, num_processes=dist.num_processes,
                      process_id=dist.process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 (jax raises several types; all mean the same thing here)
        where = dist.coordinator or "the TPU environment"
        raise TrainingFailed(f"jax.distributed.initialize via {where} failed within {dist.timeout_s}s "
                             f"(check the coordinator address/port and that every process started): "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


# ------------------------------------------------------------------------------------------ the program


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """Everything compiled for one (config, mesh); usable ahead of time for another topology."""

    step_fn: Callable  # (state, batch) -> (state, metrics); jitted, state donated
    init_fn: Callable  # (rng key) -> state on state_shardings
    logits_fn: Callable  # (params, inputs, segment_ids, positions) -> float32 logits [B, L, vocab_size]
    abstract_state: dict  # ShapeDtypeStructs with .sharding
    state_shardings: dict
    batch_shardings: dict
    mesh: jax.sharding.Mesh
    schedule: Callable


def make_train_step(config, mesh) -> TrainProgram:
    a = arch_of(config)
    model = make_model(config.model, a)
    tx, schedule = make_optimizer(config.optim, config.train.total_steps)
    z_coef = float(config.train.z_loss)
    B, L = config.train.global_batch, a.seq_len

    def boxed_state(rng):
        ids = jnp.zeros((1, L), jnp.int32)
        params = model.init(rng, ids, ids, ids)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    # eval_shape -> logical PartitionSpecs -> NamedShardings (optimizer moments inherit their param's names).
    abstract_boxed = jax.eval_shape(boxed_state, jax.random.key(0))
    state_shardings = sharding.logical_shardings(nn.get_partition_spec(abstract_boxed), mesh)
    abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                  nn.meta.unbox(abstract_boxed), state_shardings)
    row_sharding = sharding.batch_sharding(mesh)
    batch_shardings = {k: row_sharding for k in ("inputs", "targets", "segment_ids", "positions")}
    replicated = NamedSharding(mesh, P())

    def init(rng):
        return nn.meta.unbox(boxed_state(rng))

    def in_mesh_context():
        return jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(sharding.RULES)

    def train_step(state, batch):
        mesh_ctx, rules_ctx = in_mesh_context()
        with mesh_ctx, rules_ctx:
            def objective(params):
                logits = model.apply({"params": params}, batch["inputs"], batch["segment_ids"], batch["positions"])
                ce, z = loss_fn(logits, batch["targets"], batch["segment_ids"], z_coef)
                return ce + z, (ce, z)

            (_, (ce, z)), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": ce, "z_loss": z, "grad_norm": optax.tree.norm(grads), "lr": schedule(state["step"])}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    def logits(params, inputs, segment_ids, positions):
        mesh_ctx, rules_ctx = in_mesh_context()
        with mesh_ctx, rules_ctx:
            return model.apply({"params": params}, inputs, segment_ids, positions)[..., : a.vocab_size]

    param_shardings = state_shardings["params"]
    return TrainProgram(
        step_fn=jax.jit(train_step, in_shardings=(state_shardings, batch_shardings),
                        out_shardings=(state_shardings, replicated), donate_argnums=0),
        init_fn=jax.jit(init, out_shardings=state_shardings),
        logits_fn=jax.jit(logits, in_shardings=(param_shardings, row_sharding, row_sharding, row_sharding),
                          out_shardings=replicated),
        abstract_state=abstract_state, state_shardings=state_shardings, batch_shardings=batch_shardings,
        mesh=mesh, schedule=schedule,
    )


def bind_logits_fn(program: TrainProgram, params, data_parallel: int):
    """logits_fn(inputs, segment_ids, positions) for the evaluator: host int arrays in, float32 logits out.

    Rows are padded up to a multiple of the data-parallel size and the padding is cut off again. Every process
    must call it with the same arrays.
    """

    def logits_fn(inputs, segment_ids, positions):
        rows = inputs.shape[0]
        pad = (-rows) % data_parallel
        arrays = [np.pad(np.asarray(x, np.int32), ((0, pad), (0, 0))) for x in (inputs, segment_ids, positions)]
        arrays = [jax.device_put(x, program.batch_shardings["inputs"]) for x in arrays]
        return program.logits_fn(params, *arrays)[:rows]

    return logits_fn


# -------------------------------------------------------------------------------------------- the loop


class _Preemption:
    """SIGTERM or SIGINT (Ctrl-C) -> save at the next step boundary and stop; a second SIGINT stops at once.
    Multi-process runs ask JAX's preemption service, which agrees on one step across processes (a save called
    on one host only would hang the others)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.flag = False
        self.signal_name = "SIGTERM"
        self.multi = jax.process_count() > 1
        self.previous = {}
        if not self.multi:
            try:
                for sig in self.SIGNALS:
                    self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handler, no preemption saves
                self.previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.flag:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait for the save
        self.flag = True
        self.signal_name = signal.Signals(signum).name

    def reached(self, step: int) -> bool:
        if not self.multi:
            return self.flag
        from jax.experimental import multihost_utils

        try:
            return multihost_utils.reached_preemption_sync_point(step)
        except RuntimeError:
            return False

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------- continual pretraining


def resolve_init(config) -> dict | None:
    """The base checkpoint `config.init` names, checked before anything is written (LadderError otherwise):
    {from_run, step, tokens (the base's tokens seen at that step), base_run (its name), restore_optimizer}."""
    i = config.init
    if not i.from_run:
        return None
    base_dir = rundir.path(i.from_run)
    base_cfg = read_run_config(base_dir, "init.from_run")
    require(base_cfg is not None, "init.from_run", f"{base_dir} has no config.json, so it is not a run directory",
            "point it at the base run's --run-dir")
    check_base_architecture(config, base_cfg, base_dir)
    steps = checkpoint.verified_steps(base_dir / "checkpoints")
    require(bool(steps), "init.from_run", f"{base_dir} has no checkpoint that verifies against its checksums",
            "train the base run first (or resume it, which sets corrupt steps aside)")
    step = steps[-1] if i.step == -1 else i.step
    require(step in steps, "init.step", f"{base_dir} has no checkpoint at step {i.step}; it has {steps}",
            "use one of those steps or -1 (the latest)")
    tokens = step * base_cfg["train"]["global_batch"] * base_cfg["model"]["seq_len"]
    return dict(from_run=str(base_dir), step=step, tokens=tokens, base_run=base_cfg.get("name", base_dir.name),
                restore_optimizer=bool(i.restore_optimizer))


def init_from_base(program: TrainProgram, init: dict, key) -> dict:
    """A step-0 state from a base checkpoint: its weights and, with restore_optimizer, its Adam moments and
    bias-correction count (the LR-schedule counts restart at 0, so this run's own warmup and decay apply);
    otherwise a fresh optimizer state."""
    ckpts = rundir.path(init["from_run"]) / "checkpoints"
    if init["restore_optimizer"]:
        base = Checkpoints(ckpts, keep=1)
        try:
            state = base.restore(init["step"], program.abstract_state)
        except (ValueError, KeyError) as e:
            raise LadderError(f"init.restore_optimizer: the base run's optimizer state does not fit this config's "
                              f"optimizer ({str(e).splitlines()[0][:200]}); use the base's optim.clip/weight_decay "
                              "or restore_optimizer=False") from e
        finally:
            base.close()
        restart = lambda x: optax.ScaleByScheduleState(count=jnp.zeros_like(x.count))  # noqa: E731
        opt_state = jax.tree.map(lambda x: restart(x) if isinstance(x, optax.ScaleByScheduleState) else x,
                                 state["opt_state"], is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))
        opt_state = jax.device_put(opt_state, program.state_shardings["opt_state"])
        return {"step": jax.device_put(jnp.zeros((), jnp.int32), program.state_shardings["step"]),
                "params": state["params"], "opt_state": opt_state}
    fresh = program.init_fn(key)  # the fresh optimizer state (and a params tree that is replaced)
    return dict(fresh, params=checkpoint.restore_params(ckpts, init["step"], program.abstract_state["params"]))


def read_run_config(run_dir, field: str = "--run-dir") -> dict | None:
    """A run directory's config.json; None when absent. Present but unreadable is an error, never "no run":
    a fresh start there would train on top of (and later mix with) the old run's checkpoints."""
    path = rundir.path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
        require(isinstance(saved, dict), field, f"{path} is not a JSON object", "")
        return saved
    except (ValueError, UnicodeDecodeError, LadderError):
        raise LadderError(f"{field}: {path} is unreadable (not the JSON `ladder train` writes), so this run's "
                          "config is unknown; restore it from a backup, or use a new --run-dir") from None


def train(config, run_dir, on_eval: Callable | None = None) -> dict:
    """Train (or resume, or notice it is already done). Returns a summary dict; see docs/training.md."""
    resolve_vocab(config)  # model.vocab_size = 0: from the tokenizer or the token store's manifest
    validate(config)
    check_run_dir(run_dir)
    run_dir = rundir.path(run_dir)
    initialize_distributed(config.distributed)
    mesh = sharding.make_mesh(config.mesh)
    validate_for_mesh(config, dict(mesh.shape), jax.process_count())
    # One writer per run directory: process 0 holds its lock for the whole run (the others write only
    # checkpoint shards, in step with it).
    with runlock.hold(run_dir, "--run-dir") if jax.process_index() == 0 else contextlib.nullcontext():
        try:
            return _train_locked(config, run_dir, mesh, on_eval)
        except OSError as e:  # a write before the loop (config.json, metrics.jsonl): the loop has its own
            raise storage_failure(e, run_dir, "unknown") from e


def _train_locked(config, run_dir, mesh, on_eval) -> dict:
    digest = config_hash(config)
    saved = read_run_config(run_dir)
    require(saved is None or saved.get("config_hash") == digest, "--run-dir",
            f"{run_dir} holds a run with another config (config_hash differs)", "use a new --run-dir")
    status = rundir.read_json(run_dir / "status.json")
    if status and status.get("state") == "done":
        return dict(status, run_dir=str(run_dir))
    init = rundir.read_json(run_dir / "init.json") or resolve_init(config)  # a resume keeps its base

    t, a = config.train, arch_of(config)
    source = make_source(data_config(config), a.seq_len, t.global_batch, jax.process_index(), jax.process_count())
    row_sharding = sharding.batch_sharding(mesh)
    local = t.global_batch // jax.process_count()
    rows = sharding.local_rows(row_sharding, t.global_batch, a.seq_len)
    require(rows == (jax.process_index() * local, (jax.process_index() + 1) * local), "mesh",
            f"process {jax.process_index()} holds batch rows {rows}, not one contiguous per-process block",
            "keep mesh.tensor within one host")

    # Everything checked: from here on we write.
    lead = jax.process_index() == 0
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        if saved is None:
            rundir.write_json(run_dir / "config.json", dict(config.to_dict(), config_hash=digest))
    program = make_train_step(config, mesh)
    ckpt_dir = run_dir / "checkpoints"
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
    start = ckpts.latest_step()
    ckpts.last_verified = good if lead else start  # non-lead processes trust process 0's verification
    if start is None and init:
        state, start = init_from_base(program, init, jax.random.key(t.seed)), 0
        if lead:
            rundir.write_json(run_dir / "init.json", init)
            print(f"ladder train: continuing {init['base_run']} from its checkpoint at step {init['step']}"
                  + (" with its optimizer state" if init["restore_optimizer"] else " (weights only)"), file=sys.stderr)
    elif start is None:
        state, start = program.init_fn(jax.random.key(t.seed)), 0
    else:
        state = ckpts.restore(start, program.abstract_state)  # verified above (by process 0)
        if lead:
            print(f"ladder train: resuming {run_dir} from the checkpoint at step {start}", file=sys.stderr)

    flops_per_token = arch_lib.flops_per_token(a, t.mfu_accounting)
    tokens_per_step = t.global_batch * a.seq_len
    peak, peak_source = metrics_lib.peak_flops(jax.devices())
    writer = None
    status_before = rundir.read_json(run_dir / "status.json") or {}
    # Divergence reference: the loss of the run's first step, kept in status.json so a resumed run judges
    # its steps against the same number an uninterrupted run does (docs/training.md, "Divergence").
    first_loss = status_before.get("first_loss") if start else None
    if lead:
        rundir.truncate_metrics(run_dir, start)
        writer = metrics_lib.MetricsWriter(run_dir, t.total_steps)
    dp = dict(mesh.shape)["data"] * dict(mesh.shape)["fsdp"]
    eval_steps, save_steps = set(t.eval_steps), set(t.checkpoint_steps) | {t.total_steps}
    base = dict(total_steps=t.total_steps, n=arch_lib.n_params(a), flops_per_token=flops_per_token,
                peak_flops=peak, peak_source=peak_source, first_loss=first_loss)
    progress = {"step": start, "loss": None, "tokens_per_s": 0.0, "eta_s": None, "mfu": None}
    clock = {"t": None, "step": start}

    def set_status(state_name, **extra):
        base["last_verified_step"] = ckpts.last_verified
        if lead:
            done = progress["step"]
            rundir.write_json(run_dir / "status.json", dict(
                base, state=state_name, step=done, loss=progress["loss"], tokens_per_s=progress["tokens_per_s"],
                eta_s=progress["eta_s"], tokens=done * tokens_per_step,
                flops_done=done * tokens_per_step * flops_per_token, updated=time.time(), **extra))

    def record(done: int, device_metrics, force_log: bool) -> None:
        """Read one step's metrics (blocking on that step only), stop on NaN/Inf, log on schedule."""
        m = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        if base["first_loss"] is None and math.isfinite(m["loss"]):
            base["first_loss"] = m["loss"]
        problem = diverged(m["loss"], m["grad_norm"], base["first_loss"], t.divergence_margin)
        if problem:
            ckpts.wait()  # a save still in flight is an earlier, checked state: seal it before naming it
            kept = ckpts.last_verified
            raise TrainingFailed(f"step {done}: {problem}; stopped before saving it; the last verified checkpoint "
                                 f"is {'step ' + str(kept) if kept is not None else 'none (nothing saved yet)'}; "
                                 "lower optim.peak_lr, raise optim.warmup_steps or check the data")
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
            mfu = flops_per_token * rate / peak
            progress.update(tokens_per_s=rate, eta_s=eta, mfu=mfu)
            clock.update(t=now, step=done)
        if lead:
            writer.write(dict(step=done, loss=m["loss"], z_loss=m["z_loss"], grad_norm=m["grad_norm"], lr=m["lr"],
                              tokens=done * tokens_per_step, tokens_per_s=rate, mfu=mfu, time=time.time()), eta)
            set_status("running")

    preemption = _Preemption()
    pending = None  # (step, device metrics) of the step before the newest: read after the next dispatch
    failed = False
    try:
        set_status("running")
        for k in range(start, t.total_steps):
            batch = sharding.to_global(source.batch(k), row_sharding, t.global_batch)
            state, device_metrics = program.step_fn(state, batch)
            done = k + 1
            if pending:
                record(*pending, force_log=False)
            pending = (done, device_metrics)
            preempted = preemption.reached(done)
            scheduled_save = done in save_steps or bool(t.checkpoint_every and done % t.checkpoint_every == 0)
            must_save = scheduled_save or preempted
            forced = scheduled_save or done in eval_steps  # logged whatever log_every says (save_steps has the end)
            if forced or preempted:  # a state is saved or evaluated only after its loss is checked
                record(*pending, force_log=forced)  # a preemption adds no row: resumed == uninterrupted
                pending = None
            if done in eval_steps or (done == t.total_steps and on_eval):
                if on_eval:
                    on_eval(done, state["params"], bind_logits_fn(program, state["params"], dp))
            try:
                if must_save:
                    ckpts.save(done, state)
                ckpts.poll()  # a background save that failed stops the run now, not at the next save
                if preempted:
                    ckpts.wait()
            except Exception as e:  # noqa: BLE001 (orbax re-raises its writer threads' errors as they came)
                raise storage_failure(e, ckpt_dir, ckpts.last_verified) from e
            if preempted:
                set_status("preempted", signal=preemption.signal_name)
                return dict(base, state="preempted", step=done, loss=progress["loss"], run_dir=str(run_dir),
                            signal=preemption.signal_name)
        try:
            ckpts.wait()
        except Exception as e:  # noqa: BLE001
            raise storage_failure(e, ckpt_dir, ckpts.last_verified) from e
    except OSError as e:  # metrics.jsonl, status.json, tb/: the disk is full or the directory went read-only
        failed = True
        error = storage_failure(e, run_dir, ckpts.last_verified)
        _record_failure(set_status, error)
        raise error from e
    except TrainingFailed as e:
        failed = True
        _record_failure(set_status, e, ckpts)
        raise
    finally:
        preemption.restore()
        # On a failure these may fail again on the same storage: the first error is the one reported.
        if writer:
            writer.abandon() if failed else writer.close()
        with contextlib.suppress(Exception) if failed else contextlib.nullcontext():
            ckpts.close()
    progress["eta_s"] = 0.0
    try:
        set_status("done", mfu=progress["mfu"])
    except OSError as e:
        raise storage_failure(e, run_dir / "status.json", ckpts.last_verified) from e
    return dict(base, state="done", step=t.total_steps, loss=progress["loss"], tokens_per_s=progress["tokens_per_s"],
                mfu=progress["mfu"], run_dir=str(run_dir))


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


def _record_failure(set_status, error: BaseException, ckpts=None) -> None:
    """status.json "failed" with the message, where storage still allows it (a full disk may not)."""
    with contextlib.suppress(Exception):
        if ckpts is not None:
            ckpts.wait()
    with contextlib.suppress(OSError):
        set_status("failed", error=str(error))
