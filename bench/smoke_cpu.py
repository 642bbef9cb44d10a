"""Where the README's main job spends its CPU-seconds, and what it would take on 2 quiet cores (docs/run.md, "Time").

Runs `ladder run CONFIG -o OUT` (default configs/smoke.py) and samples /proc once a second for every process under
it: each trainer's user + system CPU-s, split by the times in its metrics.jsonl into start-up (interpreter,
imports, data, tasks, tracing, compiling or loading the compiled step from the shared cache, and its first 10
steps), evaluations (the CPU across each evaluation less the steps it spans) and training steps. The machine
here is shared, so wall time says little; CPU-seconds hold under load (a single-threaded trainer burns about the
same CPU-s whether it waits for a core or not). The quiet projection replays the launcher's start order
(`ladder.launch.local.start_order`) on `launch.parallel` slots with each rung taking its measured CPU-s (one XLA
thread per trainer: one core), plus the `ladder run` process's own CPU-s (plan, collect, predict, report):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/smoke_cpu.py --out runs/smoke-cpu [--config configs/smoke.py]
    .venv/bin/python bench/smoke_cpu.py --out runs/smoke-cpu --report-only   # re-read a finished measurement

Totals from /proc miss processes shorter than a sample; the job's own `/usr/bin/time` is the authority for the
whole (docs/run.md gives both).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_pid() -> dict[int, tuple[int, float, str]]:
    """{pid: (parent pid, user + system CPU-s, command line)} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            cmd = Path(f"/proc/{name}/cmdline").read_text().replace("\0", " ")[:400]
        except OSError:
            continue
        out[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, cmd)
    return out


def sample(root: subprocess.Popen, path: Path, every_s: float = 1.0) -> None:
    """One JSON line per `every_s` until `root` exits: {t, load, p: {pid: [CPU-s, cmd]}} of its process tree."""
    with open(path, "w") as f:
        while root.poll() is None:
            procs, tree = cpu_by_pid(), {root.pid}
            for pid, (ppid, _, _) in sorted(procs.items()):  # children have larger pids, mostly; loop to be sure
                if ppid in tree:
                    tree.add(pid)
            grown = True
            while grown:
                before = len(tree)
                tree |= {pid for pid, (ppid, _, _) in procs.items() if ppid in tree}
                grown = len(tree) > before
            rows = {pid: [procs[pid][1], procs[pid][2]] for pid in tree if pid in procs}
            f.write(json.dumps({"t": time.time(), "load": os.getloadavg()[0], "p": rows}) + "\n")
            f.flush()
            time.sleep(every_s)


