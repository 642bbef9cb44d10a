"""`ladder launch PLAN --backend tpu-vm|queued-resources --rehearse [--preempt-at STEP]`: a Cloud TPU launch
played on this machine before it costs anything (docs/cloud-tpu.md, step 0).

The launch is the real one (same jobs, same worker scripts, same lifecycle) with three things swapped:
gcloud is launch.standin.FakeCloud (every call recorded; hosts are local processes), gs:// is a local Cloud
Storage emulator over .ladder-rehearsal/<plan>/bucket, and JAX runs on CPU devices, one process per host.
Afterwards it checks what a real launch must get right:
- every rung finished (status.json done) with its results in the bucket;
- the gcloud calls that change something equal the dry run's commands (probes aside), plus one delete and
  create (and, for TPU VMs, scp and ssh) per drilled preemption;
- teardown: every resource the launch created was deleted (unless --keep);
- with --preempt-at: one host of each slice is killed once its rung logs STEP; the launcher must notice,
  recreate and resume, and the final parameters must be bitwise equal to an uninterrupted rehearsal's
  (run first, under <run root>-reference).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import threading
import time
from pathlib import Path

from ladder import storage
from ladder.errors import LadderError, sigterm_raises_terminated
from ladder.launch import LaunchOptions, emulator, get_backend, jobs as jobs_lib, launch_plan, standin

BACKENDS = ("tpu-vm", "queued-resources")
STEP_LINE = re.compile(r"^step (\d+)/", re.M)


@dataclasses.dataclass
class Outcome:
    rc: int
    calls: list[list[str]]  # every gcloud call the launcher made
    expected: list[list[str]]  # the dry run's commands
    created: list[str]
    deleted: list[str]
    left: list[str]  # resources still standing at the end
    drilled: list[str]  # resources preempted by the drill


def rehearsal_dir(opts: LaunchOptions) -> Path:
    return Path(".ladder-rehearsal") / Path(opts.plan_path).stem


def prepare(opts: LaunchOptions) -> LaunchOptions:
    """The rehearsal's options: a gs:// run root in the emulator, a package name for the scripts, its own
    script directory, and a short poll interval (a rehearsal rung takes seconds, not days)."""
    if opts.backend not in BACKENDS:
        raise LadderError(f"--rehearse: rehearses {' and '.join(BACKENDS)} launches (got --backend {opts.backend}); "
                          "xpk runs a container image on GKE, which this machine cannot stand in for")
    root = rehearsal_dir(opts)
    return dataclasses.replace(
        opts, run_root=opts.run_root or f"gs://rehearsal/{Path(opts.plan_path).stem}", package=opts.package or "ladder",
        work_dir=str(root / "scripts"), poll_s=min(opts.poll_s, 0.5), compile_check=False)


def mutating(argv: list[str]) -> bool:
    """Calls that change something (probes: describe, ls)."""
    return not ({"describe", "ls"} & set(argv[:6]))


def dry_run_commands(opts: LaunchOptions) -> list[list[str]]:
    """The commands the dry run prints, parsed back (heredoc bodies skipped, `probe || cmd` -> cmd)."""
    lines: list[str] = []
    launch_plan(dataclasses.replace(opts, dry_run=True), print_fn=lines.append)
    out, in_heredoc = [], False
    for line in "\n".join(lines).splitlines():
        if in_heredoc:
            in_heredoc = line != "EOF"
            continue
        if line.startswith("cat > ") and line.endswith("<<'EOF'"):
            in_heredoc = True
            continue
        if line.startswith("gcloud "):
            out.append(shlex.split(line.split(" || ")[-1]))
    return out


def run_once(opts: LaunchOptions, storage_env: dict, *, preempt_at: int | None, print_fn=print) -> Outcome:
    """One rehearsed launch; `storage_env` points the hosts at the serving emulator."""
    root = rehearsal_dir(opts)
    expected = dry_run_commands(opts)
    # No persistent JAX compilation cache: multi-process CPU programs loaded from it failed their first
    # collective (gloo context timeouts in 2 of 2 rehearsals run after a reference had filled the cache).
    cloud = standin.FakeCloud(root, opts.package, dict(storage_env, OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[2])))  # the checkout this launcher runs from
    drilled: list[str] = []
    stop = threading.Event()
    drill = threading.Thread(target=_drill, args=(cloud, preempt_at, drilled, stop, print_fn), daemon=True)
    if preempt_at is not None:
        drill.start()
    try:
        rc = launch_plan(dataclasses.replace(opts, dry_run=False), print_fn=print_fn, runner=cloud)
    finally:
        stop.set()
        left = list(cloud.resources) if not opts.keep else []
        cloud.shut_down_all()
    return Outcome(rc, cloud.calls, expected, cloud.created, cloud.deleted, left, drilled)


def _drill(cloud, step: int, drilled: list[str], stop: threading.Event, print_fn) -> None:
    """Preempt each resource once, when host 0's log shows its rung reached `step`."""
    while not stop.wait(0.2):
        for name, res in list(cloud.resources.items()):
            if name in drilled or res.state not in ("READY", "ACTIVE"):
                continue
            log = res.hosts[0] / f"{res.hosts[0].name}.log"
            steps = [int(s) for s in STEP_LINE.findall(log.read_text())] if log.exists() else []
            if steps and max(steps) >= step:
                print_fn(f"# drill: preempting {name} at step {max(steps)} (SIGKILL to host {len(res.hosts) - 1})")
                cloud.preempt(name)
                drilled.append(name)


