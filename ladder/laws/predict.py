"""`ladder predict`'s library: fit a method (default: the back-tested ensemble) per task and predict targets.

The pieces: taskfit.py (one task, one method: data, fit, bootstrap), single_step.py (the paper's single-step
ablation), backtest.py (refit on part of the ladder, predict the rest), ensemble.py (the default's weights
and calibrated intervals), flags.py (codes and legend). This module chains them and formats the result.
docs/laws.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ladder.errors import LadderError, require
from ladder.laws import flags as fl
from ladder.laws.backtest import Holdout, backtest, fit_methods, holdout, holdout_fits, run_suite, run_table
from ladder.laws.ensemble import MENU, Calibration, EnsembleFit, calibrate, distance
from ladder.laws.parallel import map_jobs
from ladder.laws.bootstrap import bootstrap, bootstrap_many
from ladder.laws.taskfit import (FINAL_WINDOW, METHODS, PAPER_RUNS, Method, TaskData, TaskFit, fit_task, groups,
                                 present, select_runs, task_data)

EXTRAPOLATION_FLAG = 100.0  # flag targets more than 100x the largest rung's compute (6ND)
INTERVAL = (2.5, 97.5)  # bootstrap percentiles (a 95% interval)
# A bootstrap refits every resample on every run's points: its time and memory grow as resamples x runs
# (10^6 rows over 62,500 runs: 100 resamples took over 3 CPU-minutes and 3 GB). Past this budget (4,096 runs
# x 1,000 resamples, far beyond any real ladder) the resamples are cut to fit it, loudly (docs/results.md).
BOOTSTRAP_BUDGET = 4096 * 1000
MIN_RESAMPLES = 20
NOISY_RATIO = 2.0       # flag a task whose predicted change is under 2x its checkpoint noise
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


def noise(cols: dict, task: str, runs: list[str], window: int = FINAL_WINDOW) -> dict:
    """Checkpoint-to-checkpoint noise of one task (Bhagia et al. 2024 §4's predictability analysis): the
    standard deviation of accuracy (points) and of the task loss (relative) over each run's last `window`
    evaluations, averaged over the runs of the largest fitted size (the closest to a target). Runs with
    fewer than 2 evaluations of the task give no spread and are left out."""
    nd = run_table(cols)
    top = max(nd[r][0] for r in runs)
    chosen = present(cols, task, [r for r in runs if nd[r][0] == top])
    nan = {"acc_sd": float("nan"), "loss_sd_rel": float("nan")}
    if not chosen:
        return nan
    rows, starts = groups(cols, task, chosen)
    sizes = np.diff(starts)
    from_end = np.repeat(starts[1:], sizes) - 1 - np.arange(starts[-1])
    tail = from_end < window
    rows, starts = rows[tail], np.concatenate([[0], np.cumsum(np.minimum(sizes, window))])
    spread = np.diff(starts) >= 2
    if not spread.any():
        return nan

    def sd(v):  # per run: s.d. (ddof 1) of its tail values
        count = np.diff(starts)
        mean = np.add.reduceat(v, starts[:-1]) / count
        dev = v - np.repeat(mean, count)
        return np.sqrt(np.add.reduceat(dev * dev, starts[:-1]) / np.maximum(count - 1, 1)), mean

    acc_sd, _ = sd(cols["acc"][rows])
    out = {"acc_sd": float(np.mean(acc_sd[spread])), "loss_sd_rel": float("nan")}
    if "loss" in cols:
        L = cols["loss"][rows]
        finite = np.logical_and.reduceat(np.isfinite(L), starts[:-1]) & spread
        if finite.any():
            loss_sd, loss_mean = sd(np.where(np.isfinite(L), L, 0.0))
            out["loss_sd_rel"] = float(np.mean((loss_sd / loss_mean)[finite]))
    return out


@dataclass
class Prediction:
    """Everything `ladder predict` prints and writes: per (target, task) numbers, fits, back-tests, flags."""

    targets: dict[str, tuple[float, float]]
    runs: list[str]
    fits: dict[str, TaskFit | EnsembleFit]
    results: dict[str, dict[str, dict]]             # {target: {task: {loss, acc, acc_lo, acc_hi, method, ...}}}
    backtests: dict[str, dict[str, Holdout]] = field(default_factory=dict)  # {task: {method: pooled Holdout}}
    warnings: list[str] = field(default_factory=list)
    samples: dict[str, dict] = field(default_factory=dict)  # {task: bootstrap rows}
    calibration: Calibration | None = None
    suite: list = field(default_factory=list)

    def to_json(self) -> dict:
        return self.results

    def table(self) -> str:
        """Plain text: one line per target x task (interval, predicted change vs noise, flag codes), the
        back-test table, and one legend for the codes used."""
        lines = [f"{'target':<12} {'task':<14} {'method':<12} {'loss':>7} {'acc':>6} {'95% interval':>15} "
                 f"{'change':>7} {'noise':>6} {'Lchange':>8} {'Lnoise':>7}  flags"]
        used = []
        for t, per_task in self.results.items():
            for task, r in per_task.items():
                iv = f"[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]"
                lines.append(f"{t:<12} {task:<14} {r['method']:<12} {r['loss']:>7.4f} {r['acc']:>6.3f} {iv:>15} "
                             f"{r['acc_change']:>+7.3f} {r['acc_noise']:>6.3f} {r['loss_change_rel']:>+8.1%} "
                             f"{r['loss_noise_rel']:>7.2%}  {' '.join(r['flags'])}")
                used += r["flags"]
        lines.append("change: predicted accuracy minus the largest fitted run's; noise: s.d. of accuracy over "
                     "a run's last 5 evaluations; Lchange, Lnoise: the same for the task loss, relative "
                     "(docs/laws.md, 'Predictability')")
        if self.backtests:
            methods = list(next(iter(self.backtests.values())))
            what = ("back-test: mean |predicted - actual| accuracy over every split (docs/laws.md)"
                    if self.calibration else "back-test: |predicted - actual| accuracy of the largest rung "
                    "from the smaller ones")
            lines += ["", what, f"{'task':<14} " + " ".join(f"{m:>13}" for m in methods)]
            for task, bt in self.backtests.items():
                lines.append(f"{task:<14} " + " ".join(f"{bt[m].error:>13.4f}" for m in methods))
        if self.calibration:
            c = self.calibration
            lines.append("ensemble weights: " + ", ".join(f"{m} {w:.2f}" for m, w in c.weights.items()))
            lines.append(f"interval: +-{c.q_acc:.4f} acc x extrapolation distance, union with the bootstrap; "
                         f"covers {c.coverage:.0%} of {c.n_cells} back-test cells (leave-one-split-out)")
        if used:
            lines += ["", "flags:"] + fl.legend(used)
        return "\n".join(lines)


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
            n_bootstrap: int = 1000, seed: int = 0, plot_dir=None, progress=None,
            workers: int | None = None) -> Prediction:
    """Fit `method` per task and predict each target's loss and accuracy.

    method: "ensemble" (default: weights and intervals from the back-test suite), "auto" (per task, the
    lowest error predicting the largest rung), or one of METHODS. cols: a validated results table
    (ladder.results.read_table(path, validate=True)); targets: name -> (N, D) or (N, D, FLOPs/token).
    workers: processes for the per-task fits and the bootstrap (default: the cores available; results equal a
    serial run's, ladder.laws.parallel).
    """
    require(method in ("ensemble", "auto") or method in METHODS, "--method", f"unknown method {method!r}",
            f"choose ensemble, auto or one of {', '.join(METHODS)}")
    require(bool(targets), "--target", "no targets given", "pass at least one NAME=N:D")
    flops = {k: v[2] for k, v in targets.items() if len(v) > 2}
    targets = {k: (float(v[0]), float(v[1])) for k, v in targets.items()}
    runs = select_runs(cols, runs)
    tasks = list(dict.fromkeys(cols["task"].tolist())) if tasks is None else list(tasks)
    nd = run_table(cols)
    c_max = max(6 * nd[r][0] * nd[r][1] for r in runs)
    n_max = max(nd[r][0] for r in runs)
    reference = max(runs, key=lambda r: nd[r][0] * nd[r][1])  # the predicted change is measured from it
    notes = []
    for name, (N, D) in targets.items():
        if 6 * N * D <= c_max or N <= n_max:
            msg = (f"target {name} (N={N:.3g}, D={D:.3g}) is inside the ladder's range (largest rung N="
                   f"{n_max:.3g}, C={c_max:.3g}): not an extrapolation")
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
    pred = Prediction(targets, runs, {}, {t: {} for t in targets}, warnings=notes)
    fallback = []
    skipped = unavailable(cols, MENU if method == "ensemble" else [method] if method in METHODS else [])
    require(method not in skipped, f"--method {method}", skipped.get(method, ""),
            "map the column when importing, or use --method ensemble (it keeps the methods the table allows)")
    menu = [m for m in MENU if m not in skipped]
    if method == "ensemble" and skipped:
        by_reason = {}
        for m, why in skipped.items():
            by_reason.setdefault(why, []).append(m)
        msg = ("skipped " + "; ".join(f"{', '.join(ms)} ({why})" for why, ms in by_reason.items())
               + f": the ensemble weighs {', '.join(menu) or 'nothing'}")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
        require(bool(menu), "results table", "no method of the ensemble can run on it",
                "add a task loss (`loss`) or an LM loss (`lm_loss`) column, or use --method single-step")
    if method == "ensemble":
        pred.suite = run_suite(cols, tasks, runs, menu, progress, workers)
        if pred.suite:
            pred.calibration = calibrate(pred.suite)
        else:  # nothing to weigh the methods by: the paper's method (or its nearest the table allows), loudly
            method = next(m for m in FALLBACK_ORDER + tuple(menu) if m in menu)
            msg = ("the ladder allows no back-test split (it needs 3 sizes, or 2 token budgets, and 6 runs per "
                   f"fit): the ensemble falls back to the {method} method, intervals from the bootstrap only")
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
            fallback = [("FB", f"no back-test split: {method} method, bootstrap interval only")]
    flag_lists = {}
    if method == "ensemble":
        full = dict(zip(tasks, map_jobs(_fit_members, [(t,) for t in tasks],
                                        {"cols": cols, "runs": runs, "menu": menu}, workers)))
    else:
        fitted = dict(zip(tasks, map_jobs(_fit_method, [(t,) for t in tasks],
                                          {"cols": cols, "runs": runs, "method": method}, workers)))
    for task in tasks:
        extra = []
        if method == "ensemble":
            members, problems = full[task]
            problems = {**skipped, **problems}
            fit = EnsembleFit(members, pred.calibration.weights)
            require(bool(fit.members), f"task {task}", "no method of the ensemble could be fitted: "
                    + "; ".join(problems.values()), "check the table's columns")
            extra += [("FB", f"{m}: {p}") for m, p in problems.items()]
            pred.backtests[task] = _pooled(pred.suite, task)
        else:
            fit, bt = fitted[task]
            if bt is not None:
                pred.backtests[task] = bt
        pred.fits[task] = fit
        flag_list = fl.fit_flags(fit.fits()) + extra + fallback
        used = set(getattr(fit, "members", {})) if method == "ensemble" else {fit.method.name}
        flag_list += _loss_misses(pred, task, used)
        flag_lists[task] = flag_list
    if n_bootstrap and n_bootstrap * len(runs) > BOOTSTRAP_BUDGET:
        cut = max(MIN_RESAMPLES, BOOTSTRAP_BUDGET // len(runs))
        if cut < n_bootstrap:
            msg = (f"bootstrap: {len(runs):,} runs x {n_bootstrap} resamples is past the budget of "
                   f"{BOOTSTRAP_BUDGET:,} run refits: {cut} resamples (coarser interval tails; docs/results.md)")
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
            n_bootstrap = cut
    if n_bootstrap:
        if progress:
            progress(f"bootstrap: {n_bootstrap} resamples of the fitted runs, {len(tasks)} tasks")
        pred.samples = _bootstrap_all(pred.fits, n_bootstrap, seed, workers)
    for task in tasks:
        fit, flag_list, rows = pred.fits[task], flag_lists[task], pred.samples.get(task)
        if rows is not None:
            conv = (np.all([r["converged"] for r in rows.values()], 0) if isinstance(fit, EnsembleFit)
                    else rows["converged"])
            if conv.mean() < 0.95:
                flag_list.append(("BOOT", f"{100 * (1 - conv.mean()):.0f}% of refits did not converge"))
        nz = noise(cols, task, runs)
        ref = task_data(cols, task, [reference], "loss" if np.isfinite(nz["loss_sd_rel"]) else "")
        uses_compute = any(f.method.form == "c" and f.data.fpt is not None
                           for f in getattr(fit, "members", {"": fit}).values())
        for name, (N, D) in targets.items():
            F = flops.get(name)
            L, acc = fit.predict(N, D, F)
            ratio = 6 * N * D / c_max
            r = {"loss": float(L), "acc": float(acc), "acc_lo": float(acc), "acc_hi": float(acc),
                 "loss_lo": float(L), "loss_hi": float(L), "method": fit.method.name,
                 "feature": fit.method.feature, "compute_ratio": ratio,
                 "acc_change": float(acc - ref.acc[0]), "acc_noise": nz["acc_sd"],
                 "loss_change_rel": float(L / ref.feature[0] - 1), "loss_noise_rel": nz["loss_sd_rel"]}
            if rows is not None:
                Lb, ab = fit.predict(N, D, F, rows)
                r["acc_lo"], r["acc_hi"] = (float(v) for v in np.nanpercentile(ab, INTERVAL))
                if np.isfinite(Lb).any():
                    r["loss_lo"], r["loss_hi"] = (float(v) for v in np.nanpercentile(Lb, INTERVAL))
            r["distance"] = float(distance(N, D, [nd[x][0] for x in runs], [nd[x][1] for x in runs]))
            if pred.calibration is not None:
                c, g = pred.calibration, r["distance"]
                r["acc_lo"], r["acc_hi"] = min(r["acc_lo"], r["acc"] - c.q_acc * g), max(r["acc_hi"], r["acc"] + c.q_acc * g)
                # the band is symmetric in accuracy, which is a probability: never report one outside [0, 1]
                r["acc_lo"], r["acc_hi"] = max(r["acc_lo"], 0.0), min(r["acc_hi"], 1.0)
                if np.isfinite(c.q_loss) and np.isfinite(r["loss"]):
                    r["loss_lo"] = min(r["loss_lo"], r["loss"] * (1 - c.q_loss * g))
                    r["loss_hi"] = max(r["loss_hi"], r["loss"] * (1 + c.q_loss * g))
                r["weights"] = dict(fit.weights)
            f = list(flag_list)
            if ratio > EXTRAPOLATION_FLAG:
                f.append(("X100", f"{ratio:.0f}x the compute (6ND) of {reference}"))
            if 6 * N * D <= c_max or N <= n_max:
                f.append(("IN", f"N={N:.3g}, 6ND={6 * N * D:.3g}"))
            if uses_compute and F is None:
                f.append(("FPT", "FLOPs/token extrapolated as 6N + k N^g from the ladder"))
            if np.isfinite(nz["acc_sd"]) and abs(r["acc_change"]) < NOISY_RATIO * nz["acc_sd"]:
                f.append(("NOISY", f"change {r['acc_change']:+.3f} vs noise {nz['acc_sd']:.3f}"))
            r["flags"], r["flag_details"] = fl.merge(f)
            if task in pred.backtests:
                r["backtest_error"] = {k: h.error for k, h in pred.backtests[task].items()}
            pred.results[name][task] = r
    if plot_dir is not None:
        from ladder.plots import plot_prediction

        plot_prediction(pred, cols, plot_dir)
    return pred


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


def _fit_members(state: dict, task: str):
    """Every ensemble member fitted to one task (a job of predict, possibly in a worker process)."""
    return fit_methods(state["cols"], task, state["runs"], state["menu"])


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
