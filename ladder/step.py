"""The pure training step for one (config, mesh): loss, microbatch accumulation and the optimizer update,
jitted with the state's and the batch's shardings.

    program = make_train_step(config, mesh)        # TrainProgram: step_fn, init_fn, logits_fn, shardings
    state, metrics = program.step_fn(state, batch)

The compiled programs depend on the model, the batch, the mesh and the optimizer's form, never on the
schedule's numbers (peak lr, warmup, total steps: runtime inputs, ladder.optimizer.schedule_inputs). So rungs of
one size run one program: the persistent compilation cache serves all but the first, and within one process
the trainer's make_train_step(..., reuse=True) hands back the same jitted functions (no re-trace).

Nothing here reads or writes files: ladder.train is the loop around it (resume, checkpoints, divergence,
signals, evaluation), and ladder.aot compiles the same program ahead of time for another topology.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import NamedSharding, PartitionSpec as P

from ladder import sharding
from ladder.arch import arch_of
from ladder.loss import token_weights
from ladder.model import make_model
from ladder.optimizer import make_optimizer, schedule_fn, schedule_inputs


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
    schedule: Callable  # step -> learning rate of this run (host-side)


class BoundStep:
    """The jitted step with one run's schedule inputs bound: called, and lowered (ladder.aot, for a topology
    with no local devices), as (state, batch) like a plain jitted step."""

    def __init__(self, jitted, inputs: dict, sharding: NamedSharding):
        self.jitted, self.inputs, self.sharding, self.on_device = jitted, inputs, sharding, None

    def __call__(self, state, batch):
        if self.on_device is None:  # once per run: replicated scalars (concrete even when called under a trace)
            with jax.ensure_compile_time_eval():
                self.on_device = {k: jax.device_put(v, self.sharding) for k, v in self.inputs.items()}
        return self.jitted(state, batch, self.on_device)

    def lower(self, state, batch):
        shapes = {k: jax.ShapeDtypeStruct((), jnp.float32, sharding=self.sharding) for k in self.inputs}
        return self.jitted.lower(state, batch, shapes)


# Jitted programs by what they are compiled from (program_key), so a second train() of the same program in one
# process re-traces nothing. A few entries: each holds its compiled executables.
_PROGRAMS: dict = {}
_PROGRAMS_KEPT = 8
# The schedule's numbers: runtime inputs of the step, so not part of what a program is compiled from.
SCHEDULE_KEYS = ("peak_lr", "final_lr_ratio", "warmup_steps", "decay_fraction")


def program_key(config, mesh) -> tuple:
    """Everything _compile_program reads: the model config, the optimizer's form (not its schedule's numbers),
    batch, microbatches, z-loss and the mesh (its devices)."""
    optim = {k: v for k, v in config.optim.to_dict().items() if k not in SCHEDULE_KEYS}
    t = config.train
    return (json.dumps(config.model.to_dict(), sort_keys=True), json.dumps(optim, sort_keys=True),
            int(t.global_batch), int(t.microbatches), float(t.z_loss), mesh)


def make_train_step(config, mesh, reuse: bool = False) -> TrainProgram:
    """The program for (config, mesh), with this run's schedule inputs bound to its step.

    reuse=True (the trainer) hands back the jitted functions an earlier call of the same program_key built in
    this process, so they are not traced again. Off by default: other callers may trace under module flags
    that change the program and that the key does not see (the FLOPs probes' loss.UNROLL_FOR_COST_ANALYSIS)."""
    key = program_key(config, mesh)
    program = (_PROGRAMS.pop(key, None) if reuse else None) or _compile_program(config, mesh)
    if reuse:
        _PROGRAMS[key] = program  # most recently used last
        while len(_PROGRAMS) > _PROGRAMS_KEPT:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
    inputs = schedule_inputs(config.optim, config.train.total_steps)
    return dataclasses.replace(program, step_fn=BoundStep(program.step_fn, inputs, NamedSharding(mesh, P())),
                               schedule=schedule_fn(config.optim.schedule, inputs))


def _compile_program(config, mesh) -> TrainProgram:
    """The jitted functions of one program (step_fn unbound: (state, batch, schedule_args))."""
    a = arch_of(config)
    model = make_model(config.model, a, mesh.devices.flat[0].platform)
    optim = config.optim.copy_and_resolve_references()  # this program's, whatever the caller changes later
    kind = optim.schedule
    tx_layout = make_optimizer(optim, schedule_fn(kind, schedule_inputs(optim, 1)))  # init reads only its layout
    z_coef = float(config.train.z_loss)
    B, L = config.train.global_batch, a.seq_len

    def boxed_state(rng):
        ids = jnp.zeros((1, L), jnp.int32)
        params = model.init(rng, ids, ids, ids)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx_layout.init(params)}

    abstract_state, state_shardings = _sharded_state_shapes(boxed_state, mesh)

    def init(rng):
        return nn.meta.unbox(boxed_state(rng))

    def in_mesh_context():
        return jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(sharding.RULES)

    microbatches = int(config.train.microbatches)
    microbatch_sharding = NamedSharding(mesh, P(None, sharding.BATCH_AXES))

    def train_step(state, batch, schedule_args):
        schedule = schedule_fn(kind, schedule_args)
        tx = make_optimizer(optim, schedule)
        mesh_ctx, rules_ctx = in_mesh_context()
        with mesh_ctx, rules_ctx:
            weights = token_weights(batch["segment_ids"])
            n_tokens = jnp.maximum(weights.sum(), 1.0)  # real tokens of the whole global batch

            def objective(params, part):
                ce_sum, z_sum = model.apply({"params": params}, part["inputs"], part["segment_ids"],
                                            part["positions"], part["targets"], part["weights"])
                ce, z = ce_sum / n_tokens, z_coef * z_sum / n_tokens
                return ce + z, (ce, z)

            grad_fn = jax.value_and_grad(objective, has_aux=True)
            params = state["params"]
            grads, ce, z = _accumulated_grads(grad_fn, params, dict(batch, weights=weights), microbatches,
                                              microbatch_sharding, state_shardings["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], params)
            params = optax.apply_updates(params, updates)
        metrics = {"loss": ce, "z_loss": z, "grad_norm": optax.tree.norm(grads), "lr": schedule(state["step"])}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    def logits(params, inputs, segment_ids, positions):
        mesh_ctx, rules_ctx = in_mesh_context()
        with mesh_ctx, rules_ctx:
            return model.apply({"params": params}, inputs, segment_ids, positions)[..., : a.vocab_size]

    return _jitted_program(train_step, init, logits, abstract_state, state_shardings, mesh)


def _jitted_program(train_step, init, logits, abstract_state, state_shardings, mesh) -> TrainProgram:
    """The three traced functions jitted with their shardings: batches split by rows over the data axes,
    metrics and logits replicated, and the step donating its input state (the old state's buffers hold the new
    one, so a step needs one copy of the state, not two)."""
    row_sharding = sharding.batch_sharding(mesh)
    batch_shardings = {k: row_sharding for k in ("inputs", "targets", "segment_ids", "positions")}
    replicated = NamedSharding(mesh, P())
    param_shardings = state_shardings["params"]
    return TrainProgram(
        step_fn=jax.jit(train_step, in_shardings=(state_shardings, batch_shardings, replicated),
                        out_shardings=(state_shardings, replicated), donate_argnums=0),
        init_fn=jax.jit(init, out_shardings=state_shardings),
        logits_fn=jax.jit(logits, in_shardings=(param_shardings, row_sharding, row_sharding, row_sharding),
                          out_shardings=replicated),
        abstract_state=abstract_state, state_shardings=state_shardings, batch_shardings=batch_shardings,
        mesh=mesh, schedule=None,
    )


def _sharded_state_shapes(boxed_state, mesh) -> tuple:
    """(abstract state with shardings, state shardings): eval_shape -> logical PartitionSpecs -> NamedShardings,
    so nothing is allocated to learn where each array lives (optimizer moments inherit their param's names)."""
    abstract_boxed = jax.eval_shape(boxed_state, jax.random.key(0))
    state_shardings = sharding.logical_shardings(nn.get_partition_spec(abstract_boxed), mesh)
    abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                  nn.meta.unbox(abstract_boxed), state_shardings)
    return abstract_state, state_shardings


def _accumulated_grads(grad_fn, params, batch, microbatches: int, microbatch_sharding, param_shardings) -> tuple:
    """(grads, ce, z) of the whole batch. With microbatches > 1, a scan sums each microbatch's (token sums / the
    global token count), which is exactly one big batch's gradient at a k-th of its activation memory."""
    if microbatches == 1:
        (_, (ce, z)), grads = grad_fn(params, batch)
        return grads, ce, z

    def accumulate(carry, part):
        (_, (ce, z)), g = grad_fn(params, part)
        return jax.tree.map(jnp.add, carry, (g, ce, z)), None

    zeros = jax.lax.with_sharding_constraint(jax.tree.map(jnp.zeros_like, params), param_shardings)
    (grads, ce, z), _ = jax.lax.scan(accumulate, (zeros, jnp.zeros(()), jnp.zeros(())),
                                     _split_microbatches(batch, microbatches, microbatch_sharding))
    return grads, ce, z


def _split_microbatches(batch, microbatches: int, microbatch_sharding):
    """[B, ...] -> [k, B/k, ...]: microbatch j takes rows j, j + k, ..., so every device keeps its own rows
    (a contiguous block of B/dp rows) and contributes B/(dp k) of them to each microbatch."""
    def split(x):
        x = x.reshape(x.shape[0] // microbatches, microbatches, *x.shape[1:]).swapaxes(0, 1)
        return jax.lax.with_sharding_constraint(x, microbatch_sharding)
    return jax.tree.map(split, batch)


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