def trainer_series(samples: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """{rung: [(time, CPU-s so far)]} for each `ladder train` process (a retried rung: its last process)."""
    series = {}
    for s in samples:
        for pid, (cpu, cmd) in s["p"].items():
            m = re.search(r"ladder train .*--rung (\S+)", cmd)
            if m:
                series.setdefault((m.group(1), pid), []).append((s["t"], cpu))
    return {rung: points for (rung, _), points in sorted(series.items(), key=lambda kv: kv[1][0][0])}


def cpu_at(points: list[tuple[float, float]], t: float) -> float:
    times = [p[0] for p in points]
    i = bisect.bisect_left(times, t)
    if i <= 0 or i >= len(points):
        return points[min(max(i, 0), len(points) - 1)][1]
    (t0, c0), (t1, c1) = points[i - 1], points[i]
    return c0 + (c1 - c0) * (t - t0) / (t1 - t0)


def phases(rung_dir: Path, points) -> dict:
    """One trainer's CPU-s: total, start-up (to its first logged step), evaluations, steps; ms per step."""
    rows = [json.loads(line) for line in open(rung_dir / "metrics.jsonl")]
    rows = [r for r in rows if "grad_norm" in r and "time" in r]
    t = json.loads((rung_dir / "config.json").read_text())["train"]
    evals = set(t["eval_steps"]) | {t["total_steps"]}
    spans = [(a, b, any(a["step"] <= e < b["step"] for e in evals)) for a, b in zip(rows, rows[1:])]
    per_step = [(cpu_at(points, b["time"]) - cpu_at(points, a["time"])) / (b["step"] - a["step"])
                for a, b, has_eval in spans if not has_eval]
    step_s = sorted(per_step)[len(per_step) // 2] if per_step else 0.0
    total, start = points[-1][1], cpu_at(points, rows[0]["time"])
    in_evals = sum(cpu_at(points, b["time"]) - cpu_at(points, a["time"]) - step_s * (b["step"] - a["step"])
                   for a, b, has_eval in spans if has_eval) + total - cpu_at(points, rows[-1]["time"])
    return {"total": total, "start": start, "evals": in_evals, "n_evals": len(evals),
            "steps": total - start - in_evals, "ms_per_step": step_s * 1e3}


def project(out: Path, cpu: dict[str, float], parallel: int) -> list[float]:
    """Each slot's busy seconds when the launcher's start order runs rungs of `cpu` CPU-s on `parallel` cores;
    the rungs of the ladder's plan and, when the train stage carries it, the self-check's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ladder.launch.jobs import Job
    from ladder.launch.local import start_order

    rungs = [r for name in ("plan.json", "self_check_plan.json") if (out / name).exists()
             for r in json.loads((out / name).read_text())["rungs"] if r["name"] in cpu]
    slots = [0.0] * parallel
    for job in start_order([Job(r, r["name"]) for r in rungs], parallel):
        slots[slots.index(min(slots))] += cpu[job.name]
    return slots


def report(out: Path, samples_path: Path, parallel: int) -> None:
    samples = [json.loads(line) for line in open(samples_path)]
    series = trainer_series(samples)
    table = {rung: phases(out / "rungs" / rung, points) for rung, points in series.items()}
    print(f"{'rung':<18}{'CPU-s':>8}{'start':>8}{'evals':>8}{'n':>3}{'/eval':>7}{'steps':>8}{'ms/step':>8}")
    for rung, p in sorted(table.items(), key=lambda kv: -kv[1]["total"]):
        print(f"{rung:<18}{p['total']:8.1f}{p['start']:8.1f}{p['evals']:8.1f}{p['n_evals']:3d}"
              f"{p['evals'] / p['n_evals']:7.2f}{p['steps']:8.1f}{p['ms_per_step']:8.0f}")
    sums = {k: sum(p[k] for p in table.values()) for k in ("total", "start", "evals", "steps")}
    final = {}  # every process's CPU-s at its last sample
    for s in samples:
        final.update(s["p"])
    # plan, collect, predict (and its fit workers), report; a process exiting shows an empty command line
    driver = sum(cpu for cpu, cmd in final.values() if cmd.strip() and "ladder train" not in cmd)
    loads = sorted(s["load"] for s in samples)
    print(f"trainers: {sums['total']:.0f} CPU-s = start-up {sums['start']:.0f} + evaluations {sums['evals']:.0f} "
          f"+ steps {sums['steps']:.0f}; the rest (`ladder run` and its fit workers) {driver:.0f} CPU-s; load median "
          f"{loads[len(loads) // 2]:.1f}")
    stages = json.loads((out / "stages.json").read_text())
    check_alone = "self_check" in stages and stages["self_check"]["seconds"] > 30
    slots = project(out, {r: p["total"] for r, p in table.items() if not (check_alone and r.startswith("check-"))},
                    parallel)
    print(f"quiet projection: {max(slots) + driver:.0f} s (slots busy {', '.join(f'{s:.0f}' for s in slots)} s "
          f"+ the driver's {driver:.0f})" + ("; the self-check trained alone after them: add its wall time"
                                             if check_alone else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--config", default="configs/smoke.py")
    p.add_argument("--parallel", type=int, default=2, help="the config's launch.parallel")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args()
    samples = a.out.with_suffix(".samples.jsonl")
    if not a.report_only:
        import resource

        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        job = subprocess.Popen([sys.executable, "-m", "ladder", "run", a.config, "-o", str(a.out)])
        sample(job, samples)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process of the job, reaped
        print(f"ladder run: exit {job.returncode}, {time.time() - start:.0f} s wall, "
              f"{r.ru_utime - before.ru_utime:.0f} user + {r.ru_stime - before.ru_stime:.0f} system CPU-s")
    report(a.out, samples, a.parallel)


if __name__ == "__main__":
    main()
