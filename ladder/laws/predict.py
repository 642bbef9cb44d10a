"""The two-step task predictor: (N, D) -> task loss -> accuracy, its variants, bootstrap and back-test.

Bhagia et al. 2024 ("Establishing Task Scaling Laws via Compute-Efficient Model Ladders"): step 1 fits the
task loss of each run's final checkpoint as L(N, D) (chinchilla.py), step 2 fits accuracy as a sigmoid of
task loss on all intermediate checkpoints (sigmoid.py), and the prediction chains them. Variants change one
ingredient each; `backtest` predicts the ladder's largest rung from the smaller ones so methods can be
compared (and chosen per task, `method="auto"`) on the extrapolation they are used for. docs/laws.md.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from ladder.errors import LadderError, require
from ladder.laws.chinchilla import FORMS, LossForm, fit_loss, fit_loss_batched
from ladder.laws.fitting import FitResult, minimize_batched, minimize_from_grid
from ladder.laws.sigmoid import SigmoidForm, fit_sigmoid, fit_sigmoid_batched

# The paper's fit set on the published OLMo ladder: 4 sizes x 4 Chinchilla multiples.
PAPER_RUNS = tuple(f"{s}-{c}xC" for s in ("190M", "370M", "760M", "1B") for c in (1, 2, 5, 10))
# Chance accuracy for the paper's tasks when the table has no `chance` column.
KNOWN_CHANCE = {"mmlu": 0.25, "hellaswag": 0.25, "arc_challenge": 0.25, "arc_easy": 0.25, "piqa": 0.5,
                "csqa": 0.2, "socialiqa": 1 / 3, "openbookqa": 0.25}
FINAL_WINDOW = 5       # step-1 point: mean of the last 5 evaluations of each run
SKIP_FRACTION = 0.10   # step 2: drop checkpoints in the first 10% of each run's tokens ...
SMOOTH_WINDOW = 5      # ... and smooth the rest with a moving average over 5 checkpoints
EXTRAPOLATION_FLAG = 100.0  # flag targets more than 100x the largest rung's compute (6ND)
INTERVAL = (2.5, 97.5)  # bootstrap percentiles reported as acc_lo / acc_hi (a 95% interval)


@dataclass(frozen=True)
class Method:
    """One prediction recipe; each differs from `paper` in one ingredient (docs/laws.md)."""

    name: str
    feature: str = "loss"        # intermediate feature: task loss (bits/byte) or "lm_loss"
    form: str = "nd"             # step 1: "nd" = L(N, D), "c" = L(C) with C = 6ND
    chance_floor: bool = False   # step 2: pin the sigmoid's floor a + b to the task's chance level
    single_step: bool = False    # fit Acc(N, D) = sigmoid(L(N, D)) directly on the final points


METHODS = {m.name: m for m in (
    Method("paper"),
    Method("single-step", single_step=True),
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
    feature: np.ndarray         # [R] mean of the last 5 values of the intermediate feature
    acc: np.ndarray             # [R] mean of the last 5 accuracies
    point_feature: np.ndarray   # [M] step-2 points (skipped + smoothed), anchor (0, 1) excluded
    point_acc: np.ndarray       # [M]
    point_run: np.ndarray       # [M] index into runs
    chance: float | None


def select_runs(cols: dict, runs=None) -> list[str]:
    """Run names to fit: names or fnmatch patterns ("paper" = the paper's 16); default: PAPER_RUNS when the
    table holds all of them (the published OLMo ladder), else every run in the table."""
    present = list(dict.fromkeys(cols["run"].tolist()))
    if runs is None:
        return list(PAPER_RUNS) if set(PAPER_RUNS) <= set(present) else present
    if isinstance(runs, str):
        runs = [r for r in runs.split(",") if r]
    chosen = []
    for pat in runs:
        names = list(PAPER_RUNS) if pat == "paper" else [r for r in present if fnmatch.fnmatchcase(r, pat)]
        require(bool(names) and set(names) <= set(present), "--runs", f"{pat!r} matches no run in the table",
                f"choose from {', '.join(present[:8])}{'...' if len(present) > 8 else ''}")
        chosen += [n for n in names if n not in chosen]
    return chosen


def run_rows(cols: dict, mask=None) -> dict[str, np.ndarray]:
    """run name -> indices of its rows (within `mask`), in step order (stable), grouped in one sort:
    O(rows log rows), where comparing every run against every row was O(runs x rows) (10^6 rows over
    62,500 runs took > 10 minutes; bench/bench_results_scale.py)."""
    idx = np.arange(len(cols["run"])) if mask is None else np.flatnonzero(mask)
    if not len(idx):
        return {}
    names, codes = np.unique(cols["run"][idx], return_inverse=True)
    order = np.lexsort((cols["step"][idx], codes))  # by run, then step; lexsort is stable
    idx, codes = idx[order], codes[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], cuts])
    return dict(zip(names[codes[starts]].tolist(), np.split(idx, cuts)))


def run_sizes(cols: dict, runs) -> tuple[dict[str, float], dict[str, float]]:
    """(N of each run: its first row's n, D of each run: its largest d), in one pass over the table."""
    names, first, codes = np.unique(cols["run"], return_index=True, return_inverse=True)
    d_max = np.full(len(names), -np.inf)
    np.maximum.at(d_max, codes, cols["d"])
    n_of = dict(zip(names.tolist(), cols["n"][first].astype(float).tolist()))
    d_of = dict(zip(names.tolist(), d_max.tolist()))
    return {r: n_of[r] for r in runs}, {r: d_of[r] for r in runs}


def task_data(cols: dict, task: str, runs: list[str], feature: str = "loss") -> TaskData:
    """Step-1 points (one per run) and step-2 points (all intermediate checkpoints) of one task."""
    require(feature in cols, "results table", f"has no column {feature!r} (needed for the intermediate feature)",
            "add it (e.g. a held-out LM loss) or choose another method")
    sel_task = cols["task"] == task
    require(sel_task.any(), "--tasks", f"task {task!r} is not in the table", f"choose from {sorted(set(cols['task']))}")
    rows_of = run_rows(cols, sel_task)
    n, d, fe, acc = [], [], [], []
    pf, pa, pr = [], [], []
    for i, run in enumerate(runs):
        rows = rows_of.get(run)  # this task's rows of the run, in step order
        require(rows is not None, f"run {run}", f"has no rows for task {task!r}",
                "evaluate it or leave the run out (--runs)")
        rd, rf, ra = cols["d"][rows], cols[feature][rows], cols["acc"][rows]
        require(np.isfinite(rf).all(), f"run {run}", f"column {feature!r} is blank or NaN for task {task!r}",
                "fill it or choose a method that does not use it")
        ns = np.unique(cols["n"][rows])
        require(len(ns) == 1, f"run {run}", f"has several N values {ns.tolist()}", "one N per run")
        n.append(ns[0])
        d.append(rd[-1])
        fe.append(rf[-FINAL_WINDOW:].mean())
        acc.append(ra[-FINAL_WINDOW:].mean())
        keep = rd >= SKIP_FRACTION * rd[-1]
        k = np.ones(SMOOTH_WINDOW) / SMOOTH_WINDOW
        if keep.sum() >= SMOOTH_WINDOW:
            sf, sa = np.convolve(rf[keep], k, "valid"), np.convolve(ra[keep], k, "valid")
        else:
            sf, sa = rf[keep], ra[keep]
        pf.append(sf), pa.append(sa), pr.append(np.full(len(sf), i))
    chance = None
    if "chance" in cols and np.isfinite(cols["chance"][sel_task]).any():
        chance = float(np.nanmean(cols["chance"][sel_task]))
    elif task in KNOWN_CHANCE:
        chance = KNOWN_CHANCE[task]
    return TaskData(task, np.array(runs), np.array(n), np.array(d), np.array(fe), np.array(acc),
                    np.concatenate(pf), np.concatenate(pa), np.concatenate(pr), chance)


# ------------------------------------------------------------------------------------------ fitting
@dataclass
class TaskFit:
    """A fitted method for one task: step-1 and step-2 fits (or the single-step fit) and what they saw."""

    task: str
    method: Method
    data: TaskData
    step1: FitResult
    step2: FitResult | None
    single: FitResult | None = None

    @property
    def form(self) -> LossForm:
        return FORMS[self.method.form]

    @property
    def sigmoid(self) -> SigmoidForm:
        return SigmoidForm(self.data.chance if self.method.chance_floor else None)

    def predict(self, N, D, step1=None, step2=None) -> tuple[np.ndarray, np.ndarray]:
        """(intermediate feature, accuracy) at (N, D), broadcast; optional parameter rows [B, P] override."""
        if self.single is not None and step1 is None:
            x = self.single.x
            step1, step2 = x[:len(self.form.names)], x[len(self.form.names):]
        L = self.form.predict(self.step1.x if step1 is None else step1, N, D)
        s2 = self.step2.x if step2 is None else step2
        if np.ndim(s2) == 2:  # bootstrap rows: L is [B, ...]; evaluate row b's sigmoid at row b's loss
            full = self.sigmoid.full(s2)
            a, b, k, L0 = (c.reshape((-1,) + (1,) * (L.ndim - 1)) for c in full.T)
            return L, a * expit(k * (L - L0)) + b
        return L, self.sigmoid.predict(s2, L)

    def flags(self) -> list[str]:
        out = []
        for name, fit in (("step 1", self.step1), ("step 2", self.step2), ("single-step", self.single)):
            if fit is None or (self.single is not None and name != "single-step"):
                continue
            if not fit.converged:
                out.append(f"{name} fit did not converge ({fit.message})")
            ceiling = "b" in fit.at_bound and name == "step 2" and fit.params["b"] > 0.5
            bound = [p for p in fit.at_bound if not (ceiling and p == "b")]
            if ceiling:  # the sigmoid's ceiling, b in [0, 1], sits at 1 unless the points saturate
                out.append(f"{name} ceiling b at 1 (the points show no saturation; a lower true ceiling "
                           "would make this accuracy too high)")
            if bound:
                out.append(f"{name} parameters at a bound: {', '.join(bound)}")
        return out


def _check_points(data: TaskData, form: LossForm, n_params: int, what: str) -> None:
    runs = ", ".join(data.runs[:6])
    require(len(data.runs) >= n_params, f"task {data.task}",
            f"{what} has {len(data.runs)} runs ({runs}) but {n_params} parameters",
            f"fit at least {n_params} runs")
    key = np.unique(data.n) if form.name == "nd" else np.unique(data.n * data.d)
    require(len(key) >= 2, f"task {data.task}", f"{what} sees one model size only (runs {runs})",
            "a power law in N needs at least two sizes; add rungs of another size")


def _single_step_residuals(form: LossForm, sig: SigmoidForm, data: TaskData):
    """Batched residuals (Acc-hat - acc) and Jacobian of Acc(N, D) = sigmoid(L(N, D)) on final points."""
    logN, logD = np.log(data.n), np.log(data.d)
    P1 = len(form.names)

    def residual_fn(X, jac=True):
        y, J1 = form.log_loss(X[:, :P1], logN, logD, jac)
        L = np.exp(y)
        a, b, k, L0 = (c[:, None] for c in sig.full(X[:, P1:]).T)
        s = expit(k * (L - L0))
        r = a * s + b - data.acc
        if not jac:
            return r, None
        ds = a * s * (1 - s)
        dL = ds * k  # dAcc/dL
        J1 = J1 * (dL * L)[..., None]  # dL/dtheta = L dlogL/dtheta
        cols = [s, np.ones_like(s)] if sig.floor is None else [1 - s]
        J2 = np.stack(cols + [ds * (L - L0), -ds * k], -1)
        return r, np.concatenate([J1, J2], -1)

    return residual_fn


def fit_task(data: TaskData, method: Method | str) -> TaskFit:
    """Fit one method to one task's data (full data, no bootstrap)."""
    method = METHODS[method] if isinstance(method, str) else method
    form = FORMS[method.form]
    sig = SigmoidForm(data.chance if method.chance_floor else None)
    require(not method.chance_floor or data.chance is not None, f"task {data.task}",
            "has no chance level for method chance-floor", "add a `chance` column to the results table")
    _check_points(data, form, len(form.names), "step 1")
    step1 = fit_loss(form, data.n, data.d, data.feature)
    Lp = np.append(data.point_feature, 0.0)
    Ap = np.append(data.point_acc, 1.0)
    require(len(Lp) > len(sig.names), f"task {data.task}", f"step 2 has {len(Lp)} points", "evaluate more checkpoints")
    step2 = fit_sigmoid(sig, Lp, Ap)
    single = None
    if method.single_step:
        P = len(form.names) + len(sig.names)
        _check_points(data, form, P, "single-step fit")
        res = _single_step_residuals(form, sig, data)

        def fun_and_grad(x):
            r, J = res(x[None])
            return float(0.5 * r[0] @ r[0]), J[0].T @ r[0]

        bounds = [(None, None)] * len(form.names) + sig.bounds
        single = minimize_from_grid(fun_and_grad, np.concatenate([step1.x, step2.x])[None],
                                    list(form.names) + [f"sigmoid_{n}" for n in sig.names], bounds,
                                    residual_fn=lambda x: res(x[None], False)[0][0])
    return TaskFit(data.task, method, data, step1, step2, single)


def bootstrap(fit: TaskFit, n_samples: int = 1000, seed: int = 0):
    """Refit on `n_samples` resamplings of whole runs (their final point and all their checkpoints), warm
    started from the full fit and solved together. Returns (step1 rows, step2 rows, converged [B])."""
    data = fit.data
    R = len(data.runs)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(R, np.full(R, 1.0 / R), size=n_samples).astype(np.float64)  # [B, R]
    if fit.single is not None:
        P1 = len(fit.form.names)
        X, _, conv = minimize_batched(_single_step_residuals(fit.form, fit.sigmoid, data),
                                      np.broadcast_to(fit.single.x, (n_samples, len(fit.single.x))), counts,
                                      bounds=[(None, None)] * P1 + fit.sigmoid.bounds)
        return X[:, :P1], X[:, P1:], conv
    X1, _, c1 = fit_loss_batched(fit.form, fit.step1.x, data.n, data.d, data.feature, counts)
    w2 = np.concatenate([counts[:, data.point_run], np.ones((n_samples, 1))], 1)  # anchor (0, 1) always in
    X2, _, c2 = fit_sigmoid_batched(fit.sigmoid, fit.step2.x, np.append(data.point_feature, 0.0),
                                    np.append(data.point_acc, 1.0), w2)
    return X1, X2, c1 & c2


# ---------------------------------------------------------------------------------------- back-test
@dataclass
class Holdout:
    """Predictions for held-out runs from a fit on the others: per-run and mean absolute error."""

    method: str
    task: str
    fit_runs: list[str]
    test_runs: list[str]
    predicted: np.ndarray
    actual: np.ndarray
    error: float                   # mean |predicted - actual| accuracy
    loss_error: float | None       # mean relative error of the intermediate feature (two-step only)
    problem: str = ""              # why it could not be fitted (error is then NaN)


def holdout(cols: dict, task: str, fit_runs: list[str], test_runs: list[str], method: Method | str) -> Holdout:
    """Fit `method` on fit_runs, predict each test run's final accuracy (mean of its last 5)."""
    method = METHODS[method] if isinstance(method, str) else method
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_task(task_data(cols, task, fit_runs, method.feature), method)
            test = task_data(cols, task, test_runs, method.feature)
    except LadderError as e:
        nan = np.full(len(test_runs), np.nan)
        return Holdout(method.name, task, fit_runs, test_runs, nan, nan, float("nan"), None, str(e))
    L, acc = fit.predict(test.n, test.d)
    loss_err = None if method.single_step else float(np.mean(np.abs(L / test.feature - 1)))
    return Holdout(method.name, task, fit_runs, test_runs, acc, test.acc, float(np.mean(np.abs(acc - test.acc))),
                   loss_err)


def backtest(cols: dict, task: str, runs: list[str], methods=None) -> dict[str, Holdout]:
    """Predict the largest rung (all runs of the largest N) from the smaller rungs, for every method."""
    n_of, _ = run_sizes(cols, runs)
    largest = max(n_of.values())
    test = [r for r in runs if n_of[r] == largest]
    train = [r for r in runs if n_of[r] < largest]
    return {m: holdout(cols, task, train, test, m) for m in (methods or METHODS)}


def choose_method(bt: dict[str, Holdout]) -> str:
    """The method with the lowest back-test accuracy error (ties and NaNs: earlier in METHODS wins)."""
    errs = {m: h.error for m, h in bt.items() if np.isfinite(h.error)}
    require(bool(errs), "--method auto", "no method could be back-tested", "the ladder needs at least 3 sizes")
    return min(errs, key=errs.get)


# ---------------------------------------------------------------------------------------- prediction
@dataclass
class Prediction:
    """Everything `ladder predict` prints and writes: per (target, task) numbers, fits, back-tests, flags."""

    targets: dict[str, tuple[float, float]]
    runs: list[str]
    fits: dict[str, TaskFit]
    results: dict[str, dict[str, dict]]             # {target: {task: {loss, acc, acc_lo, acc_hi, method, ...}}}
    backtests: dict[str, dict[str, Holdout]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    samples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # {task: {"step1","step2"}} rows

    def to_json(self) -> dict:
        return self.results

    def table(self) -> str:
        """A plain-text table: one line per target x task with the interval, method and flags."""
        lines = [f"{'target':<12} {'task':<14} {'method':<13} {'loss':>7} {'acc':>6} {'95% interval':>15}  flags"]
        for t, per_task in self.results.items():
            for task, r in per_task.items():
                iv = f"[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]"
                lines.append(f"{t:<12} {task:<14} {r['method']:<13} {r['loss']:>7.4f} {r['acc']:>6.3f} {iv:>15}  "
                             + "; ".join(r["flags"]))
        if self.backtests:
            methods = list(next(iter(self.backtests.values())))
            lines += ["", "back-test: |predicted - actual| accuracy of the largest rung from the smaller ones",
                      f"{'task':<14} " + " ".join(f"{m:>13}" for m in methods)]
            for task, bt in self.backtests.items():
                lines.append(f"{task:<14} " + " ".join(f"{bt[m].error:>13.4f}" for m in methods))
        return "\n".join(lines)


def parse_target(spec: str) -> tuple[str, tuple[float, float]]:
    """'7B=6.9e9:3.9e12' -> ('7B', (6.9e9, 3.9e12))."""
    try:
        name, nd = spec.split("=", 1)
        n, d = (float(v) for v in nd.split(":"))
    except ValueError:
        raise LadderError(f"--target {spec!r}: expected NAME=N:D, e.g. 7B=6.9e9:3.9e12") from None
    require(n > 0 and d > 0 and np.isfinite(n * d), f"--target {name}", "N and D must be positive", "fix the numbers")
    return name, (n, d)


def predict(cols: dict, targets: dict[str, tuple[float, float]], *, method: str = "paper", runs=None,
            tasks=None, n_bootstrap: int = 1000, seed: int = 0, plot_dir=None) -> Prediction:
    """Fit `method` ("auto" = lowest back-test error per task) and predict each target's loss and accuracy.

    cols: a validated results table (ladder.results.read_table(path, validate=True)); targets: name ->
    (N, D). Intervals come from `n_bootstrap` resamplings of whole runs. Plots go to plot_dir if given.
    """
    require(method == "auto" or method in METHODS, "--method", f"unknown method {method!r}",
            f"choose auto or one of {', '.join(METHODS)}")
    require(bool(targets), "--target", "no targets given", "pass at least one NAME=N:D")
    runs = select_runs(cols, runs)
    tasks = list(dict.fromkeys(cols["task"].tolist())) if tasks is None else list(tasks)
    n_of, d_of = run_sizes(cols, runs)
    c_max = max(6 * n_of[r] * d_of[r] for r in runs)
    notes = []
    for name, (N, D) in targets.items():
        if 6 * N * D <= c_max or N <= max(n_of.values()):
            msg = (f"target {name} (N={N:.3g}, D={D:.3g}) is inside the ladder's range (largest rung N="
                   f"{max(n_of.values()):.3g}, C={c_max:.3g}): not an extrapolation")
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
    pred = Prediction(targets, runs, {}, {t: {} for t in targets}, warnings=notes)
    for task in tasks:
        if method == "auto":
            pred.backtests[task] = backtest(cols, task, runs)
            chosen = choose_method(pred.backtests[task])
        else:
            chosen = method
        m = METHODS[chosen]
        fit = fit_task(task_data(cols, task, runs, m.feature), m)
        pred.fits[task] = fit
        flags = fit.flags()
        s1 = s2 = None
        conv_frac = 1.0
        if n_bootstrap:
            s1, s2, conv = bootstrap(fit, n_bootstrap, seed)
            pred.samples[task] = {"step1": s1, "step2": s2}
            conv_frac = float(conv.mean())
            if conv_frac < 0.95:
                flags.append(f"bootstrap: {100 * (1 - conv_frac):.0f}% of refits did not converge")
        for name, (N, D) in targets.items():
            L, acc = fit.predict(N, D)
            r = {"loss": float(L), "acc": float(acc), "acc_lo": float(acc), "acc_hi": float(acc),
                 "loss_lo": float(L), "loss_hi": float(L), "method": chosen,
                 "feature": m.feature, "compute_ratio": 6 * N * D / c_max}
            if s1 is not None:
                Lb, ab = fit.predict(N, D, s1, s2)
                r["acc_lo"], r["acc_hi"] = (float(v) for v in np.nanpercentile(ab, INTERVAL))
                r["loss_lo"], r["loss_hi"] = (float(v) for v in np.nanpercentile(Lb, INTERVAL))
            f = list(flags)
            if r["compute_ratio"] > EXTRAPOLATION_FLAG:
                f.append(f"extrapolates {r['compute_ratio']:.0f}x compute past the largest rung (>100x)")
            r["flags"] = f
            if task in pred.backtests:
                r["backtest_error"] = {k: h.error for k, h in pred.backtests[task].items()}
            pred.results[name][task] = r
    if plot_dir is not None:
        from ladder.plots import plot_prediction

        plot_prediction(pred, cols, plot_dir)
    return pred


__all__ = ["METHODS", "PAPER_RUNS", "Method", "TaskData", "TaskFit", "Prediction", "Holdout", "select_runs",
           "task_data", "fit_task", "bootstrap", "holdout", "backtest", "choose_method", "parse_target",
           "predict"]