def check(outcome: Outcome, opts: LaunchOptions, backend_name: str) -> list[str]:
    """What went wrong, as lines (empty: the rehearsal passed)."""
    problems = []
    if outcome.rc != 0:
        problems.append(f"the launch exited {outcome.rc}")
    got = [c for c in outcome.calls if mutating(c)]
    want = [c for c in outcome.expected if mutating(c)]
    per_drill = 4 if backend_name == "tpu-vm" else 2
    extra = len(got) - len(want)
    if sorted(map(tuple, got)) != sorted(map(tuple, want)) and extra != per_drill * len(outcome.drilled):
        problems.append(f"gcloud calls differ from the dry run's: {len(got)} made, {len(want)} printed")
    elif outcome.drilled:
        leftover = list(map(tuple, got))
        for c in want:
            if tuple(c) in leftover:
                leftover.remove(tuple(c))
        if len(leftover) != per_drill * len(outcome.drilled) or any(
                c[4] not in ("delete", "create", "scp", "ssh") for c in leftover):
            problems.append(f"the drill's extra calls are not delete + create: {leftover}")
    if outcome.left:
        problems.append(f"teardown: still standing: {', '.join(outcome.left)}")
    if not opts.keep and sorted(set(outcome.created)) != sorted(set(outcome.deleted)):
        problems.append(f"teardown: created {outcome.created}, deleted {outcome.deleted}")
    return problems


