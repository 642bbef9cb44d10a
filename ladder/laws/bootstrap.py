"""Bootstrap intervals of task fits: refits on resamplings of whole runs, all tasks' and methods' at once.

A run's final point and all its checkpoints are drawn together (they are one training run, not independent
points). Every method draws the same resamples for the same seed, so an ensemble's members line up sample by
sample (ensemble.py weighs them per sample).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ladder.laws import single_step as ss
from ladder.laws.chinchilla import FORMS, refit_loss_many
from ladder.laws.parallel import map_jobs
from ladder.laws.sigmoid import SigmoidForm, fit_sigmoid_batched
from ladder.laws.taskfit import TaskFit


def bootstrap(fit: TaskFit, n_samples: int = 1000, seed: int = 0) -> dict:
    """Refit on `n_samples` resamplings of whole runs (their final point and all their checkpoints), warm
    started from the full fit and solved together. Returns {"step1", "step2", "single": rows [B, P],
    "converged": [B]}. Every method draws the same resamples for the same seed, so an ensemble's samples
    line up. One fit of `bootstrap_many`."""
    return bootstrap_many([fit], n_samples, seed)[0]


def _content_key(*arrays) -> tuple:
    return tuple(hashlib.sha1(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest() for a in arrays)


def _draws(R: int, n_samples: int, seed: int) -> np.ndarray:
    """How often each of R runs is drawn in each of n_samples resamples (the same for every method)."""
    return np.random.default_rng(seed).multinomial(R, np.full(R, 1.0 / R), size=n_samples).astype(np.float64)


def _refit_job(state: dict, kind: str, *args):
    """One batch of bootstrap refits (a job of bootstrap_many, possibly in a worker process)."""
    n, seed = state["n_samples"], state["seed"]
    if kind == "step1":
        form_name, x0s, N, D, L = args
        X, _, c = refit_loss_many(FORMS[form_name], x0s, N, D, L, _draws(N.shape[1], n, seed))
    elif kind == "single":
        x0s, N, D, acc = args
        X, _, c = ss.refit_many(x0s, N, D, acc, _draws(N.shape[1], n, seed))
    else:  # "step2": one fit's sigmoid; the anchor (0, 1) always weighs 1
        floor, x0, L, acc, point_run, R = args
        w2 = np.concatenate([_draws(R, n, seed)[:, point_run], np.ones((n, 1))], 1)
        X, _, c = fit_sigmoid_batched(SigmoidForm(floor), x0, np.append(L, 0.0), np.append(acc, 1.0), w2)
    return X, c


def bootstrap_many(fits: list[TaskFit], n_samples: int = 1000, seed: int = 0, workers: int | None = None) -> list[dict]:
    """`bootstrap` for many fits at once (every task's, every ensemble member's), each equal to its own:
    the step-1 refits of all fits with the same form and number of runs go through one solver call
    (chinchilla.refit_loss_many), likewise the single-step refits (single_step.refit_many): a bootstrap's
    cost is mostly the few resamples that crawl for hundreds of iterations, which then share those
    iterations. A step with equal data in several fits (a shared step, or lm-loss's step 1, which sees the
    same LM loss for every task) is refitted once. Step-2 refits (~1,350 points each) are one job per fit.
    The jobs run on `workers` processes (ladder.laws.parallel)."""
    outs = [{} for _ in fits]
    step1, single = {}, {}  # group -> {content key: [x0, N, D, y, [fit indices]]}
    step2 = {}              # id(step 2 fit) -> [args, [fit indices]]
    for i, fit in enumerate(fits):
        data = fit.data
        if fit.method.single_step == "paper":
            key = _content_key(fit.single.x, data.n, data.d, data.acc)
            single.setdefault(len(data.runs), {}).setdefault(
                key, [fit.single.x, data.n, data.d, data.acc, []])[4].append(i)
            continue
        if fit.step1 is not None:
            N, D = fit._step1_inputs(data.n, data.d, data.fpt)
            key = _content_key(fit.step1.x, N, D, data.feature)
            step1.setdefault((fit.form.name, len(data.runs)), {}).setdefault(
                key, [fit.step1.x, N, D, data.feature, []])[4].append(i)
        if fit.step2 is not None:
            step2.setdefault(id(fit.step2), [(fit.sigmoid.floor, fit.step2.x, data.point_feature, data.point_acc,
                                              data.point_run, len(data.runs)), []])[1].append(i)
    jobs, owners = [], []  # the long batched jobs first, so the step-2 jobs fill in around them
    for (form_name, _), problems in step1.items():
        items = list(problems.values())
        jobs.append(("step1", form_name, *(np.array([it[k] for it in items]) for k in range(4))))
        owners.append(("step1", [it[4] for it in items]))
    for problems in single.values():
        items = list(problems.values())
        jobs.append(("single", *(np.array([it[k] for it in items]) for k in range(4))))
        owners.append(("single", [it[4] for it in items]))
    for args, idx in step2.values():
        jobs.append(("step2", *args))
        owners.append(("step2", [idx]))
    results = map_jobs(_refit_job, jobs, {"n_samples": n_samples, "seed": seed}, workers)
    conv = [np.ones(n_samples, dtype=bool) for _ in fits]
    for (part, groups), (X, C) in zip(owners, results):
        if part == "step2":
            X, C = X[None], C[None]
        for u, idx in enumerate(groups):
            for i in idx:
                outs[i][part] = X[u]
                conv[i] &= C[u]
    for out, c in zip(outs, conv):
        out["converged"] = c
    return outs
