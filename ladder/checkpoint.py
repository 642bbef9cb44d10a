"""Checkpoints of the train state through orbax: async saves, keep the latest N plus the plan's steps.

The state is {"step", "params", "opt_state"}; "step" (updates done) is also the data position, because batch
k is a pure function of (seed, k). Every process must call save() for the same steps (orbax writes each
process's shards and synchronises); restore() places arrays directly onto the target shardings, so a run can
resume on another mesh shape. The directory may be local or gs:// (orbax writes through etils.epath).

Integrity (docs/training.md, "Checkpoint integrity"): orbax commits a step by renaming its temporary
directory, but nothing checks the bytes afterwards, so a flipped bit restores silently into a wrong run.
After orbax has finalized a save (never before: an async save is still writing), process 0 writes
`<step>/ladder-checksums.json`: the size and sha256 of every file of the step (sizes only on gs://, where
reading a checkpoint back costs as much as writing it, and the store checks its own CRC32C). A step
"verifies" when its manifest exists and every file matches; only such a step is a resume point or is ever
called the last good checkpoint. `recover()` walks the steps newest first and moves each one that fails
aside into `<checkpoints>.corrupt/` (never deleted: the bytes may be wanted), reporting step and file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from ladder import storage
from ladder.errors import LadderError

MANIFEST = "ladder-checksums.json"
MANIFEST_VERSION = 1


class _OrbaxErrorsReRaised(logging.Filter):
    """orbax logs a traceback for a failed background write from each of its threads (and asyncio logs the
    futures those threads leave behind), then re-raises the error to the caller, which ladder.train turns
    into one line naming the path; drop the logged copies so a full disk is one message, not dozens of
    tracebacks. Records without a traceback, and tracebacks that do not pass through orbax, still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not record.exc_info[1]:
            return True
        error = record.exc_info[1]
        if "orbax" in record.pathname or str(error) == "Event loop is closed":
            return False
        tb = error.__traceback__
        while tb is not None:
            if "/orbax/" in tb.tb_frame.f_code.co_filename:
                return False
            tb = tb.tb_next
        return True


_FILTER = _OrbaxErrorsReRaised()


def _closed_loop(error) -> bool:
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def quiet_closed_event_loops() -> None:
    """Drop "Event loop is closed" from threads and finalizers (idempotent). When a save fails (a full disk)
    the run stops while orbax's writer threads still hold coroutines and transports of an asyncio loop that
    is going away; they raise this as an uncaught thread exception (threading.excepthook) or from __del__
    (sys.unraisablehook), a traceback per object that says nothing the one-line storage error has not said.
    Any other exception still goes to the previous hooks."""
    import sys
    import threading

    if getattr(threading.excepthook, "_ladder_quiet", False):
        return
    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook

    def thread_excepthook(args):
        if not _closed_loop(args.exc_value):
            thread_hook(args)

    def unraisablehook(args):
        if not _closed_loop(args.exc_value):
            unraisable_hook(args)

    thread_excepthook._ladder_quiet = unraisablehook._ladder_quiet = True
    threading.excepthook, sys.unraisablehook = thread_excepthook, unraisablehook


class CorruptCheckpoint(LadderError):
    """A checkpoint step whose files do not match its manifest (or that has none)."""


def _step_dirs(directory) -> list[int]:
    """Integer-named step directories (orbax's temporary `<step>.orbax-checkpoint-tmp-*` dirs are not steps)."""
    directory = epath.Path(_absolute(directory))
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def _files(step_dir: epath.Path) -> list[str]:
    """Every file under a step directory as a relative path, sorted, the manifest excluded."""
    out = []
    for root, _, names in os.walk(step_dir) if not storage.is_remote(step_dir) else _remote_walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _remote_walk(step_dir: epath.Path):
    stack = [step_dir]
    while stack:
        d = stack.pop()
        children = list(d.iterdir())
        stack.extend(c for c in children if c.is_dir())
        yield str(d), [], [c.name for c in children if not c.is_dir()]


