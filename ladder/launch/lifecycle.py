"""Watch a cloud launch until its rungs are done: recreate what was preempted, delete what has finished.

`ladder launch` with a cloud backend stays and polls every `poll_s` seconds (one state query per resource,
one status.json read per rung):
- a resource whose rungs are all done (or failed) is deleted, unless --keep;
- a resource found in one of the backend's dead states (PREEMPTED, SUSPENDED, FAILED, ...) or gone is
  deleted and created again; its workers rerun the script and the trainer resumes from the last checkpoint;
- a resource found alive when the launch starts is watched, not restarted (a relaunch re-attaches).
Each rung's <run dir>/launch.json records the resource, the attempts and where its logs are, for
`ladder status`. Ctrl-C stops the watching only: resources keep running; the same command re-attaches.
"""

from __future__ import annotations

import time

from ladder import rundir, storage
from ladder.launch import commands

TERMINAL = ("done", "failed")


def rung_state(run_dir: str) -> str:
    """done / failed / running / pending, from the trainer's status.json and the workers' exit markers
    (<run dir>/logs/<worker>.exit, written when a worker gave up on the rung after its retries)."""
    state = rundir.read_status(run_dir).get("state", "pending")
    if state in TERMINAL:
        return state
    logs = storage.path(storage.join(run_dir, "logs"))
    if logs.exists():
        for marker in logs.glob("*.exit"):
            if marker.read_text().strip() not in ("", "0"):
                return "failed"
    return state


def clear_exit_markers(run_dir: str) -> None:
    logs = storage.path(storage.join(run_dir, "logs"))
    if logs.exists():
        for marker in logs.glob("*.exit"):
            marker.unlink()


def record(backend, group, opts, run_dir: str, **fields) -> None:
    """<run dir>/launch.json: what the launcher did for this rung (read by `ladder status`)."""
    if not storage.is_remote(run_dir):
        storage.path(run_dir).mkdir(parents=True, exist_ok=True)
    old = rundir.read_launch_record(run_dir)
    old.update(backend=opts.backend, resource=group.name, slices=group.slices, logs=storage.join(run_dir, "logs"),
               **fields)
    rundir.write_launch_record(run_dir, **old)


def watch(backend, groups, opts, print_fn=print, sleep=time.sleep) -> int:
    """Create (or re-attach to) every group's resource and watch until all rungs are done or failed.
    Returns 0 when every rung is done, 1 otherwise."""
    w = _Watch(backend, groups, opts, print_fn)
    try:
        for group in w.active:
            w.start(group, backend.state(group.name, opts))
        while w.active:
            sleep(opts.poll_s)
            for group in list(w.active):
                w.poll(group)
    except KeyboardInterrupt:
        print_fn("# stopped watching; the resources keep running. Run the same `ladder launch` to watch again "
                 "(it re-attaches), or delete them: " + "; ".join(" ".join(backend.delete_argv(g.name, opts))
                                                                  for g in w.active))
        raise
    if w.failed:
        print_fn(f"# failed: {', '.join(w.failed)}; see `ladder status {opts.plan_path} --run-root {opts.run_root} "
                 f"--logs RUNG`")
        return 1
    print_fn(f"# {sum(len(g.jobs) for g in groups)} rung(s) done"
             + ("" if opts.keep else "; every resource this launch created is deleted"))
    return 0


class _Watch:
    """One launch being watched: the groups still active, each group's create attempts, the rungs that failed."""

    def __init__(self, backend, groups, opts, print_fn):
        self.backend, self.opts, self.print_fn = backend, opts, print_fn
        self.active = list(groups)
        self.attempts = {g.name: 0 for g in groups}
        self.failed: list[str] = []

    def _run(self, steps) -> None:
        commands.run_steps(steps, dry_run=False, print_fn=self.print_fn, runner=self.backend.runner)

    def start(self, group, state) -> None:
        """Create the group's resource, first deleting it if it is in a dead state; one alive is only watched."""
        backend, opts = self.backend, self.opts
        if state is not None and state not in backend.dead_states:
            self.print_fn(f"# {group.name} exists ({state}): watching it, not restarting its workers")
            return
        if state is not None:
            self.print_fn(f"# {group.name} is {state}: delete it and create it again; its rungs resume from their "
                          "last checkpoint")
            self._run([commands.Step(backend.delete_argv(group.name, opts))])
        self.attempts[group.name] += 1
        for job in group.jobs:
            clear_exit_markers(job.run_dir)
            prior = rundir.read_launch_record(job.run_dir).get("attempts", 0)
            record(backend, group, opts, job.run_dir, attempts=prior + 1, state="launched")
        self._run(backend.create_steps(group, opts))

    def poll(self, group) -> None:
        """One look at an active group: settled when its rungs are all done or failed; recreated when its
        resource died or went, up to opts.max_recreates attempts."""
        states = {j.name: rung_state(j.run_dir) for j in group.jobs}
        if all(s in TERMINAL for s in states.values()):
            self._settle(group, states)
            return
        state = self.backend.state(group.name, self.opts)
        if state is None or state in self.backend.dead_states:
            if self.attempts[group.name] >= self.opts.max_recreates:
                self._give_up(group, states, state)
                return
            self.start(group, state)

    def _settle(self, group, states: dict) -> None:
        self.active.remove(group)
        for job in group.jobs:
            record(self.backend, group, self.opts, job.run_dir, state=states[job.name])
        self.failed += [n for n, s in states.items() if s == "failed"]
        self.print_fn(f"# {group.name}: " + ", ".join(f"{n} {s}" for n, s in states.items()))
        if not self.opts.keep:
            self._run([self.backend.delete_step(group, self.opts)])

    def _give_up(self, group, states: dict, state) -> None:
        self.print_fn(f"# {group.name} is {state or 'gone'} after {self.attempts[group.name]} attempts: "
                      "giving up on " + ", ".join(states))
        self.active.remove(group)
        self.failed += list(states)
        for job in group.jobs:
            record(self.backend, group, self.opts, job.run_dir, state="failed")
        if state is not None and not self.opts.keep:
            self._run([self.backend.delete_step(group, self.opts)])
