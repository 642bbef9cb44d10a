"""Checkpoints of the train state through orbax: async saves, keep the latest N plus the plan's steps.

The state is {"step", "params", "opt_state"}; "step" (updates done) is also the data position, because batch
k is a pure function of (seed, k). Every process must call save() for the same steps (orbax writes each
process's shards and synchronises); restore() places arrays directly onto the target shardings, so a run can
resume on another mesh shape. The directory may be local or gs:// (orbax writes through etils.epath).
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies


def saved_steps(directory) -> list[int]:
    """Steps with a finished checkpoint under `directory` (local or gs://), read-only; [] when it is absent."""
    directory = _absolute(directory)
    if not epath.Path(directory).exists():
        return []
    options = ocp.CheckpointManagerOptions(create=False, read_only=True)
    with ocp.CheckpointManager(epath.Path(directory), options=options) as manager:
        return sorted(manager.all_steps())


def restore_params(directory, step: int, abstract_params):
    """Only the parameters of a saved train state, onto `abstract_params`' shardings (continual pretraining
    from another run: the optimizer state is not read, a partial restore of orbax's single "default" item)."""
    options = ocp.CheckpointManagerOptions(create=False, read_only=True)
    item = {"params": abstract_params}
    with ocp.CheckpointManager(epath.Path(_absolute(directory)), options=options,
                               item_handlers=ocp.PyTreeCheckpointHandler()) as manager:
        args = ocp.args.PyTreeRestore(item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                                      partial_restore=True)
        return manager.restore(step, args=args)["params"]


def _absolute(directory) -> str:
    return str(directory) if "://" in str(directory) else os.path.abspath(directory)


class Checkpoints:
    def __init__(self, directory, keep: int, permanent_steps=(), async_save: bool = True):
        keep_policy = policies.AnyPreservationPolicy([
            policies.LatestN(n=max(keep, 1)),  # the newest `keep` saves (resume points)
            policies.CustomSteps(list(permanent_steps)),  # the plan's checkpoint_steps are never deleted
        ])
        options = ocp.CheckpointManagerOptions(preservation_policy=keep_policy, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(epath.Path(_absolute(directory)), options=options,
                                             item_handlers=ocp.StandardCheckpointHandler())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        """Start saving (returns once the arrays are copied off the devices; writing goes on in the background)."""
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, step: int, abstract_state):
        """`abstract_state`: ShapeDtypeStructs carrying the target shardings."""
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
