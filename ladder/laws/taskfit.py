"""One task, one method: the fitting data, the fit and its predictions (its bootstrap: bootstrap.py).

Bhagia et al. 2024 ("Establishing Task Scaling Laws via Compute-Efficient Model Ladders"): step 1 fits the
task loss of each run's final checkpoint as L(N, D) (chinchilla.py), step 2 fits accuracy as a sigmoid of
task loss on all intermediate checkpoints (sigmoid.py), and the prediction chains them. The paper's
ablations and our variants each change one ingredient (`METHODS`, table in docs/laws.md).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ladder.errors import LadderError, require
from ladder.laws import single_step as ss
from ladder.laws.chinchilla import FORMS, LossForm, fit_loss_tasks
from ladder.laws.fitting import FitResult
from ladder.laws.sigmoid import SigmoidForm, fit_sigmoid_many

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


@dataclass(frozen=True)
class Method:
    """One prediction recipe (docs/laws.md, "Methods")."""

    name: str
    feature: str = "loss"        # intermediate feature: task loss (bits/byte) or "lm_loss"
    form: str = "nd"             # step 1: "nd" = L(N, D); "c" = L(C), C = D x FLOPs/token (the `flops` column), else 6ND
    chance_floor: bool = False   # step 2: pin the sigmoid's floor a + b to the task's chance level
    single_step: str = ""        # "paper": the 7-parameter Acc(N, D) of single_step.py

    @property
    def needs(self) -> str:
        """The table column the method's intermediate step needs ('' = accuracy only)."""
        return "" if self.single_step == "paper" else self.feature


METHODS = {m.name: m for m in (
    Method("paper"),
    Method("single-step", single_step="paper"),
    Method("compute", form="c"),
    Method("lm-loss", feature="lm_loss"),
    Method("chance-floor", chance_floor=True),
)}


# ----------------------------------------------------------------------------------------------- data
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


def _task_constants(cols: dict, task: str) -> tuple[bool, float | None]:
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
    has_flops, chance = _task_constants(cols, task)
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


# ------------------------------------------------------------------------------------------ fitting
@dataclass
class TaskFit:
    """A fitted method for one task: step-1 and step-2 fits (or the single-step fit) and what they saw.

    Single-step methods still carry the paper's step 1 and step 2 (for the plots and the reported loss)."""

    task: str
    method: Method
    data: TaskData
    step1: FitResult | None
    step2: FitResult | None
    single: FitResult | None = None

    @property
    def form(self) -> LossForm:
        return FORMS[self.method.form]

    @property
    def sigmoid(self) -> SigmoidForm:
        return SigmoidForm(self.data.chance if self.method.chance_floor else None)

    def _step1_inputs(self, N, D, F=None):
        """(N, D) as the step-1 form reads them: form "c" takes C = 6 N' D with N' = FLOPs/token / 6."""
        if self.method.form != "c" or self.data.fpt is None:
            return N, D
        F = self.data.flops_per_token(N) if F is None else np.asarray(F, dtype=np.float64)
        return F / 6.0, D

    def predict(self, N, D, F=None, rows: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(intermediate feature, accuracy) at (N, D) broadcast; F: FLOPs/token (form "c"; default: the
        ladder's extrapolation); rows: bootstrap parameter rows {"step1", "step2", "single"} ([B, P] each)."""
        rows = rows or {}
        s1 = rows.get("step1", None if self.step1 is None else self.step1.x)
        L = np.full(np.broadcast(np.asarray(N), np.asarray(D)).shape, np.nan) if s1 is None else \
            self.form.predict(s1, *self._step1_inputs(N, D, F))
        if self.method.single_step == "paper":
            x = rows.get("single", self.single.x)
            Nb, Db = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64))
            acc, _ = ss.accuracy(np.atleast_2d(x), np.log(Nb).reshape(-1), np.log(Db).reshape(-1), jac=False)
            acc = acc.reshape((-1,) + Nb.shape)
            return L, acc[0] if np.ndim(x) == 1 else acc
        s2 = rows.get("step2", self.step2.x)
        if np.ndim(s2) == 2:  # bootstrap rows: L is [B, ...]; evaluate row b's sigmoid at row b's loss
            a, b, k, L0 = (c.reshape((-1,) + (1,) * (L.ndim - 1)) for c in self.sigmoid.full(s2).T)
            return L, a * expit(k * (L - L0)) + b
        return L, self.sigmoid.predict(s2, L)

    def fits(self) -> dict[str, FitResult]:
        """The fits this method's prediction uses, by step name."""
        if self.method.single_step:
            return {"single-step": self.single}
        return {"step 1": self.step1, "step 2": self.step2}


