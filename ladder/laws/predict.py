"""`ladder predict`'s library: fit a method (default: the back-tested ensemble) per task and predict targets.

The pieces: taskdata.py (one task's data), taskfit.py (one task, one method: the fit), bootstrap.py (its
refits), single_step.py (the paper's single-step ablation), backtest.py (refit on part of the ladder, predict
the rest), ensemble.py (the default's weights and calibrated intervals), task_results.py (each task's
result per target: interval, predictability, flags), flags.py (codes and legend). This module chains them.
docs/laws.md.
"""

from __future__ import annotations

import warnings

import numpy as np

from ladder.errors import LadderError, require
from ladder.laws import flags as fl, inputs
from ladder.laws.backtest import (Holdout, Split, backtest, fit_methods, fit_methods_tasks, holdout, holdout_fits,
                                 suite_of, suite_state, suite_tasks)
from ladder.laws.ensemble import MENU, PAPER_STAND_IN, EnsembleFit, calibrate
from ladder.laws.parallel import map_jobs, task_chunks
from ladder.laws.prediction import Prediction
from ladder.laws.bootstrap import bootstrap, bootstrap_many
from ladder.laws.task_results import INTERVAL, FittedLadder, noise, task_results
from ladder.laws.taskdata import FINAL_WINDOW, PAPER_RUNS, TaskData, select_runs, task_data
from ladder.laws.taskfit import METHODS, Method, TaskFit, fit_task
from ladder.malloc_tunables import keep_freed_memory
from ladder.plan.sizes import MIN_RUN_TOKENS_PER_PARAM

# A bootstrap refits every resample on every run's points: its time and memory grow as resamples x runs
# (10^6 rows over 62,500 runs: 100 resamples took over 3 CPU-minutes and 3 GB). Past this budget (4,096 runs
# x 1,000 resamples, far beyond any real ladder) the resamples are cut to fit it, loudly (docs/results.md).
BOOTSTRAP_BUDGET = 4096 * 1000
MIN_RESAMPLES = 20
DEFAULT_METHOD = "ensemble"


def choose_method(bt: dict[str, Holdout]) -> str:
    """The method with the lowest back-test accuracy error (ties and NaNs: earlier in METHODS wins)."""
    errs = {m: h.error for m, h in bt.items() if np.isfinite(h.error)}
    require(bool(errs), "--method auto", "no method could be back-tested", "the ladder needs at least 3 sizes")
    return min(errs, key=errs.get)


def parse_target(spec: str) -> tuple[str, tuple[float, ...]]:
    """'7B=6.9e9:3.9e12' -> ('7B', (6.9e9, 3.9e12)); a third value is the target's training FLOPs per token
    (used by the `compute` method; default: extrapolated from the ladder's `flops`)."""
    try:
        name, nd = spec.split("=", 1)
        vals = tuple(float(v) for v in nd.split(":"))
        if len(vals) not in (2, 3):
            raise ValueError
    except ValueError:
        raise LadderError(f"--target {spec!r}: expected NAME=N:D or NAME=N:D:FLOPS_PER_TOKEN, "
                          "e.g. 7B=6.9e9:3.9e12") from None
    require(all(v > 0 and np.isfinite(v) for v in vals), f"--target {name}", "N, D (and F) must be positive",
            "fix the numbers")
    return name, vals


FEATURE_NAMES = {"loss": "a task loss", "lm_loss": "an LM loss"}
FALLBACK_ORDER = ("paper", "lm-loss", "single-step")  # without back-tests: the paper's chain, else its nearest


def unavailable(cols: dict, methods) -> dict[str, str]:
    """Methods whose intermediate feature the table has nowhere (column absent or blank in every row), with
    the reason: an accuracy-only table skips them up front instead of failing per task."""
    out = {}
    for name in methods:
        need = METHODS[name].needs
        if need and (need not in cols or not np.isfinite(cols[need]).any()):
            how = "has no column" if need not in cols else "leaves blank every value of"
            out[name] = f"needs {FEATURE_NAMES.get(need, need)}; the table {how} {need!r}"
    return out


