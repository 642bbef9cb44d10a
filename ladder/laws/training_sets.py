"""A table's training sets: pick one, or predict each on its own (one law per set, never one across sets).

A ladder of data recipes (DataDecide: 25 recipes x 14 sizes, imported with `ladder import csv --map set=COL`)
is read to compare the recipes, so each set is fitted on its own rows exactly as one set alone would be, and a
set that cannot be fitted (too few runs or sizes) is reported in its own entry instead of stopping the others.
This is the notebook's API (`predict_each_set(cols, targets, choose_sets(cols, "all"))`); `ladder predict
--set` (commands/predict.py) only prints and writes what it returns. Error messages name the CLI's options
(--set, --runs, --tasks) because that is where the same values are typed.
"""

from __future__ import annotations

import fnmatch
import warnings

import numpy as np

from ladder.errors import LadderError, require
from ladder.laws.predict import predict
from ladder.laws.prediction import number_cell
from ladder.laws.taskdata import select_runs

ALL = "all"


def names_several(spec: str | None) -> bool:
    """Whether a --set value asks for the per-set loop ('all', a comma list or a glob) rather than one set.
    Decided by what was typed, not by how many sets match, so the JSON layout never depends on the data."""
    return spec is not None and (spec.strip() == ALL or "," in spec or any(c in spec for c in "*?["))


def choose_sets(cols: dict, spec: str) -> list[str]:
    """Set names in table order for 'all' or a comma list of names and fnmatch globs; one that matches no set
    is an error naming the sets there are (a typo must not silently drop a recipe from the comparison)."""
    require("set" in cols, "--set", "the results table has no 'set' column",
            "import the table with --map set=COLUMN, or leave --set out")
    present = list(dict.fromkeys(cols["set"].tolist()))
    if spec.strip() == ALL:
        return present
    chosen: list[str] = []
    for pat in (p.strip() for p in spec.split(",")):
        if not pat:
            continue
        names = [s for s in present if fnmatch.fnmatchcase(s, pat)]
        require(bool(names), "--set", f"{pat!r} matches no training set of the table",
                f"choose from {', '.join(present[:8])}{'...' if len(present) > 8 else ''}, or 'all'")
        chosen += [n for n in names if n not in chosen]
    require(bool(chosen), "--set", "is empty", "name some sets, or 'all'")
    return chosen


def one_training_set(cols: dict, name: str | None, runs: str | None) -> dict:
    """The rows of one training set. A table with a `set` column (`ladder import csv --map set=COL`) holding
    several sets is refused unless --set (or --runs) picks one: one law across data mixes is not what any
    method here assumes, and a fit over them would answer for no mix at all."""
    sets = cols.get("set")
    if sets is None:
        require(name is None, "--set", "the results table has no 'set' column",
                "import the table with --map set=COLUMN, or leave --set out")
        return cols
    present = sorted(set(sets.tolist()))
    if name is not None:
        require(name in present, "--set", f"{name!r} is not a training set of the table",
                f"choose from {', '.join(present[:8])}{'...' if len(present) > 8 else ''}")
        keep = sets == name
        return {k: v[keep] for k, v in cols.items()}
    chosen = set(select_runs(cols, runs))
    used = sorted({s for s, r in zip(sets.tolist(), cols["run"].tolist()) if r in chosen})
    require(len(used) <= 1, "--set", f"the runs to fit come from {len(used)} training sets ({', '.join(used[:4])}"
            f"{'...' if len(used) > 4 else ''}): one law across data mixes is wrong",
            f"predict one set at a time: --set {used[0]} (or --runs with that set's runs)")
    return cols


