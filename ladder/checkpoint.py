"""Checkpoints of the train state through orbax: async saves, keep the latest N plus the plan's steps.

The state is {"step", "params", "opt_state"}; "step" (updates done) is also the data position, because batch
k is a pure function of (seed, k). Every process must call save() for the same steps (orbax writes each
process's shards and synchronises); restore() places arrays directly onto the target shardings, so a run can
resume on another mesh shape.
"""

from __future__ import annotations

from pathlib import Path

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class Checkpoints:
    def __init__(self, directory: Path, keep: int, permanent_steps=(), async_save: bool = True):
        keep_policy = policies.AnyPreservationPolicy([
            policies.LatestN(n=max(keep, 1)),  # the newest `keep` saves (resume points)
            policies.CustomSteps(list(permanent_steps)),  # the plan's checkpoint_steps are never deleted
        ])
        options = ocp.CheckpointManagerOptions(preservation_policy=keep_policy, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options,
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
