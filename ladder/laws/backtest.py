"""Back-tests inside the data: refit on part of the ladder, predict the rest, with every method.

The splits (`splits`) imitate what a prediction does (extrapolate in N, in tokens, in compute) at the
distances the ladder allows: leave each size out, leave the largest token budget out, predict the largest
size's large budgets from the smaller sizes' small ones (`far`: N and D/N at once, as far as a target), and
predict runs of a size beyond the fitted set (on OLMo: the 3B runs from the paper's 16). Their errors choose the default's
weights (ensemble.py) and calibrate its intervals. docs/laws.md, "Back-tests".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ladder.errors import LadderError
from ladder.laws.parallel import map_jobs, task_chunks
from ladder.laws.steep import guarded
from ladder.laws.taskdata import task_data
from ladder.laws.taskfit import METHODS, Method, TaskFit, fit_task, fit_tasks_splits


MIN_FIT_RUNS = 6  # a split's fit set: at least the paper's step-1 parameters (5) plus one
LEVEL_SPAN = 1.2  # tokens per parameter within 1.2x of a level's first run are one token budget (`tpp_levels`)
MAX_SIZE_SPLITS = 8  # size-out splits at most; more sizes than this are left out in bins (see `splits`)
# Runs the back-test suite refits at most. A ladder has tens of runs (OLMo's 25, DataDecide's ~1,000); a
# sweep of tens of thousands would refit every method on every split for minutes. Past this, the suite (which
# only sets the ensemble's weights and interval width) runs on an even sample of the runs ordered by
# (N, D): sizes keep their shares and the largest run stays in. The point fits still use every run.
MAX_SUITE_RUNS = 4096


@dataclass
class Holdout:
    """Predictions for held-out runs from a fit on the others: per run, and the mean absolute error."""

    method: str
    task: str
    fit_runs: list[str]
    test_runs: list[str]
    predicted: np.ndarray          # [T] accuracy
    actual: np.ndarray             # [T] mean of the last 5 accuracies
    error: float                   # mean |predicted - actual| accuracy
    loss_error: float | None       # mean relative error of the intermediate feature (None: no loss)
    problem: str = ""              # why it could not be fitted (error is then NaN)
    compute_ratio: np.ndarray | None = None  # [T] 6ND of each test run / the largest fitted 6ND
    split: str = ""
    loss_rel: np.ndarray | None = None       # [T] predicted / measured intermediate feature - 1 (None: no loss)
    distance: np.ndarray | None = None       # [T] extrapolation distance g of each test run (ensemble.distance)
    guarded: np.ndarray | None = None        # [T] `predicted` held within the steep guard's envelope (steep.py)


@dataclass(frozen=True)
class Split:
    name: str
    fit_runs: tuple[str, ...]
    test_runs: tuple[str, ...]


def _size_label(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


def run_table(cols: dict) -> dict[str, tuple[float, float]]:
    """run -> (N, final D) for every run in the table, in table order: one sort over the rows, where a mask
    per run was O(runs x rows) (10^6 rows over 62,500 runs; bench/bench_results_scale.py)."""
    key = (cols["run"], cols["n"], cols["d"])  # held, so the identity test below cannot meet a reused id
    if not all(a is b for a, b in zip(_RUN_TABLE.get("key", ()), key)) or "key" not in _RUN_TABLE:
        names, first, codes = np.unique(cols["run"], return_index=True, return_inverse=True)
        d_max = np.full(len(names), -np.inf)
        np.maximum.at(d_max, codes, cols["d"])
        order = np.argsort(first)
        table = dict(zip(names[order].tolist(), zip(cols["n"][first[order]].tolist(), d_max[order].tolist())))
        _RUN_TABLE.update(key=key, table=table)
    return dict(_RUN_TABLE["table"])


_RUN_TABLE: dict = {}  # the last table's run_table (predict and its back-tests ask for it many times); tables
# are read-only once read, so the same column arrays mean the same runs


def tpp_levels(tpps) -> list[list[float]]:
    """Token budgets: the runs' tokens per parameter, sorted and grouped, a value within LEVEL_SPAN of its
    level's first one joining that level. One level means every run sits on one ratio D = k N (ensemble.py's
    `one_ratio`: a law in N and D cannot tell the two terms apart there)."""
    levels: list[list[float]] = []
    for v in sorted(tpps):
        if levels and v <= levels[-1][0] * LEVEL_SPAN:
            levels[-1].append(v)
        else:
            levels.append([v])
    return levels


def splits(cols: dict, runs: list[str]) -> list[Split]:
    """The back-test splits a ladder allows (each fit set keeps >= 2 sizes and >= MIN_FIT_RUNS runs; a method
    with more parameters than a split's runs gets no cell there, hence no weight in the ensemble)."""
    nd = run_table(cols)
    sizes = sorted({nd[r][0] for r in runs})
    out = []
    if len(sizes) >= 3:
        # One split per size; past MAX_SIZE_SPLITS sizes (a table of thousands of distinct N) consecutive
        # sizes are left out together, MAX_SIZE_SPLITS bins of near-equal counts, so the suite stays bounded.
        for group in np.array_split(np.array(sizes), min(len(sizes), MAX_SIZE_SPLITS)):
            out_set = set(group.tolist())
            fit = tuple(r for r in runs if nd[r][0] not in out_set)
            test = tuple(r for r in runs if nd[r][0] in out_set)
            label = _size_label(group[0]) + ("" if len(group) == 1 else f"-{_size_label(group[-1])}")
            out.append(Split(f"size-out {label}", fit, test))
    tpp = {r: nd[r][1] / nd[r][0] for r in runs}
    top = max(tpp.values())
    test = tuple(r for r in runs if tpp[r] >= top / 1.5)
    fit = tuple(r for r in runs if tpp[r] < top / 1.5)
    if len({nd[r][0] for r in fit}) >= 2 and len(fit) >= MIN_FIT_RUNS:
        out.append(Split("budget-out", fit, test))
    # far: the largest size's runs past the smaller sizes' lower half of token budgets (tokens per parameter),
    # extrapolating in N and in D/N at once as a target does. On OLMo's 20 runs: 3B at 5xC and 10xC from the
    # smaller sizes at 1xC-2xC, g 1.79-2.09, the targets' distances (1.79, 1.90); the other splits reach 1.39.
    levels = tpp_levels(tpp.values())
    if len(sizes) >= 3 and len(levels) >= 2:
        cut = max(levels[(len(levels) - 1) // 2])  # the lower half of the levels, its top level included
        fit = tuple(r for r in runs if nd[r][0] < sizes[-1] and tpp[r] <= cut)
        test = tuple(r for r in runs if nd[r][0] == sizes[-1] and tpp[r] > cut * 1.5)
        if test and len({nd[r][0] for r in fit}) >= 2:
            out.append(Split(f"far {_size_label(sizes[-1])}", fit, test))
    fitted = set(runs)  # a set: `r not in runs` was runs x table runs (4,096 x 62,500: ~16 CPU-s at 10^6 rows)
    beyond = tuple(r for r in nd if r not in fitted and nd[r][0] > sizes[-1])
    if beyond:
        out.append(Split(f"beyond {_size_label(min(nd[r][0] for r in beyond))}+", tuple(runs), beyond))
    return [s for s in out if len(s.fit_runs) >= MIN_FIT_RUNS]


def fit_methods(cols: dict, task: str, runs, methods, quick: bool = False) -> tuple[dict[str, TaskFit], dict[str, str]]:
    """Fit every method on `runs`, sharing the paper's step 1 / step 2 where methods share them.
    Returns (fits, problems): a method that cannot be fitted is in `problems` with the reason."""
    fits, problems = {}, {}
    for m in methods:
        m = METHODS[m] if isinstance(m, str) else m
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = task_data(cols, task, list(runs), m.needs)
                fits[m.name] = fit_task(data, m, fits.get("paper") if m.feature == "loss" else None, quick)
        except LadderError as e:
            problems[m.name] = str(e)
    return fits, problems


def fit_methods_tasks(cols: dict, tasks, runs, splits_: list[Split], methods, quick: bool = True) -> list:
    """`fit_methods` for several tasks and every split at once: each method is fitted on all splits' fit sets
    together (0/1 weightings of `runs`), and its fits of every task and split share one batched descent
    (ladder.laws.taskfit.fit_tasks_splits), each task's fits bit for bit its own. Returns one (fits, problems)
    pair per task, each a list with one dict per split."""
    if not splits_:
        return [([], []) for _ in tasks]
    fit_sets, run_set = [set(sp.fit_runs) for sp in splits_], set(runs)
    masks = np.array([[r in fit for r in runs] for fit in fit_sets])
    if not all(fit <= run_set for fit in fit_sets):  # a split fitting runs outside `runs`
        out = []
        for task in tasks:
            pairs = [fit_methods(cols, task, sp.fit_runs, methods, quick) for sp in splits_]
            out.append(([p[0] for p in pairs], [p[1] for p in pairs]))
        return out
    fits = [[{} for _ in splits_] for _ in tasks]
    problems = [[{} for _ in splits_] for _ in tasks]
    for m in methods:
        m = METHODS[m] if isinstance(m, str) else m
        results: list = [None] * len(tasks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = {}
            for t, task in enumerate(tasks):
                try:
                    batch[t] = task_data(cols, task, list(runs), m.needs)
                except LadderError:  # e.g. a run without rows for this task: each split says for itself
                    results[t] = _fit_each_split(cols, task, splits_, m, fits[t], quick)
            if batch:
                bases = [[f.get("paper") if m.feature == "loss" else None for f in fits[t]] for t in batch]
                for t, r in zip(batch, fit_tasks_splits(list(batch.values()), masks, m, bases, quick)):
                    results[t] = r
        for t in range(len(tasks)):
            for s, r in enumerate(results[t]):
                if isinstance(r, LadderError):
                    problems[t][s][m.name] = str(r)
                else:
                    fits[t][s][m.name] = r
    return list(zip(fits, problems))


def _fit_each_split(cols: dict, task: str, splits_: list[Split], m: Method, fits: list[dict], quick: bool) -> list:
    """One method fitted split by split on each split's own runs (a fit or the LadderError per split)."""
    results = []
    for s, sp in enumerate(splits_):
        try:
            d = task_data(cols, task, list(sp.fit_runs), m.needs)
            results.append(fit_task(d, m, fits[s].get("paper") if m.feature == "loss" else None, quick))
        except LadderError as e:
            results.append(e)
    return results


def holdout_fits(cols: dict, task: str, fits: dict[str, TaskFit], fit_runs, test_runs, problems=None,
                 split: str = "") -> dict[str, Holdout]:
    """Each fitted method's predictions for the test runs."""
    from ladder.laws.ensemble import distance

    nd = run_table(cols)
    c_max = max(6 * nd[r][0] * nd[r][1] for r in fit_runs)
    ratio = np.array([6 * nd[r][0] * nd[r][1] / c_max for r in test_runs])
    g = distance(*np.array([nd[r] for r in test_runs]).T, *np.array([nd[r] for r in fit_runs]).T)
    out = {}
    for name, problem in (problems or {}).items():
        nan = np.full(len(test_runs), np.nan)
        out[name] = Holdout(name, task, list(fit_runs), list(test_runs), nan, nan, float("nan"), None, problem,
                            ratio, split, None, g)
    for name, fit in fits.items():
        try:
            test = task_data(cols, task, list(test_runs), fit.method.needs)
        except LadderError as e:
            nan = np.full(len(test_runs), np.nan)
            out[name] = Holdout(name, task, list(fit_runs), list(test_runs), nan, nan, float("nan"), None, str(e),
                                ratio, split, None, g)
            continue
        L, acc = fit.predict(test.n, test.d, test.fpt)
        loss_err = loss_rel = None
        if fit.method.needs and not fit.method.single_step:
            loss_rel = L / test.feature - 1
            loss_err = float(np.mean(np.abs(loss_rel)))
        out[name] = Holdout(name, task, list(fit_runs), list(test_runs), acc, test.acc,
                            float(np.mean(np.abs(acc - test.acc))), loss_err, "", ratio, split, loss_rel, g,
                            guarded(fit, acc, test.n, test.d))
    order = list(METHODS) + [m for m in fits if m not in METHODS]
    return {m: out[m] for m in sorted(out, key=lambda m: order.index(m) if m in order else len(order))}


def holdout(cols: dict, task: str, fit_runs: list[str], test_runs: list[str], method: Method | str) -> Holdout:
    """Fit one method on fit_runs, predict each test run's final accuracy (mean of its last 5)."""
    name = method if isinstance(method, str) else method.name
    fits, problems = fit_methods(cols, task, fit_runs, [method])
    return holdout_fits(cols, task, fits, fit_runs, test_runs, problems)[name]


def backtest(cols: dict, task: str, runs: list[str], methods=None) -> dict[str, Holdout]:
    """Predict the largest size (all its runs) from the smaller sizes, for every method."""
    nd = run_table(cols)
    largest = max(nd[r][0] for r in runs)
    test = [r for r in runs if nd[r][0] == largest]
    train = [r for r in runs if nd[r][0] < largest]
    fits, problems = fit_methods(cols, task, train, methods or list(METHODS))
    return holdout_fits(cols, task, fits, train, test, problems)


def suite_tasks(state: dict, tasks: tuple) -> list[list[dict[str, Holdout]]]:
    """Some tasks' back-tests on every split (a job of run_suite and predict, run in a worker process): their fits share
    batched descents (fit_methods_tasks). One list of {method: Holdout} per split, per task."""
    cols, sps = state["cols"], state["splits"]
    out = []
    for task, (fits, problems) in zip(tasks, fit_methods_tasks(cols, tasks, state["runs"], sps, state["methods"])):
        out.append([holdout_fits(cols, task, fits[s], sp.fit_runs, sp.test_runs, problems[s], sp.name)
                    for s, sp in enumerate(sps)])
    return out


def thin_runs(cols: dict, runs: list[str], progress=None, limit: int = MAX_SUITE_RUNS) -> list[str]:
    """`runs`, or past `limit` an even sample of them ordered by (N, D, name) (MAX_SUITE_RUNS says why)."""
    if len(runs) <= limit:
        return list(runs)
    nd = run_table(cols)
    ordered = sorted(runs, key=lambda r: (nd[r][0], nd[r][1], r))
    keep = [ordered[i] for i in np.unique(np.linspace(0, len(ordered) - 1, limit).round().astype(int))]
    if progress:
        progress(f"back-tests: {len(runs):,} runs, more than {limit:,}: the suite refits an even sample of "
                 f"{len(keep):,} (by N, then D; docs/results.md)")
    return keep


def suite_state(cols: dict, tasks, runs: list[str], methods=None, progress=None) -> dict:
    """What the suite's jobs (`suite_tasks`) read: the table, the (thinned) runs, the splits and the methods."""
    methods = methods or list(METHODS)
    runs = thin_runs(cols, runs, progress)
    sps = splits(cols, runs)
    if progress and sps:
        progress(f"back-tests: {len(tasks)} tasks x {len(sps)} splits ({', '.join(sp.name for sp in sps)})")
    return {"cols": cols, "runs": list(runs), "splits": sps, "methods": list(methods)}


def suite_of(tasks, per_task: list, sps: list[Split]) -> list[dict[str, dict[str, Holdout]]]:
    """The suite's entries (one per split: {task: {method: Holdout}}) from its jobs' per-task results."""
    out = [{} for _ in sps]
    for task, holdouts in zip(tasks, per_task):
        for s in range(len(sps)):
            out[s][task] = holdouts[s]
    return out


def run_suite(cols: dict, tasks, runs: list[str], methods=None, progress=None,
              workers: int | None = None) -> list[dict[str, dict[str, Holdout]]]:
    """Every split x task x method, tasks spread over `workers` processes (ladder.laws.parallel). Returns one
    entry per split: {task: {method: Holdout}}. (predict runs the same jobs next to its full fits.)"""
    state = suite_state(cols, tasks, runs, methods, progress)
    sps = state["splits"]
    per_task = [h for chunk in map_jobs(suite_tasks, task_chunks(tasks, workers), state, workers) for h in chunk] \
        if sps else []
    return suite_of(tasks, per_task, sps)
