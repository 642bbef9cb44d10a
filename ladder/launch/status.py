"""Read a launched ladder back from its run directories (local or gs://): `ladder status`.

Only the files the trainer pins are read (status.json), plus launch.json that the launchers write
(attempts, the cloud resource, where the logs are), so status works the same whichever backend ran the
rungs (ladder.rundir reads them). No JAX here. `ladder collect` is ladder.rundir.collect over the
finished rungs (collect below).
"""

from __future__ import annotations

import dataclasses
import math
import time

from ladder import formats, rundir, storage
from ladder.errors import LadderError

STALE_S = 15 * 60  # a "running" status.json not updated for this long is flagged: the run may be dead


@dataclasses.dataclass
class RungStatus:
    name: str
    state: str  # pending | running | done | failed | preempted (stopped by SIGTERM after a save; relaunch resumes)
    step: int
    total_steps: int
    loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    tokens: int  # tokens seen
    flops_spent: float  # tokens seen x the plan's FLOPs per token (the plan's own accounting)
    flops_planned: float
    age_s: float | None  # seconds since status.json was updated
    attempts: int = 0  # launcher attempts (local: trainer runs; cloud: resources created for it)
    logs: str = ""  # where its logs are
    note: str = ""


STATES = ("pending", "running", "done", "failed", "preempted")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# status.json / launch.json field -> what a value the trainer or launcher writes looks like. A file edited by
# hand (or by another tool) made `ladder status` a ValueError/TypeError traceback: a bad field is left out now,
# the rung shown from the rest, with a note naming the file and the field.
_STATUS_FIELDS = {
    "state": lambda v: v in STATES, "step": lambda v: _finite(v) and v == int(v) and v >= 0,
    "total_steps": lambda v: _finite(v) and v == int(v) and v > 0, "loss": lambda v: v is None or _finite(v),
    "tokens_per_s": lambda v: v is None or (_finite(v) and v >= 0), "eta_s": lambda v: v is None or (_finite(v) and v >= 0),
    "updated": _finite, "tokens": lambda v: v is None or (_finite(v) and v == int(v) and v >= 0),
    "error": lambda v: isinstance(v, str), "signal": lambda v: v is None or isinstance(v, str),
}
_LAUNCH_FIELDS = {
    "attempts": lambda v: v is None or (_finite(v) and v == int(v) and v >= 0), "state": lambda v: isinstance(v, str),
    "exit_codes": lambda v: v is None or isinstance(v, list), "logs": lambda v: v is None or isinstance(v, str),
}


def _checked(record: dict, fields: dict, file: str, notes: list[str]) -> dict:
    bad = [k for k, ok in fields.items() if k in record and not ok(record[k])]
    if bad:
        notes.append(f"{file}: ignored {', '.join(f'{k}={record[k]!r}'[:80] for k in bad)} (not what ladder writes; "
                     "the next update rewrites it)")
    return {k: v for k, v in record.items() if k not in bad}


def rung_status(rung: dict, run_dir: str, now: float | None = None) -> RungStatus:
    notes: list[str] = []
    status = _checked(rundir.read_status(run_dir), _STATUS_FIELDS, rundir.STATUS, notes)
    launch = _checked(rundir.read_launch_record(run_dir), _LAUNCH_FIELDS, rundir.LAUNCH, notes)
    now = time.time() if now is None else now
    state = status.get("state", "pending")
    note = status.get("error", "") if state == "failed" else ""
    if state == "preempted":
        redo = "; its evaluation is redone first" if status.get("eval_pending") is not None else ""
        note = (f"stopped by {status.get('signal') or 'SIGTERM'} after saving step {status.get('step')}; relaunch to "
                f"resume{redo}")
    if state != "done" and launch.get("state") == "failed":
        codes = f", exit codes {launch['exit_codes']}" if launch.get("exit_codes") else ""
        state, note = "failed", f"launcher gave up after {launch.get('attempts')} attempt(s){codes}"
    age = now - status["updated"] if "updated" in status else None
    trainer = _trainer_holds(run_dir) if state == "running" else None
    if trainer is False:
        note = ("its trainer has ended without recording it (killed: SIGKILL, out of memory, a lost machine); "
                "relaunch to resume from the last verified checkpoint")
    elif state == "running" and trainer is None and age is not None and age > STALE_S:  # a held lock: alive
        note = f"no update for {formats.format_duration(age)}: stopped or preempted? relaunch to resume"
    tokens = int(status.get("tokens") or 0)
    return RungStatus(
        name=rung["name"], state=state, step=int(status.get("step") or 0),
        total_steps=int(status.get("total_steps") or rung["total_steps"]),
        loss=status.get("loss"), tokens_per_s=status.get("tokens_per_s"),
        eta_s=0.0 if state == "done" else status.get("eta_s"),
        tokens=tokens, flops_spent=tokens * float(rung["flops_per_token"]), flops_planned=float(rung["flops"]),
        age_s=age, attempts=int(launch.get("attempts") or 0), logs=launch.get("logs") or log_location(run_dir),
        note="; ".join(n for n in [note, *notes] if n),
    )