def _check_points(data: TaskData, n_params: int, what: str, by_size: bool = True, feature: bool = True) -> None:
    """feature: the method fits a law to the step-1 feature (single-step does not: it reads N, D and accuracy)."""
    runs = ", ".join(data.runs[:6])
    require(len(data.runs) >= n_params, f"task {data.task}",
            f"{what} has {len(data.runs)} runs ({runs}) but {n_params} parameters",
            f"fit at least {n_params} runs")
    key = np.unique(data.n) if by_size else np.unique(data.n * data.d)
    require(len(key) >= 2, f"task {data.task}", f"{what} sees one model size only (runs {runs})",
            "a power law in N needs at least two sizes; add rungs of another size")
    # Degenerate tables fit "perfectly" to a confident number (issue 18: constant accuracy predicted 1.000 with
    # the interval [1.000, 1.000]); a law cannot be fitted to no variation, so say so.
    require(not by_size or len(np.unique(data.d)) >= 2, f"task {data.task}",
            f"{what} sees one token count only (D = {data.d[0]:.4g} in every run)",
            "a power law in D needs at least two; add rungs trained on other token counts")
    acc = np.concatenate([data.acc, data.point_acc])
    require(np.nanmax(acc) > np.nanmin(acc), f"task {data.task}", f"the accuracy is {acc[0]:.4g} in every fitted "
            "row, so there is no trend to fit (cannot fit)", "check the task's column, or leave the task out (--tasks)")
    if not feature:
        return
    feature = data.feature[np.isfinite(data.feature)]
    require(len(feature) == 0 or feature.max() > feature.min(), f"task {data.task}",
            f"the step-1 feature (the method's loss column) is {feature[0] if len(feature) else 0:.4g} in every "
            "run, so step 1 has no trend to fit (cannot fit)", "check the loss column, or use --method single-step")


QUICK = {"top_k": 16, "polish": 1}  # back-test fits: fewer polished starts (same optimum on OLMo, 4x faster)


def fit_task(data: TaskData, method: Method | str, base: TaskFit | None = None, quick: bool = False) -> TaskFit:
    """Fit one method to one task's data (no bootstrap). `base`: a fit on the same runs and feature whose
    step 1 / step 2 are reused where this method shares them (the ensemble fits each piece once). `quick`:
    fewer starts polished (`QUICK`), for the many back-test fits."""
    out = fit_task_splits(data, np.ones((1, len(data.runs)), dtype=bool), method, [base], quick)[0]
    if isinstance(out, LadderError):
        raise out
    return out


def fit_task_splits(data: TaskData, masks: np.ndarray, method: Method | str, bases=None,
                    quick: bool = False) -> list[TaskFit | LadderError]:
    """`fit_task` on S subsets of data's runs at once (masks [S, R]; the back-test splits): the fits of all
    subsets share their grid searches and batched descents (chinchilla.fit_loss_many, sigmoid.fit_sigmoid_many,
    single_step.fit_single_step_many) and equal separate fits. A subset that cannot be fitted gets its
    LadderError in place of a TaskFit; bases[s] is subset s's `base`. One task of `fit_tasks_splits`."""
    return fit_tasks_splits([data], masks, method, [bases], quick)[0]