def _sha256(path: epath.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe(step_dir: epath.Path, rel: str) -> dict:
    path = step_dir / rel
    if storage.is_remote(step_dir):
        return {"bytes": path.stat().length}
    return {"bytes": os.path.getsize(path), "sha256": _sha256(path)}


def write_manifest(step_dir) -> None:
    """Checksums of a finalized step, written atomically (tmp + rename; one whole object on gs://)."""
    step_dir = epath.Path(_absolute(step_dir))
    manifest = {"version": MANIFEST_VERSION, "written": time.time(),
                "files": {rel: _describe(step_dir, rel) for rel in _files(step_dir)}}
    storage.write_text(step_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def verify_step(step_dir) -> str | None:
    """None when the step matches its manifest, else the first problem as '<file>: <what is wrong>'."""
    step_dir = epath.Path(_absolute(step_dir))
    if not step_dir.is_dir():
        return f"{step_dir}: not a directory"
    try:
        files = json.loads((step_dir / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"{MANIFEST}: missing (the save never completed, or the step was written without checksums)"
    except (OSError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, RecursionError) as e:
        return f"{MANIFEST}: unreadable ({type(e).__name__})"
    # What ladder wrote: a non-empty {file: {"bytes": int, "sha256"?: str}}; anything else is damage, and an
    # emptied manifest must not vouch for a step (it would verify trivially).
    if not (isinstance(files, dict) and files and all(isinstance(w, dict) and isinstance(w.get("bytes"), int)
                                                      for w in files.values())):
        return f"{MANIFEST}: damaged (not the per-file sizes and checksums ladder writes)"
    try:
        present = _files(step_dir)
        extra = sorted(set(present) - set(files))
        if extra:
            return f"{extra[0]}: not in the manifest (a file was added after the save)"
        for rel, want in sorted(files.items()):
            if rel not in present:
                return f"{rel}: missing"
            got = _describe(step_dir, rel)
            if got["bytes"] != want["bytes"]:
                return f"{rel}: {got['bytes']} bytes, {want['bytes']} when saved (truncated or overwritten)"
            if "sha256" in got and "sha256" in want and got["sha256"] != want["sha256"]:
                return f"{rel}: sha256 differs from the one recorded at save time (the bytes changed)"
    except OSError as e:  # a shard that cannot be read (permissions, a directory where a file was): not good
        where = os.path.relpath(e.filename, step_dir) if e.filename else "a file"
        return f"{where}: cannot be read ({e.strerror or e})"
    return None


def set_aside(directory, step: int) -> epath.Path:
    """Move a bad step out of orbax's sight into `<checkpoints>.corrupt/<step>-<unix time>`; returns the target."""
    directory = epath.Path(_absolute(directory))
    quarantine = directory.parent / (directory.name + ".corrupt")
    target = quarantine / f"{step}-{int(time.time())}"
    try:
        quarantine.mkdir(parents=True, exist_ok=True)
        (directory / str(step)).rename(target)
    except OSError as e:  # e.g. <checkpoints>.corrupt is a file, or the run dir went read-only
        raise LadderError(f"checkpoint step {step} failed verification, and it cannot be moved aside to {target} "
                          f"({e.strerror or e}); make {quarantine} a writable directory, or move "
                          f"{directory / str(step)} away yourself") from None
    return target


def recover(directory, print_fn=None) -> int | None:
    """The newest step that verifies (None: there is none). Every newer step is reported (step and file) and
    set aside, so orbax resumes from the verified one and later saves of those step numbers do not collide.
    Call it on process 0 only, before a Checkpoints is opened on `directory`."""
    print_fn = print_fn or (lambda line: print(line, file=sys.stderr))
    steps = list(reversed(_step_dirs(directory)))
    for step in steps:
        problem = verify_step(epath.Path(_absolute(directory)) / str(step))
        if problem is None:
            return step
        target = set_aside(directory, step)
        print_fn(f"ladder: checkpoint step {step} failed verification ({problem}); moved it to {target} "
                 "and falling back to the previous step")
    if steps:  # say it in one line: the run is not resuming, it starts over beside the kept bytes
        print_fn(f"ladder: none of the {len(steps)} checkpoint steps verified (all moved to {target.parent}, "
                 "nothing deleted); training starts again from step 0")
    return None


def verified_steps(directory) -> list[int]:
    """Steps that verify, oldest first (reads every file of every step: for choosing a base, not per step)."""
    directory = epath.Path(_absolute(directory))
    return [s for s in _step_dirs(directory) if verify_step(directory / str(s)) is None]


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


def check_step_in_run(directory, step: int, total_steps: int) -> None:
    """A step directory past the run's train.total_steps is not one this run saved (copied in from a longer
    run): a resume from it ran no step and marked the run done with loss None, and `ladder eval` wrote rows
    at that step. One line before anything is restored."""
    if step > total_steps:
        raise LadderError(f"checkpoint {epath.Path(_absolute(directory)) / str(step)} is past train.total_steps="
                          f"{total_steps} of this run's config, so this run did not save it (copied in from a longer "
                          "run?); move it out of the run directory, or use the config that wrote it")


def check_restored_step(directory, step: int, state) -> None:
    """The train state's own step counter must be the directory's name: a step directory renamed or copied
    under another number would resume (or be evaluated, its tokens D computed) at the wrong step."""
    import jax

    held = int(jax.device_get(state["step"]))
    if held != step:
        raise LadderError(f"checkpoint {epath.Path(_absolute(directory)) / str(step)} holds the train state of step "
                          f"{held}, not {step} (renamed or copied in by hand); rename it back to {held}, or move "
                          "it out")


def _absolute(directory) -> str:
    return str(directory) if "://" in str(directory) else os.path.abspath(directory)


class Checkpoints:
    """Saves with a checksum manifest sealed after orbax finalizes each step; restores verify first."""

    def __init__(self, directory, keep: int, permanent_steps=(), async_save: bool = True):
        import jax

        self.directory = epath.Path(_absolute(directory))
        self.lead = jax.process_index() == 0
        self.pending: list[int] = []  # saved steps whose manifest is not written yet
        self.last_verified: int | None = None  # newest step whose manifest this process wrote or checked
        for name in ("absl", "asyncio", "concurrent.futures"):
            logging.getLogger(name).addFilter(_FILTER)  # idempotent: a logger holds a filter once
        quiet_closed_event_loops()
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
        """Start saving (returns once the arrays are copied off the devices; writing goes on in the background).
        orbax waits for the previous save before starting this one, so sealing it here costs no extra wait."""
        self.wait()
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.pending.append(step)

    def restore(self, step: int, abstract_state, verify: bool = True):
        """`abstract_state`: ShapeDtypeStructs carrying the target shardings. The step is verified first
        (CorruptCheckpoint naming step and file otherwise) unless this process already verified it."""
        if verify and step != self.last_verified:
            problem = verify_step(self.directory / str(step))
            if problem:
                good = [s for s in self.manager.all_steps() if s != step and not verify_step(self.directory / str(s))]
                fix = (f"restore a step that verifies: {', '.join(map(str, sorted(good)))}" if good else
                       "no other step here verifies: retrain, or copy a good step back from a backup")
                raise CorruptCheckpoint(f"checkpoint {self.directory / str(step)}: {problem}; {fix}")
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except ValueError as e:  # orbax: "Requested shape ... is not compatible with the stored shape ..."
            if "shape" not in str(e):
                raise
            raise LadderError(f"checkpoint {self.directory / str(step)} holds arrays of another shape than this "
                              f"config's model ({str(e).split('. ')[0]}): it is another model's checkpoint; use a "
                              "new --run-dir, or the config that wrote it") from None

    def poll(self) -> None:
        """Once per step: raise a failed background save's error now (not at the next save, minutes later), and
        seal a save that has finished, so the window between orbax's commit and the manifest stays short."""
        if not self.pending:
            return
        self.manager.check_for_errors()
        if not self.manager.is_saving_in_progress():
            self.wait()

    def wait(self) -> None:
        """Block until every started save is finalized, then seal each with its checksum manifest."""
        self.manager.wait_until_finished()
        for step in self.pending:
            step_dir = self.directory / str(step)
            if self.lead and step_dir.exists():  # a preservation policy may already have deleted it
                write_manifest(step_dir)
            self.last_verified = step
        self.pending = []

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()