def _pooled(suite, task: str) -> dict[str, Holdout]:
    """One Holdout per method for a task: errors pooled over the suite's splits (for tables and JSON)."""
    out = {}
    hs = [per[task] for per in suite if task in per]
    for m in hs[0] if hs else ():
        pred = np.concatenate([h[m].predicted for h in hs])
        act = np.concatenate([h[m].actual for h in hs])
        lerr = [h[m].loss_error for h in hs if h[m].loss_error is not None]
        problem = "; ".join(sorted({h[m].problem for h in hs if h[m].problem}))
        out[m] = Holdout(m, task, [], [r for h in hs for r in h[m].test_runs], pred, act,
                         float(np.mean(np.abs(pred - act))), float(np.mean(lerr)) if lerr else None, problem)
    return out


def _loss_misses(pred: Prediction, task: str, used: set) -> list[tuple[str, str]]:
    """BTL flags: back-tests of the used methods that missed a held-out task loss by more than 100%."""
    worst = {}
    for per in pred.suite or [{task: pred.backtests.get(task, {})}]:
        for m, h in per.get(task, {}).items():
            if m in used and h.loss_rel is not None and np.isfinite(h.loss_rel).any():
                worst[m] = max(worst.get(m, 0.0), float(np.nanmax(np.abs(h.loss_rel))))
    return [("BTL", f"{m}: back-test loss error up to {v:.0%}") for m, v in worst.items() if v > 1.0]


def predict(cols: dict, targets: dict[str, tuple], *, method: str = DEFAULT_METHOD, runs=None, tasks=None,
            n_bootstrap: int = 1000, seed: int = 0, progress=None,
            workers: int | None = None) -> Prediction:
    """Fit `method` per task and predict each target's loss and accuracy.

    method: "ensemble" (default: weights and intervals from the back-test suite), "auto" (per task, the
    lowest error predicting the largest rung), or one of METHODS. cols: a validated results table
    (ladder.results.read_table(path, validate=True)); targets: name -> (N, D) or (N, D, FLOPs/token).
    workers: processes for the per-task fits and the bootstrap (default: the cores available; results equal a
    serial run's, ladder.laws.parallel).
    The steps: check the targets, choose the methods the table allows, back-test and calibrate (ensemble),
    fit every task, bootstrap, and write one result per target and task.
    """
    method = inputs.method_name(method)  # a notebook's arguments in any form it has: ladder/laws/inputs.py
    require(method in ("ensemble", "auto") or method in METHODS, "--method", f"unknown method {method!r}",
            f"choose ensemble, auto or one of {', '.join(METHODS)}")
    cols, targets = inputs.results_columns(cols), inputs.target_values(targets)
    runs, tasks = inputs.name_list(runs, "runs"), inputs.name_list(tasks, "tasks")
    n_bootstrap, seed = inputs.whole(n_bootstrap, "n_bootstrap", 0), inputs.whole(seed, "seed", 0)
    workers = inputs.workers(workers)
    keep_freed_memory()  # the solvers' arrays reuse their pages, not fresh ones per iteration (ladder/malloc_tunables.py)
    flops = {k: v[2] for k, v in targets.items() if len(v) > 2}
    targets = {k: (float(v[0]), float(v[1])) for k, v in targets.items()}
    ladder = FittedLadder.of(cols, select_runs(cols, runs))
    _require_token_counts(ladder)
    tasks = list(dict.fromkeys(cols["task"].tolist())) if tasks is None else list(tasks)
    notes = _inside_targets(targets, ladder) + _one_ratio(targets, ladder)
    pred = Prediction(targets, ladder.runs, {}, {t: {} for t in targets}, warnings=notes)
    menu, skipped = _menu(cols, method, notes)
    fallback = []
    full = None
    if method == "ensemble":
        full = _suite_and_fits(pred, cols, tasks, menu, progress, workers)
        method, fallback = _calibrate(pred, menu, notes, ladder.ratio is not None)
    flag_lists = _fit_tasks(pred, cols, tasks, method, menu, skipped, fallback, workers, full)
    n_bootstrap = _bootstrap_budget(n_bootstrap, len(ladder.runs), notes)
    if n_bootstrap:
        if progress:
            progress(f"bootstrap: {n_bootstrap} resamples of the fitted runs, {len(tasks)} tasks")
        pred.samples = _bootstrap_all(pred.fits, n_bootstrap, seed, workers)
    for task in tasks:
        task_results(pred, cols, task, ladder, flag_lists[task], flops)
    return pred