def _trainer_holds(run_dir: str) -> bool | None:
    """Whether a process holds the lock a local run's trainer took (the kernel is asked: runlock.live_holder);
    None where that cannot be known (gs:// run directories have no lock; no lock file yet), which keeps the
    STALE_S rule. A trainer that stops records it (done, failed, preempted), so "running" with a free lock is
    one killed without a handler running: said at once instead of after STALE_S. And "running" with a held
    lock is alive, however old status.json looks: a step or an evaluation longer than STALE_S, or the system
    clock set forward, made `ladder status` say "stopped or preempted? relaunch" of a live trainer."""
    from ladder import runlock

    if storage.is_remote(run_dir) or not (storage.path(run_dir) / runlock.LOCK_NAME).is_file():
        return None
    return runlock.live_holder(run_dir) is not None


def log_location(run_dir: str) -> str:
    """Cloud workers copy their logs to <run dir>/logs/; the local backend writes <run dir>/launch*.log."""
    return storage.join(run_dir, "logs" if storage.is_remote(run_dir) else "launch.log")


def log_tail(run_dir: str, lines: int = 40) -> str:
    """The last `lines` lines of every log of a rung (each worker's, or each local process's), headed by its
    path; a line saying where none were found otherwise."""
    root = storage.path(run_dir)
    paths = sorted((root / "logs").glob("*.log")) if (root / "logs").exists() else []
    paths += sorted(root.glob("launch*.log")) if root.exists() else []
    if not paths:
        return f"no logs yet under {run_dir} (cloud workers copy theirs to logs/ every minute and at exit)"
    out = []
    for path in paths:  # a log holds whatever the processes printed: bytes that are not UTF-8 are shown as such
        text = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        out.append(f"==> {path} (last {min(lines, len(text))} of {len(text)} lines) <==")
        out += text[-lines:]
    return "\n".join(out)


def run_dir_rung(run_dir: str) -> dict:
    """A `ladder train` run directory (`ladder status runs/tiny`) read as a one-rung plan: its name is the
    directory's, its steps and FLOPs per token come from status.json (else config.json), so rung_status and
    format_status show it as they show a launched rung. No status.json and no config.json: not a run."""
    status, config = rundir.read_status(run_dir), rundir.read_run_config(run_dir, "plan")
    if not status and config is None:
        raise LadderError(f"plan: {run_dir} is a directory without status.json or config.json; pass the plan file "
                          "a ladder was launched from, or a run directory `ladder train` wrote")
    train, model = (config or {}).get("train", {}), (config or {}).get("model", {})
    total = next((v for v in (status.get("total_steps"), train.get("total_steps")) if _finite(v) and v > 0), 1)
    per_token = status.get("flops_per_token") if _finite(status.get("flops_per_token")) else 0.0
    step_tokens = train.get("global_batch", 0) * model.get("seq_len", 0) if config else 0
    step_tokens = step_tokens if _finite(step_tokens) else 0
    return {"name": storage.path(run_dir).name, "total_steps": int(total), "flops_per_token": per_token,
            "flops": per_token * step_tokens * total}


