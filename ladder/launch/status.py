"""Read a launched ladder back from its run directories (local or gs://): `ladder status` and `collect`.

Only the files the trainer pins are read (status.json, results.csv), plus launch.json that the local
launcher writes, so status works the same whichever backend ran the rungs. No JAX here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from pathlib import Path

from ladder import results
from ladder.errors import LadderError
from ladder.launch import jobs as jobs_lib

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
    status = jobs_lib.read_json(jobs_lib.join(run_dir, "status.json")) or {}
    launch = {} if run_dir.startswith("gs://") else (jobs_lib.read_json(jobs_lib.join(run_dir, "launch.json")) or {})
    now = time.time() if now is None else now
    state = status.get("state", "pending")
    note = status.get("error", "") if state == "failed" else ""
    if state == "preempted":
        note = f"stopped by SIGTERM after saving step {status.get('step')}; relaunch to resume"
    if state != "done" and launch.get("state") == "failed":
        state, note = "failed", f"launcher gave up after {launch.get('attempts')} attempt(s), exit codes {launch.get('exit_codes')}"
    age = now - status["updated"] if "updated" in status else None
    if state == "running" and age is not None and age > STALE_S:
        note = f"no update for {fmt_duration(age)}: stopped or preempted? relaunch to resume"
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
    return [rung_status(r, jobs_lib.join(run_root, r["name"])) for r in plan["rungs"]]


def format_status(rows: list[RungStatus]) -> str:
    """One line per rung, then the ladder's totals against its plan."""
    header = f"{'rung':<16} {'state':<9} {'step':>15} {'loss':>8} {'tokens/s':>10} {'ETA':>9} {'updated':>9}"
    lines = [header]
    for r in rows:
        pct = 100.0 * r.step / r.total_steps if r.total_steps else 0.0
        lines.append(
            f"{r.name:<16} {r.state:<9} {f'{r.step}/{r.total_steps}':>10} {pct:3.0f}% "
            f"{fmt_num(r.loss, '.4f'):>8} {fmt_num(r.tokens_per_s, ',.0f'):>10} {fmt_duration(r.eta_s):>9} "
            f"{fmt_duration(r.age_s) + ' ago' if r.age_s is not None else '-':>9}"
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


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def read_results(run_dir: str) -> list[dict]:
    """The rows of <run dir>/results.csv (local or gs://); [] when the rung has none yet."""
    from etils import epath

    path = epath.Path(jobs_lib.join(run_dir, "results.csv"))
    try:
        if not path.exists():
            return []
        text = path.read_text()
    except ImportError as e:
        raise LadderError(f"{path}: reading gs:// needs gcsfs ({e}); run `pip install gcsfs`") from e
    return list(csv.DictReader(io.StringIO(text)))


def collect(plan: dict, run_root: str, out: str, *, overwrite: bool = False) -> tuple[int, list[str]]:
    """Gather every rung's evaluation rows into one results table at `out`.

    Rows missing the plan-level columns get them from the plan: size, multiple, and flops (tokens seen
    `d` x the plan's FLOPs per token). Returns (rows written, rungs without results). An existing `out`
    is never overwritten unless asked.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise LadderError(f"-o {out}: file exists; pass --overwrite to replace it, or choose another name")
    rows, missing = [], []
    for rung in plan["rungs"]:
        got = read_results(jobs_lib.join(run_root, rung["name"]))
        if not got:
            missing.append(rung["name"])
        for row in got:
            row = {k: v for k, v in row.items() if k is not None}
            row.setdefault("size", rung["size"])
            row.setdefault("multiple", rung["multiple"])
            if "flops" not in row and row.get("d") not in (None, ""):
                row["flops"] = float(row["d"]) * float(rung["flops_per_token"])
            rows.append(row)
    if not rows:
        raise LadderError(f"{run_root}: no rung has evaluation results (results.csv) yet; "
                          f"see `ladder status` for progress")
    if target.exists():
        target.unlink()
    results.append_rows(target, rows)
    return len(rows), missing