def _require_token_counts(ladder: FittedLadder) -> None:
    """A fitted run ending under N/100 tokens is the importer's unit slip (D in billions, or tokens per
    parameter), in a table written by hand: refused as the importer and a target with D < N are. Before, D in
    millions was fitted (compute ratios of 10^8, a confident accuracy) with no word but X100."""
    few = min(ladder.runs, key=lambda r: ladder.nd[r][1] / ladder.nd[r][0])
    n, d = ladder.nd[few]
    require(d >= MIN_RUN_TOKENS_PER_PARAM * n, "results table", f"run {few!r} ends at {d:g} tokens for {n:,.0f} "
            "parameters (under N/100), so d is not a plain count of tokens", "write d as tokens seen, e.g. 2.6e10 "
            "(not 26 for billions, nor tokens per parameter)")


def _warn(notes: list[str], msg: str) -> None:
    """A warning for the caller of predict() that is also kept in the prediction's notes."""
    warnings.warn(msg, stacklevel=4)
    notes.append(msg)


def _inside_targets(targets: dict, ladder: FittedLadder) -> list[str]:
    """Notes (and warnings) for targets inside the ladder's range (not extrapolations) or below it."""
    notes: list[str] = []
    for name, (N, D) in targets.items():
        if ladder.inside(N, D):
            _warn(notes, f"target {name} (N={N:.3g}, D={D:.3g}) is inside the ladder's range (largest rung N="
                         f"{ladder.n_max:.3g}, C={ladder.c_max:.3g}): not an extrapolation")
        elif ladder.below(N, D):
            _warn(notes, f"target {name} is below the ladder ({ladder.below(N, D)}): an extrapolation downward")
    return notes


def _one_ratio(targets: dict, ladder: FittedLadder) -> list[str]:
    """A note (and warning) when every fitted run sits on one ratio D = k N: a law in N and D is fitted along
    a line there (its N and D terms trade off: E -> 0, a D exponent of 30 fit as well as the truth), so it
    predicts along that line and nowhere else; targets off it are flagged RATIO (docs/laws.md, "Ladders of
    other shapes")."""
    if ladder.ratio is None:
        return []
    off = [name for name, (N, D) in targets.items() if ladder.off_ratio(N, D)]
    notes: list[str] = []
    _warn(notes, f"every fitted run has {ladder.ratio_text()} tokens per parameter (one ratio, D = k N): the fits "
                 "cannot tell the N term from the D term, so predictions hold along that ratio only"
                 + (f"; {', '.join(off)} {'is' if len(off) == 1 else 'are'} off it (flag RATIO)" if off else ""))
    return notes


