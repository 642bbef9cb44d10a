"""One task's fitting data: which runs to fit, and each run's step-1 point and step-2 points from the table.

Kept apart from the fits (taskfit.py): the predictor, its back-tests and its noise and direction checks all
read the table through here (one row index per table, built by one sort, serves them all). The recipe (the
last 5 evaluations; skip the first 10% of tokens, smooth over 5 checkpoints) is Bhagia et al. 2024's;
docs/laws.md ("Data each method sees") and docs/results.md ("Large tables").
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import numpy as np

from ladder.errors import require

# The paper's fit set on the published OLMo ladder: 4 sizes x 4 Chinchilla multiples.
PAPER_RUNS = tuple(f"{s}-{c}xC" for s in ("190M", "370M", "760M", "1B") for c in (1, 2, 5, 10))
# The default fit set where the table holds the paper's 16: the runs at the paper's budgets of EVERY size
# (the 3B runs too; not the 0.5xC runs or the 1xC reruns). Back-tests (bench/backtest_runs.py, docs/laws.md
# "Which runs the default fits"): leaving out the size nearest the target raised the error 1.6-2.7x in 5 of
# 5 designs, while adding the 0.5xC runs or the reruns did not help accuracy in most designs.
PAPER_BUDGET_RUN = re.compile(r"[^-]+-(1|2|5|10)xC")
# Chance accuracy for the paper's tasks when the table has no `chance` column.
KNOWN_CHANCE = {"mmlu": 0.25, "hellaswag": 0.25, "arc_challenge": 0.25, "arc_easy": 0.25, "piqa": 0.5,
                "csqa": 0.2, "socialiqa": 1 / 3, "openbookqa": 0.25}
FINAL_WINDOW = 5       # step-1 point: mean of the last 5 evaluations of each run
SKIP_FRACTION = 0.10   # step 2: drop checkpoints in the first 10% of each run's tokens ...
SMOOTH_WINDOW = 5      # ... and smooth the rest with a moving average over 5 checkpoints


@dataclass
class TaskData:
    """One task's fitting data over a set of runs (arrays aligned with `runs`)."""

    task: str
    runs: np.ndarray            # [R] run names
    n: np.ndarray               # [R] parameters
    d: np.ndarray               # [R] final tokens
    feature: np.ndarray         # [R] mean of the last 5 values of the intermediate feature (NaN: none)
    acc: np.ndarray             # [R] mean of the last 5 accuracies
    point_feature: np.ndarray   # [M] step-2 points (skipped + smoothed), anchor (0, 1) excluded
    point_acc: np.ndarray       # [M]
    point_run: np.ndarray       # [M] index into runs
    chance: float | None
    fpt: np.ndarray | None = None  # [R] training FLOPs per token (`flops` / d); None when the table has none

    def subset(self, keep: np.ndarray) -> "TaskData":
        """The same task's data over the runs where `keep` [R] is true (a back-test split's fit set); equal
        to task_data on those runs (each run's points are its own)."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        points = keep[self.point_run]
        return TaskData(self.task, self.runs[keep], self.n[keep], self.d[keep], self.feature[keep], self.acc[keep],
                        self.point_feature[points], self.point_acc[points], new_index[self.point_run[points]],
                        self.chance, None if self.fpt is None else self.fpt[keep])

    def flops_per_token(self, N) -> np.ndarray:
        """FLOPs/token at N: 6N + k N^g, (k, g) fitted in log-log to the runs' excess over 6N (attention and
        the LM head grow slower than N); 6N when the table has no `flops`. docs/laws.md, "compute"."""
        N = np.asarray(N, dtype=np.float64)
        if self.fpt is None:
            return 6 * N
        sizes, idx = np.unique(self.n, return_index=True)
        excess = self.fpt[idx] - 6 * sizes
        if len(sizes) < 2 or (excess <= 0).any():
            return N * float(np.mean(self.fpt / self.n))
        g, logk = np.polyfit(np.log(sizes), np.log(excess), 1)
        return 6 * N + np.exp(logk) * N ** g


def select_runs(cols: dict, runs=None, field: str = "--runs") -> list[str]:
    """Run names to fit: names or fnmatch patterns ("paper" = the paper's 16); default: where the table holds
    the paper's 16 (the published OLMo ladder), its runs at the paper's budgets 1xC-10xC of every size
    (PAPER_BUDGET_RUN: the 16 and the 3B runs), else every run in the table."""
    present = list(dict.fromkeys(cols["run"].tolist()))
    if runs is None:
        if set(PAPER_RUNS) <= set(present):
            return [r for r in present if PAPER_BUDGET_RUN.fullmatch(r)]
        return present
    if isinstance(runs, str):
        runs = [r for r in runs.split(",") if r]
    chosen = []
    for pat in runs:
        names = list(PAPER_RUNS) if pat == "paper" else [r for r in present if fnmatch.fnmatchcase(r, pat)]
        require(bool(names) and set(names) <= set(present), field, f"{pat!r} matches no run in the table",
                f"choose from {', '.join(present[:8])}{'...' if len(present) > 8 else ''}")
        chosen += [n for n in names if n not in chosen]
    return chosen


_INDEX: dict = {}  # the last table's _RowIndex; tables are read-only once read (same arrays, same rows)


@dataclass
class _RowIndex:
    """A table's rows sorted by (task, run, step): each (task, run) pair is one contiguous group."""

    order: np.ndarray       # row indices, grouped and step-sorted (stable: ties keep table order)
    runs: np.ndarray        # sorted unique run names
    tasks: np.ndarray       # sorted unique task names
    keys: np.ndarray        # [G] task code * len(runs) + run code of each group, ascending
    starts: np.ndarray      # [G + 1] group boundaries in `order`


def _run_index(cols: dict) -> _RowIndex:
    """The (task, run) groups of a table, built once per table by one sort (back-tests and bootstraps read
    the same table hundreds of times; a mask per run was O(runs x rows): 62,500 runs x 10^6 rows)."""
    key = (cols["run"], cols["task"], cols["step"])  # held, so the identity test cannot meet a reused id
    if "key" not in _INDEX or not all(a is b for a, b in zip(_INDEX["key"], key)):
        _INDEX.clear()
        runs, run_code = np.unique(cols["run"], return_inverse=True)
        tasks, task_code = np.unique(cols["task"], return_inverse=True)
        order = np.lexsort((cols["step"], run_code, task_code))
        group = task_code[order].astype(np.int64) * len(runs) + run_code[order]
        cut = np.flatnonzero(group[1:] != group[:-1]) + 1
        starts = np.concatenate([[0], cut, [len(order)]])
        _INDEX.update(key=key, index=_RowIndex(order, runs, tasks, group[starts[:-1]], starts))
    return _INDEX["index"]


def present(cols: dict, task: str, runs: list[str]) -> list[str]:
    """The runs (in order) that have rows for `task`."""
    if not len(runs) or task not in _run_index(cols).tasks:
        return []
    return [r for r, ok in zip(runs, _lookup(cols, task, runs)[1]) if ok]


def _lookup(cols: dict, task: str, runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(group of each run for `task`, whether it has one)."""
    index = _run_index(cols)
    names = np.asarray(runs, dtype=str) if len(runs) else np.zeros(0, dtype=str)
    t = np.searchsorted(index.tasks, task)
    require(t < len(index.tasks) and index.tasks[t] == task, "--tasks", f"task {task!r} is not in the table",
            f"choose from {index.tasks.tolist()}")
    r = np.minimum(np.searchsorted(index.runs, names), len(index.runs) - 1)
    g = np.searchsorted(index.keys, t * len(index.runs) + r)
    g = np.minimum(g, len(index.keys) - 1)
    return g, (index.runs[r] == names) & (index.keys[g] == t * len(index.runs) + r)


def groups(cols: dict, task: str, runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, starts): the rows of each run (in `runs` order) for `task`, step-sorted and concatenated, and
    where each run's rows begin ([R + 1]). A LadderError names the first run without rows for the task."""
    require(len(runs) > 0, f"task {task}", "no runs to read", "choose at least one run (--runs)")
    index = _run_index(cols)
    g, found = _lookup(cols, task, runs)
    if not found.all():
        run = runs[int(np.argmin(found))]
        require(False, f"run {run}", f"has no rows for task {task!r}", "evaluate it or leave the run out (--runs)")
    lo, hi = index.starts[g], index.starts[g + 1]
    sizes = hi - lo
    starts = np.concatenate([[0], np.cumsum(sizes)])
    within = np.arange(starts[-1]) - np.repeat(starts[:-1], sizes)
    return index.order[np.repeat(lo, sizes) + within], starts


def _tail_mean(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Per group, the mean of its last `window` values (all of them when it has fewer)."""
    sizes = np.diff(starts)
    from_end = np.repeat(starts[1:], sizes) - 1 - np.arange(starts[-1])
    tail = from_end < window
    total = np.add.reduceat(np.where(tail, values, 0.0), starts[:-1])
    return total / np.minimum(sizes, window)


def task_constants(cols: dict, task: str) -> tuple[bool, float | None]:
    """(whether every row of `task` has `flops`, the task's chance level or None), over all the table's rows
    of the task; kept with the table's row index (task_data asks per method, split and task: on 10^6 rows
    each answer was two string comparisons over every row)."""
    _run_index(cols)
    memo = _INDEX.setdefault("task_constants", {})
    held = (cols.get("flops"), cols.get("chance"))  # the columns it reads: a table sharing run/task/step
    if task not in memo or not all(a is b for a, b in zip(memo[task][1], held)):  # arrays but not these
        sel_task = cols["task"] == task
        has_flops = "flops" in cols and bool(np.isfinite(cols["flops"][sel_task]).all())
        chance = None
        if "chance" in cols and np.isfinite(cols["chance"][sel_task]).any():
            chance = float(np.nanmean(cols["chance"][sel_task]))
        elif task in KNOWN_CHANCE:
            chance = KNOWN_CHANCE[task]
        memo[task] = ((has_flops, chance), held)
    return memo[task][0]


def task_data(cols: dict, task: str, runs: list[str], feature: str = "loss") -> TaskData:
    """Step-1 points (one per run) and step-2 points (all intermediate checkpoints) of one task.

    feature "" (accuracy-only methods) keeps NaN features and no step-2 points. Vectorised over runs: one
    gather of the runs' rows, per-run reductions with np.add.reduceat (62,500 runs in well under a second)."""
    require(not feature or feature in cols, "results table",
            f"has no column {feature!r} (needed for the intermediate feature)",
            "add it (e.g. a held-out LM loss), or use a method that needs none (single-step)")
    rows, starts = groups(cols, task, runs)
    first, last = starts[:-1], starts[1:] - 1
    rd, ra = cols["d"][rows], cols["acc"][rows]
    rf = cols[feature][rows] if feature else np.full(len(rows), np.nan)
    if feature and not np.isfinite(rf).all():
        run = runs[int(np.searchsorted(starts, np.argmin(np.isfinite(rf)), side="right")) - 1]
        require(False, f"run {run}", f"column {feature!r} is blank or NaN for task {task!r}",
                "fill it or choose a method that does not use it")
    rn = cols["n"][rows]
    several = np.flatnonzero(np.minimum.reduceat(rn, first) != np.maximum.reduceat(rn, first))
    if len(several):
        i = several[0]
        require(False, f"run {runs[i]}", f"has several N values {np.unique(rn[first[i]:last[i] + 1]).tolist()}",
                "one N per run")
    d_final = rd[last]
    has_flops, chance = task_constants(cols, task)
    fpt = cols["flops"][rows][last] / d_final if has_flops else None
    # Step 2: drop each run's first SKIP_FRACTION of tokens, then a moving average over SMOOTH_WINDOW
    # checkpoints where the run keeps at least that many (else its kept points as they are).
    sizes = np.diff(starts)
    keep = rd >= SKIP_FRACTION * np.repeat(d_final, sizes)
    run_of = np.repeat(np.arange(len(runs)), sizes)[keep]
    kf, ka = rf[keep], ra[keep]
    kept = np.bincount(run_of, minlength=len(runs))
    kstart = np.concatenate([[0], np.cumsum(kept)])
    pos = np.arange(len(run_of)) - kstart[run_of]  # position within the run's kept points
    smooth = kept[run_of] >= SMOOTH_WINDOW
    window_start = smooth & (pos <= kept[run_of] - SMOOTH_WINDOW)
    w = 1.0 / SMOOTH_WINDOW
    sf, sa = kf.copy(), ka.copy()
    ws = np.flatnonzero(window_start)
    sf[ws] = sum(kf[ws + j] * w for j in range(SMOOTH_WINDOW))
    sa[ws] = sum(ka[ws + j] * w for j in range(SMOOTH_WINDOW))
    point = window_start | ~smooth
    return TaskData(task, np.array(runs), rn[first], d_final, _tail_mean(rf, starts, FINAL_WINDOW),
                    _tail_mean(ra, starts, FINAL_WINDOW), sf[point], sa[point], run_of[point], chance, fpt)