def ladder_status(plan: dict, run_root: str) -> list[RungStatus]:
    return [rung_status(r, storage.join(run_root, r["name"])) for r in plan["rungs"]]


def format_status(rows: list[RungStatus]) -> str:
    """One line per rung, then the ladder's totals against its plan."""
    header = (f"{'rung':<16} {'state':<9} {'step':>15} {'tokens':>9} {'loss':>8} {'tokens/s':>10} {'ETA':>9} "
              f"{'updated':>9} {'tries':>5}  logs")
    lines = [header]
    for r in rows:
        pct = 100.0 * r.step / r.total_steps if r.total_steps else 0.0
        lines.append(
            f"{r.name:<16} {r.state:<9} {f'{r.step}/{r.total_steps}':>10} {pct:3.0f}% {fmt_count(r.tokens):>9} "
            f"{fmt_num(r.loss, '.4f'):>8} {fmt_num(r.tokens_per_s, ',.0f'):>10} {formats.format_duration(r.eta_s):>9} "
            f"{formats.format_duration(r.age_s) + ' ago' if r.age_s is not None else '-':>9} {r.attempts or '-':>5}  {r.logs}"
            + (f"  {r.note}" if r.note else ""))
    counts = {s: sum(r.state == s for r in rows) for s in ("done", "running", "failed", "pending")}
    if any(r.state == "preempted" for r in rows):
        counts["preempted"] = sum(r.state == "preempted" for r in rows)
    spent = sum(r.flops_spent for r in rows)
    planned = sum(r.flops_planned for r in rows)
    lines.append(
        f"ladder: {', '.join(f'{n} {s}' for s, n in counts.items())}; compute {spent:.3g} of {planned:.3g} "
        f"FLOPs ({100.0 * spent / planned if planned else 0.0:.1f}% of the plan)")
    return "\n".join(lines)


def fmt_count(n: int) -> str:
    """1234567 -> '1.23M' (tokens seen)."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def fmt_num(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def collect(plan: dict, run_root: str, out: str, *, overwrite: bool = False, partial: bool = False
            ) -> tuple[int, list[str], list[str]]:
    """rundir.collect over the finished rungs (status.json state done), unless `partial`.

    A rung still training has rows at its early evaluation steps only; mixed into a fit they look like a
    finished small run. Returns (rows written, finished rungs without results, unfinished rungs skipped)."""
    skipped = [] if partial else [r["name"] for r in plan["rungs"]
                                  if rundir.read_status(storage.join(run_root, r["name"])).get("state") != "done"]
    finished = dict(plan, rungs=[r for r in plan["rungs"] if r["name"] not in skipped])
    if not finished["rungs"]:
        raise LadderError(f"{run_root}: no rung has finished yet ({len(skipped)} unfinished, skipped; --partial "
                          "takes their rows); see `ladder status` for progress")
    for rung in finished["rungs"]:
        _check_rung_n(rung, run_root)
    n, missing = rundir.collect(finished, run_root, out, overwrite=overwrite)
    return n, missing, skipped


def _check_rung_n(rung: dict, run_root: str) -> None:
    """A rung's rows must carry the plan's parameter count: an `n` that disagrees (a results.csv from another
    plan, or a plan edited after training) put a point at the wrong size into every fit. Reads the rung's
    results once more than rundir.collect does (small files; keeps the check out of rundir)."""
    file = f"{storage.join(run_root, rung['name'])}/results.csv"
    for row in rundir.read_results(storage.join(run_root, rung["name"])):
        try:
            got = float(row.get("n"))
        except (TypeError, ValueError):
            continue  # not a number: the table's validation names it
        if "n" in rung and abs(got - float(rung["n"])) > 1e-9 * abs(float(rung["n"])):
            raise LadderError(f"{file}: rung {rung['name']} has n = {row.get('n')} but the plan says "
                              f"n = {rung['n']}; collect with the plan the rung was trained from, or re-run "
                              f"the rung's evaluation under this plan")