def _menu(cols: dict, method: str, notes: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the ensemble's methods this table allows, {skipped method: why}); a named method the table cannot
    serve is an error."""
    skipped = unavailable(cols, MENU if method == "ensemble" else [method] if method in METHODS else [])
    require(method not in skipped, f"--method {method}", skipped.get(method, ""),
            "map the column when importing, or use --method ensemble (it keeps the methods the table allows)")
    menu = [m for m in MENU if m not in skipped]
    if method == "ensemble" and skipped:
        by_reason: dict[str, list[str]] = {}
        for m, why in skipped.items():
            by_reason.setdefault(why, []).append(m)
        _warn(notes, "skipped " + "; ".join(f"{', '.join(ms)} ({why})" for why, ms in by_reason.items())
              + f": the ensemble weighs {', '.join(menu) or 'nothing'}")
        require(bool(menu), "results table", "no method of the ensemble can run on it",
                "add a task loss (`loss`) or an LM loss (`lm_loss`) column, or use --method single-step")
    return menu, skipped


def _suite_and_fits(pred: Prediction, cols: dict, tasks, menu, progress, workers) -> dict | None:
    """The back-test suite (pred.suite) and every task's ensemble members fitted on all runs ({task: (fits,
    problems)}), in one set of jobs: per chunk of tasks one suite job and one full-fit job, so a core that
    finishes its suite job early takes up the fits instead of waiting for the other's (same results as
    separate runs: each job is a pure function of its tasks)."""
    state = suite_state(cols, tasks, pred.runs, menu, progress)
    sps, chunks = state["splits"], task_chunks(tasks, workers)
    if not sps:  # no back-tests: the ensemble falls back to one method (`_calibrate`), fitted by _fit_tasks
        pred.suite = []
        return None
    jobs = [("suite", *c) for c in chunks] + [("fit", *c) for c in chunks]
    out = map_jobs(_ensemble_job, jobs, {**state, "runs": pred.runs, "suite_runs": state["runs"], "menu": menu},
                   workers)
    pred.suite = suite_of(tasks, [h for chunk in out[: len(chunks)] for h in chunk], sps)
    return dict(zip(tasks, [pair for chunk in out[len(chunks):] for pair in chunk]))


def _ensemble_job(state: dict, kind: str, tasks: tuple) -> list:
    """One job of `_suite_and_fits`: some tasks' back-tests, or their members' full fits."""
    if kind == "suite":
        return suite_tasks({**state, "runs": state["suite_runs"]}, tasks)
    return _fit_members(state, tasks)


def _calibrate(pred: Prediction, menu, notes, one_ratio: bool = False) -> tuple[str, list]:
    """Set the ensemble's weights and interval scale from the back-test suite. Returns (method, fallback
    flags): "ensemble", or where the ladder allows no split, the paper's method or its nearest, loudly.
    On a one-ratio ladder without the paper's method (no task loss) its prior goes to `lm-loss`, the paper's
    chain on the LM loss (ensemble.PAPER_STAND_IN)."""
    if pred.suite:
        stand_in = one_ratio and "paper" not in menu and "lm-loss" in menu
        pred.calibration = calibrate(pred.suite, prior=PAPER_STAND_IN if stand_in else None)
        for note in pred.calibration.notes:
            _warn(notes, note)
        return "ensemble", []
    method = next(m for m in FALLBACK_ORDER + tuple(menu) if m in menu)
    _warn(notes, "the ladder allows no back-test split (it needs 3 sizes, or 2 token budgets, and 6 runs per "
                 f"fit): the ensemble falls back to the {method} method, intervals from the bootstrap only")
    return method, [("FB", f"no back-test split: {method} method, bootstrap interval only")]


def _fit_tasks(pred: Prediction, cols: dict, tasks, method: str, menu, skipped, fallback, workers,
               full: dict | None = None) -> dict:
    """Fit every task (pred.fits, pred.backtests); returns each task's flags so far. full: the ensemble
    members' fits when `_suite_and_fits` made them (a fallback method fits here)."""
    runs, flag_lists = pred.runs, {}
    if method != "ensemble":
        fitted = dict(zip(tasks, map_jobs(_fit_method, [(t,) for t in tasks],
                                          {"cols": cols, "runs": runs, "method": method}, workers)))
    for task in tasks:
        extra = []
        if method == "ensemble":
            members, problems = full[task]
            problems = {**skipped, **problems}
            weights = pred.calibration.weights_for(task)  # the paper member alone where P chose it
            if not any(weights.get(m, 0) > 0 for m in members):
                weights = pred.calibration.weights  # ... unless its full fit failed
            weighed = any(weights.get(m, 0) > 0 for m in members)  # else EnsembleFit has none
            require(weighed, f"task {task}", "no method of the ensemble could be fitted: "
                    + "; ".join(problems.values()), "check the table's columns")
            fit = EnsembleFit(members, weights)
            extra += [("FB", f"{m}: {p}") for m, p in problems.items()]
            pred.backtests[task] = _pooled(pred.suite, task)
        else:
            fit, bt = fitted[task]
            if bt is not None:
                pred.backtests[task] = bt
        pred.fits[task] = fit
        used = set(getattr(fit, "members", {})) if method == "ensemble" else {fit.method.name}
        flag_lists[task] = fl.fit_flags(fit.fits()) + extra + fallback + _loss_misses(pred, task, used)
    return flag_lists