def fit_tasks_splits(datas: list[TaskData], masks: np.ndarray, method: Method | str, bases=None,
                     quick: bool = False) -> list[list[TaskFit | LadderError]]:
    """`fit_task_splits` for several tasks over the same runs (masks [S, R] for every task; bases[t][s]): the
    step-1 and single-step descents of all tasks share one batched solver call (chinchilla.fit_loss_tasks,
    single_step.fit_single_step_tasks), each task's fits bit for bit its own fit_task_splits'."""
    opt = QUICK if quick else {}
    method = METHODS[method] if isinstance(method, str) else method
    form = FORMS[method.form]
    masks = np.asarray(masks, dtype=bool).reshape(len(masks), -1)
    bases = [list(b) if b is not None else [None] * len(masks) for b in (bases or [None] * len(datas))]
    outs, subs, oks = [], [], []
    for data in datas:
        sub = [data.subset(m) for m in masks]
        out: list = [None] * len(masks)
        ok = []
        for s, sb in enumerate(sub):
            try:
                require(not method.chance_floor or data.chance is not None, f"task {data.task}",
                        "has no chance level for method chance-floor", "add a `chance` column to the results table")
                if method.single_step == "paper":
                    _check_points(sb, len(ss.NAMES), "single-step fit", feature=False)
                else:
                    _check_points(sb, len(form.names), "step 1", by_size=form.name == "nd")
                ok.append(s)
            except LadderError as e:
                out[s] = e
        outs.append(out), subs.append(sub), oks.append(ok)
    if method.single_step == "paper":
        todo = [t for t, ok in enumerate(oks) if ok]
        singles = ss.fit_single_step_tasks([(datas[t].n, datas[t].d, datas[t].acc, datas[t].chance,
                                             masks[oks[t]].astype(np.float64)) for t in todo], top_k=1 if quick else 4)
        for t, fits in zip(todo, singles):
            for s, single in zip(oks[t], fits):
                base = bases[t][s]
                s1 = base.step1 if base is not None and base.method.form == "nd" else None
                s2 = base.step2 if base is not None and not base.method.chance_floor else None
                outs[t][s] = TaskFit(datas[t].task, method, subs[t][s], s1, s2, single)
        return outs

    def shared(t, s):
        return bases[t][s] is not None and bases[t][s].method.feature == method.feature

    step1 = [{} for _ in datas]
    fit1 = [[s for s in ok if not (shared(t, s) and bases[t][s].method.form == method.form
                                   and bases[t][s].step1 is not None)] for t, ok in enumerate(oks)]
    for t, ok in enumerate(oks):
        step1[t] = {s: bases[t][s].step1 for s in ok if s not in fit1[t]}
    todo = [t for t in range(len(datas)) if fit1[t]]
    problems = []
    for t in todo:
        data = datas[t]
        inputs = TaskFit(data.task, method, data, None, None)._step1_inputs(data.n, data.d, data.fpt)
        problems.append((*inputs, data.feature, masks[fit1[t]].astype(np.float64)))
    for t, fits in zip(todo, fit_loss_tasks(form, problems, **opt) if problems else []):
        step1[t] |= dict(zip(fit1[t], fits))
    for t, data in enumerate(datas):
        sig = SigmoidForm(data.chance if method.chance_floor else None)
        step2, fit2 = {}, []
        for s in oks[t]:
            base = bases[t][s]
            if shared(t, s) and base.method.chance_floor == method.chance_floor and base.step2 is not None:
                step2[s] = base.step2
                continue
            n_points = len(subs[t][s].point_feature) + 1
            if n_points > len(sig.names):
                fit2.append(s)
            else:
                outs[t][s] = LadderError(f"task {data.task}: step 2 has {n_points} points; evaluate more checkpoints")
        if fit2:
            Lp, Ap = np.append(data.point_feature, 0.0), np.append(data.point_acc, 1.0)
            W2 = np.concatenate([masks[fit2][:, data.point_run], np.ones((len(fit2), 1), dtype=bool)], 1)
            step2 |= dict(zip(fit2, fit_sigmoid_many(sig, Lp, Ap, W2.astype(np.float64),
                                                     **({"top_k": 8, "polish": 1} if quick else {}))))
        for s in oks[t]:
            if outs[t][s] is None:
                outs[t][s] = TaskFit(data.task, method, subs[t][s], step1[t][s], step2[s])
    return outs
