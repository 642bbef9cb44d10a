"""Read a launched ladder back from its run directories (local or gs://): `ladder status`.

Only the files the trainer pins are read (status.json), plus launch.json that the local launcher writes,
so status works the same whichever backend ran the rungs (ladder.rundir reads them). No JAX here.
`ladder collect` is ladder.rundir.collect.
"""

from __future__ import annotations

import dataclasses
import math
import time

from ladder import rundir

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
    note: str = ""


def rung_status(rung: dict, run_dir: str, now: float | None = None) -> RungStatus:
    status = rundir.read_status(run_dir)
    launch = {} if rundir.is_remote(run_dir) else rundir.read_launch_record(run_dir)
    now = time.time() if now is None else now
    state = status.get("state", "pending")
    note = status.get("error", "") if state == "failed" else ""
    if state == "preempted":
        note = f"stopped by SIGTERM after saving step {status.get('step')}; relaunch to resume"
    if state != "done" and launch.get("state") == "failed":
        state, note = "failed", f"launcher gave up after {launch.get('attempts')} attempt(s), exit codes {launch.get('exit_codes')}"
    age = now - status["updated"] if "updated" in status else None
    if state == "running" and age is not None and age > STALE_S:
        note = f"no update for {rundir.format_duration(age)}: stopped or preempted? relaunch to resume"
    tokens = int(status.get("tokens") or 0)
    return RungStatus(
        name=rung["name"], state=state, step=int(status.get("step") or 0),
        total_steps=int(status.get("total_steps") or rung["total_steps"]),
        loss=status.get("loss"), tokens_per_s=status.get("tokens_per_s"),
        eta_s=0.0 if state == "done" else status.get("eta_s"),
        tokens=tokens, flops_spent=tokens * float(rung["flops_per_token"]), flops_planned=float(rung["flops"]),
        age_s=age, note=note,
    )


def ladder_status(plan: dict, run_root: str) -> list[RungStatus]:
    return [rung_status(r, rundir.join(run_root, r["name"])) for r in plan["rungs"]]


def format_status(rows: list[RungStatus]) -> str:
    """One line per rung, then the ladder's totals against its plan."""
    header = f"{'rung':<16} {'state':<9} {'step':>15} {'loss':>8} {'tokens/s':>10} {'ETA':>9} {'updated':>9}"
    lines = [header]
    for r in rows:
        pct = 100.0 * r.step / r.total_steps if r.total_steps else 0.0
        lines.append(
            f"{r.name:<16} {r.state:<9} {f'{r.step}/{r.total_steps}':>10} {pct:3.0f}% "
            f"{fmt_num(r.loss, '.4f'):>8} {fmt_num(r.tokens_per_s, ',.0f'):>10} {rundir.format_duration(r.eta_s):>9} "
            f"{rundir.format_duration(r.age_s) + ' ago' if r.age_s is not None else '-':>9}"
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


def fmt_num(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)
