"""One task, one method: the fit and its predictions (the fitting data: taskdata.py; the bootstrap: bootstrap.py).

Bhagia et al. 2024 ("Establishing Task Scaling Laws via Compute-Efficient Model Ladders"): step 1 fits the
task loss of each run's final checkpoint as L(N, D) (chinchilla.py), step 2 fits accuracy as a sigmoid of
task loss on all intermediate checkpoints (sigmoid.py), and the prediction chains them. The paper's
ablations and our variants each change one ingredient (`METHODS`, table in docs/laws.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ladder.errors import LadderError, require
from ladder.laws import single_step as ss
from ladder.laws.chinchilla import FORMS, LossForm, fit_loss_tasks
from ladder.laws.fitting import FitResult
from ladder.laws.sigmoid import SigmoidForm, fit_sigmoid_many
from ladder.laws.taskdata import TaskData


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
    method = METHODS[method] if isinstance(method, str) else method
    masks = np.asarray(masks, dtype=bool).reshape(len(masks), -1)
    bases = [list(b) if b is not None else [None] * len(masks) for b in (bases or [None] * len(datas))]
    subs = [[data.subset(m) for m in masks] for data in datas]
    outs, oks = [], []
    for data, sub in zip(datas, subs):
        out, ok = _fittable(data, sub, method)
        outs.append(out), oks.append(ok)
    if method.single_step == "paper":
        _fit_single_steps(datas, masks, method, bases, subs, outs, oks, quick)
        return outs
    step1 = _step1_fits(datas, masks, method, bases, oks, quick)
    for t, data in enumerate(datas):
        step2 = _step2_fits(data, masks, method, bases[t], subs[t], outs[t], oks[t], quick)
        for s in oks[t]:
            if outs[t][s] is None:
                outs[t][s] = TaskFit(data.task, method, subs[t][s], step1[t][s], step2[s])
    return outs


def _fittable(data: TaskData, subs: list[TaskData], method: Method) -> tuple[list, list[int]]:
    """Which subsets of one task the method can fit, checked before any descent so that one degenerate
    back-test split costs an error message, not a failed fit: ([S] None or the LadderError saying why,
    the fittable subsets' indices)."""
    form = FORMS[method.form]
    out: list = [None] * len(subs)
    ok = []
    for s, sb in enumerate(subs):
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
    return out, ok


def _fit_single_steps(datas, masks, method: Method, bases, subs, outs, oks, quick: bool) -> None:
    """The single-step fits of every task and fittable subset, in one batched call; each TaskFit (into outs)
    keeps its base's paper step 1 and step 2 where they exist, for the reported loss and the plots."""
    todo = [t for t, ok in enumerate(oks) if ok]
    singles = ss.fit_single_step_tasks([(datas[t].n, datas[t].d, datas[t].acc, datas[t].chance,
                                         masks[oks[t]].astype(np.float64)) for t in todo], top_k=1 if quick else 4)
    for t, fits in zip(todo, singles):
        for s, single in zip(oks[t], fits):
            base = bases[t][s]
            s1 = base.step1 if base is not None and base.method.form == "nd" else None
            s2 = base.step2 if base is not None and not base.method.chance_floor else None
            outs[t][s] = TaskFit(datas[t].task, method, subs[t][s], s1, s2, single)


def _shares_feature(base: TaskFit | None, method: Method) -> bool:
    """Whether `base` was fitted on the intermediate feature `method` uses (so its steps may be reused)."""
    return base is not None and base.method.feature == method.feature


def _step1_fits(datas, masks, method: Method, bases, oks, quick: bool) -> list[dict]:
    """Per task {subset: step-1 fit}: a base's step 1 where it has the same feature and form (the ensemble
    fits each piece once), every other one fitted in one batched descent over all tasks and subsets."""
    form = FORMS[method.form]
    fit1 = [[s for s in ok if not (_shares_feature(bases[t][s], method) and bases[t][s].method.form == method.form
                                   and bases[t][s].step1 is not None)] for t, ok in enumerate(oks)]
    step1 = [{s: bases[t][s].step1 for s in ok if s not in fit1[t]} for t, ok in enumerate(oks)]
    todo = [t for t in range(len(datas)) if fit1[t]]
    problems = []
    for t in todo:
        data = datas[t]
        inputs = TaskFit(data.task, method, data, None, None)._step1_inputs(data.n, data.d, data.fpt)
        problems.append((*inputs, data.feature, masks[fit1[t]].astype(np.float64)))
    for t, fits in zip(todo, fit_loss_tasks(form, problems, **(QUICK if quick else {})) if problems else []):
        step1[t] |= dict(zip(fit1[t], fits))
    return step1


def _step2_fits(data: TaskData, masks, method: Method, bases: list, subs: list, outs: list, ok: list[int],
                quick: bool) -> dict:
    """One task's {subset: step-2 fit}: a base's step 2 where it has the same feature and floor, the others
    fitted together (sigmoid.fit_sigmoid_many) on the task's points plus the anchor (L=0, acc=1). A subset
    with no more points than the sigmoid has parameters gets its LadderError in outs instead."""
    sig = SigmoidForm(data.chance if method.chance_floor else None)
    step2, fit2 = {}, []
    for s in ok:
        base = bases[s]
        if _shares_feature(base, method) and base.method.chance_floor == method.chance_floor \
                and base.step2 is not None:
            step2[s] = base.step2
            continue
        n_points = len(subs[s].point_feature) + 1
        if n_points > len(sig.names):
            fit2.append(s)
        else:
            outs[s] = LadderError(f"task {data.task}: step 2 has {n_points} points; evaluate more checkpoints")
    if fit2:
        Lp, Ap = np.append(data.point_feature, 0.0), np.append(data.point_acc, 1.0)
        W2 = np.concatenate([masks[fit2][:, data.point_run], np.ones((len(fit2), 1), dtype=bool)], 1)
        step2 |= dict(zip(fit2, fit_sigmoid_many(sig, Lp, Ap, W2.astype(np.float64),
                                                 **({"top_k": 8, "polish": 1} if quick else {}))))
    return step2
