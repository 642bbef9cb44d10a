"""A run's start from another run's checkpoint (continual pretraining, `config.init`): which checkpoint, checked
before anything is written, and the step-0 state built from it. docs/training.md ("Continual pretraining")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ladder import checkpoint
from ladder import rundir, storage
from ladder.checkpoint import Checkpoints
from ladder.errors import LadderError, require
from ladder.step import TrainProgram
from ladder.train_config import check_base_architecture


def resolve_init(config) -> dict | None:
    """The base checkpoint `config.init` names, checked before anything is written (LadderError otherwise):
    {from_run, step, tokens (the base's tokens seen at that step), base_run (its name), restore_optimizer}."""
    i = config.init
    if not i.from_run:
        return None
    base_dir = storage.path(i.from_run)
    base_cfg = rundir.read_run_config(base_dir, "init.from_run")
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
    ckpts = storage.path(init["from_run"]) / "checkpoints"
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