def require_tasks_in_runs(cols: dict, runs: list[str], tasks: list[str] | None) -> None:
    """Every task to predict has rows in every run to fit (the laws fit one set of runs for all tasks). A
    table where a task was evaluated on some runs only (a benchmark added late) is one line naming the task,
    the runs without it and both ways out, before any fit (it was a StopIteration traceback)."""
    known = set(cols["task"].tolist())
    unknown = [t for t in tasks or () if t not in known]  # the same words as the fit's own check (taskfit)
    require(not unknown, "--tasks", f"task {unknown[0] if unknown else ''!r} is not in the table",
            f"choose from {sorted(known)}")
    in_fit = np.isin(cols["run"], runs)
    run_names, run_code = np.unique(cols["run"][in_fit], return_inverse=True)
    task_names, task_code = np.unique(cols["task"], return_inverse=True)  # a task in no fitted run is named too
    present = np.zeros((len(task_names), len(run_names)), dtype=bool)
    present[task_code[in_fit], run_code] = True
    for i, task in enumerate(task_names.tolist()):
        if tasks is not None and task not in tasks or present[i].all():
            continue
        lacking = run_names[~present[i]].tolist()
        having = sorted(set(cols["run"][cols["task"] == task].tolist()))  # in the table, fitted or not
        require(False, f"task {task}", f"has no rows in {len(lacking)} of the {len(run_names)} runs to fit "
                f"({', '.join(lacking[:4])}{'...' if len(lacking) > 4 else ''})",
                f"predict it from the runs that have it (--tasks {task} --runs {','.join(having[:3])}"
                f"{',...' if len(having) > 3 else ''}) or leave it out (--tasks without it)")


def predict_each_set(cols: dict, targets: dict, sets: list[str], *, runs=None, tasks=None, progress=None,
                     **predict_kwargs) -> dict:
    """{set: Prediction, or the one-line reason (str) it could not be fitted}, each set fitted alone.

    cols: a validated table with a `set` column; runs: names or globs chosen within each set (run names are
    SET-RUN after the import, so '*-m0-*' picks the same runs in every set); tasks, predict_kwargs: as
    ladder.laws.predict.predict. A LadderError (too few runs or sizes, a task missing from a set's runs, a
    --runs pattern that matches none of its runs) ends only that set; the warnings of each set's fit are
    kept in its Prediction.warnings and, with progress, said with the set's name.
    """
    out: dict = {}
    for k, name in enumerate(sets, 1):
        if progress:
            progress(f"set {name} ({k}/{len(sets)})")
        try:
            rows = one_training_set(cols, name, None)
            require_tasks_in_runs(rows, select_runs(rows, runs), tasks)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out[name] = predict(rows, targets, runs=runs, tasks=tasks, progress=progress, **predict_kwargs)
            if progress:
                for w in caught:
                    progress(f"set {name}: warning: {w.message}")
        except LadderError as e:
            out[name] = str(e)
            if progress:
                progress(f"set {name}: not fitted: {e}")
    return out


def to_json(preds: dict) -> dict:
    """{set: the single-set JSON ({target: {task: {...}}}), or {"problem": reason} for a set not fitted}."""
    return {name: ({"problem": p} if isinstance(p, str) else p.to_json()) for name, p in preds.items()}


def summary(preds: dict) -> str:
    """One line per set x target x task (method, loss, accuracy and its 95% interval, the numbers of each set's
    own table), sets in the order fitted: the recipes side by side, which 25 full tables do not show."""
    sw = max([8] + [len(name) for name in preds])
    fitted = [p for p in preds.values() if not isinstance(p, str)]
    tw = max([12] + [len(t) for p in fitted for t in p.results])
    kw = max([14] + [len(k) for p in fitted for per in p.results.values() for k in per])
    lines = [f"{'set':<{sw}} {'target':<{tw}} {'task':<{kw}} {'method':<12} {'loss':>7} {'acc':>6} "
             f"{'95% interval':>15}  flags"]
    for name, p in preds.items():
        if isinstance(p, str):
            lines.append(f"{name:<{sw}} not fitted (see its section above)")
            continue
        for target, per_task in p.results.items():
            for task, r in per_task.items():
                iv = f"[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]"
                lines.append(f"{name:<{sw}} {target:<{tw}} {task:<{kw}} {r['method']:<12} "
                             f"{number_cell(r['loss'], '7.4f')} {r['acc']:>6.3f} {iv:>15}  {' '.join(r['flags'])}")
    return "\n".join(lines)