def final_params(run_dir: str):
    """(step, the parameters of a rung's last checkpoint as numpy arrays), restored onto this process's
    first device whatever mesh saved them (for the bitwise comparison)."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp
    from etils import epath

    ckpts = epath.Path(run_dir) / "checkpoints"
    step = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    path = ckpts / str(step) / "default"
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        meta = ckptr.metadata(path)
        tree = getattr(meta, "item_metadata", meta)
        tree = getattr(tree, "tree", tree)
        restored = ckptr.restore(path, jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
                                                    tree))
    return step, [np.asarray(x) for x in jax.tree.leaves(restored["params"])]


def bitwise_equal(a: str, b: str) -> bool:
    import numpy as np

    (sa, pa), (sb, pb) = final_params(a), final_params(b)
    return sa == sb and len(pa) == len(pb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(pa, pb))


def rehearse(opts: LaunchOptions, *, preempt_at: int | None = None, print_fn=print) -> int:
    """The CLI's `--rehearse`: serve the bucket, rehearse (an uninterrupted reference first when drilling),
    check, collect, and say how to read the bucket again. Exit 0 when every check passed. SIGTERM (`timeout`)
    stops the hosts as Ctrl-C does, and the verb ends with the SIGTERM line and 143 (errors.Terminated)."""
    with sigterm_raises_terminated():
        return _rehearse(opts, preempt_at, print_fn)


def _rehearse(opts: LaunchOptions, preempt_at: int | None, print_fn) -> int:
    opts = prepare(opts)
    root = rehearsal_dir(opts)
    for sub in ("hosts", "bucket", "scripts"):  # a rehearsal starts from an empty bucket and fresh hosts
        shutil.rmtree(root / sub, ignore_errors=True)
    backend = get_backend(opts.backend)
    plan = jobs_lib.load(opts.plan_path)
    problems: list[str] = []
    t0 = time.time()
    with emulator.serving(root / "bucket", [emulator.bucket_of(opts.run_root)]) as env:
        reference = None
        if preempt_at is not None:
            reference = dataclasses.replace(opts, run_root=opts.run_root.rstrip("/") + "-reference")
            print_fn(f"# rehearsal: the uninterrupted reference under {reference.run_root}")
            ref = run_once(reference, env, preempt_at=None, print_fn=print_fn)
            problems += [f"reference: {p}" for p in check(ref, reference, backend.name)]
            print_fn(f"# rehearsal: the drill under {opts.run_root}, preempting at step {preempt_at}")
        outcome = run_once(opts, env, preempt_at=preempt_at, print_fn=print_fn)
        problems += check(outcome, opts, backend.name)
        if preempt_at is not None and not outcome.drilled:
            problems.append(f"--preempt-at {preempt_at}: no rung reached step {preempt_at}; nothing was preempted")
        if reference is not None and outcome.rc == 0:
            problems += _compare_with_reference(plan, reference, opts, print_fn)
        if outcome.rc == 0:
            problems += _collect_results(plan, opts, root / "results.csv", print_fn)
    return _say_outcome(outcome, problems, opts, root, t0, print_fn)


def _compare_with_reference(plan: dict, reference: LaunchOptions, opts: LaunchOptions, print_fn) -> list[str]:
    """The drill's point: every rung's final parameters, resumed after the preemption, bitwise equal to the
    uninterrupted reference's (a resume that saw other data or another RNG state would differ)."""
    problems = []
    for rung in plan["rungs"]:
        a, b = (storage.join(o.run_root, rung["name"]) for o in (reference, opts))
        same = bitwise_equal(a, b)
        print_fn(f"# drill: {rung['name']}: final parameters {'bitwise equal to' if same else 'DIFFER from'} "
                 "the uninterrupted reference")
        if not same:
            problems.append(f"{rung['name']}: resumed parameters differ from the reference")
    return problems


def _collect_results(plan: dict, opts: LaunchOptions, table: Path, print_fn) -> list[str]:
    """`ladder collect` from the emulated bucket: the results a real launch would leave are readable."""
    from ladder.launch.status import collect

    try:
        n, _, _ = collect(plan, opts.run_root, str(table), overwrite=True)
        print_fn(f"# rehearsal: collected {n} result rows from {opts.run_root} into {table}")
    except LadderError as e:
        return [f"collect: {e}"]
    return []


def _say_outcome(outcome: Outcome, problems: list[str], opts: LaunchOptions, root: Path, t0: float,
                 print_fn) -> int:
    """Write the gcloud calls for reading afterwards, then one line per problem (exit 1) or the pass line and
    how to read the bucket again (exit 0)."""
    calls = outcome.calls
    storage.write_text(root / "gcloud-calls.jsonl", "".join(json.dumps(c) + "\n" for c in calls))
    summary = (f"{len(calls)} gcloud calls ({sum(map(mutating, calls))} changing something) in "
               f"{root / 'gcloud-calls.jsonl'}; created {len(outcome.created)}, deleted {len(outcome.deleted)}; "
               f"{time.time() - t0:.0f} s")
    if problems:
        for p in problems:
            print_fn(f"# rehearsal FAILED: {p}")
        print_fn(f"# {summary}; hosts' logs under {root / 'hosts'}")
        return 1
    print_fn(f"# rehearsal passed: every rung done, calls = the dry run's"
             + (f" + the drill's recreation of {', '.join(outcome.drilled)}" if outcome.drilled else "")
             + (", teardown complete" if not opts.keep else "") + f"; {summary}")
    print_fn(f"# read the bucket again: python -m ladder.launch.emulator --data-dir {root / 'bucket'} -- "
             f"ladder collect {opts.plan_path} --run-root {opts.run_root} -o results.csv")
    return 0