def _bootstrap_budget(n_bootstrap: int, n_runs: int, notes: list[str]) -> int:
    """The resamples to draw: n_bootstrap, cut (loudly) to fit BOOTSTRAP_BUDGET run refits. Under 1/0.025 = 40
    resamples a 95% interval's 2.5% tails hold less than one resample each: the ends are the extremes seen
    (--bootstrap 1 printed a '95% interval' from one refit), so that is said too."""
    tails = round(100 / INTERVAL[0])
    if 0 < n_bootstrap < tails:
        _warn(notes, f"bootstrap: {n_bootstrap} resamples are too few for a 95% interval (its 2.5% tails need "
                     f"{tails}+): the interval printed is the spread of {n_bootstrap} refits; use --bootstrap 0 "
                     f"for none or at least {tails}")
    if n_bootstrap and n_bootstrap * n_runs > BOOTSTRAP_BUDGET:
        cut = max(MIN_RESAMPLES, BOOTSTRAP_BUDGET // n_runs)
        if cut < n_bootstrap:
            _warn(notes, f"bootstrap: {n_runs:,} runs x {n_bootstrap} resamples is past the budget of "
                         f"{BOOTSTRAP_BUDGET:,} run refits: {cut} resamples (coarser interval tails; docs/results.md)")
            return cut
    return n_bootstrap



def _fit_method(state: dict, task: str):
    """(fit, back-tests or None) of one named method, or of `auto`'s choice, for one task (a job of predict)."""
    cols, runs, method, bt = state["cols"], state["runs"], state["method"], None
    chosen = method
    if method == "auto":
        bt = backtest(cols, task, runs)
        chosen = choose_method(bt)
    m = METHODS[chosen]
    data = task_data(cols, task, runs, m.needs)
    base = None
    if m.single_step == "paper":  # the paper's step 1 gives single-step a loss to report, when there is one
        base = fit_methods(cols, task, runs, ["paper"])[0].get("paper")
    return fit_task(data, m, base), bt


def _fit_members(state: dict, tasks: tuple) -> list:
    """Every ensemble member fitted to some tasks (a job of predict, possibly in a worker process): per task,
    fit_methods' (fits, problems), the tasks' fits sharing batched descents (backtest.fit_methods_tasks, one
    "split" of every run; each task's fits bit for bit its own fit_methods')."""
    runs = tuple(state["runs"])
    pairs = fit_methods_tasks(state["cols"], tasks, runs, [Split("all", runs, ())], state["menu"], quick=False)
    return [(fits[0], problems[0]) for fits, problems in pairs]


def _bootstrap_all(fits: dict, n_samples: int, seed: int, workers: int | None = None) -> dict:
    """{task: bootstrap rows} for every task's fit ({member: rows} for an ensemble), all refitted together
    (bootstrap.bootstrap_many: equal to one bootstrap per fit, the slow refits of all tasks sharing iterations)."""
    flat = [(task, m, f) for task, fit in fits.items()
            for m, f in (fit.members.items() if isinstance(fit, EnsembleFit) else [(None, fit)])]
    rows = bootstrap_many([f for _, _, f in flat], n_samples, seed, workers)
    out: dict = {}
    for (task, m, _), r in zip(flat, rows):
        if m is None:
            out[task] = r
        else:
            out.setdefault(task, {})[m] = r
    return out


def holdout_report(cols: dict, pred: Prediction, test_runs: list[str]) -> dict:
    """Every method (and the prediction's own fit) predicting `test_runs` from the prediction's fitted runs:
    {task: {method: {error, loss_error, predicted, actual, runs}}}. `ladder predict --holdout`."""
    report = {}
    for task, fit in pred.fits.items():
        fits, problems = fit_methods(cols, task, pred.runs, list(METHODS))
        if isinstance(fit, EnsembleFit):
            fits["ensemble"] = fit
        hs = holdout_fits(cols, task, fits, pred.runs, test_runs, problems)
        report[task] = {m: {"error": h.error, "loss_error": h.loss_error, "predicted": h.predicted.tolist(),
                            "actual": h.actual.tolist(), "runs": h.test_runs, "problem": h.problem}
                        for m, h in hs.items()}
    return report


__all__ = ["METHODS", "PAPER_RUNS", "FINAL_WINDOW", "Method", "TaskData", "TaskFit", "Prediction", "Holdout",
           "select_runs", "task_data", "fit_task", "bootstrap", "holdout", "backtest", "choose_method",
           "parse_target", "predict", "holdout_report", "noise"]
