"""Predict every training set of a table in one call: one law per set, never one across sets.

A ladder of data recipes (DataDecide: 25 recipes x 14 sizes, imported with `ladder import csv --map set=COL`)
is read to compare the recipes, so `ladder predict --set all` (or a comma list of names and globs) fits each
set on its own rows, exactly as `--set NAME` would, and a set that cannot be fitted (too few runs or sizes)
is reported in its own entry instead of stopping the others. `predict_each_set` is the loop, callable from a
notebook; commands/predict.py only prints and writes what it returns.
"""

from __future__ import annotations

import fnmatch
import re
import warnings

from ladder.errors import LadderError, require

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


def predict_each_set(cols: dict, targets: dict, sets: list[str], *, runs=None, tasks=None, progress=None,
                     **predict_kwargs) -> dict:
    """{set: Prediction, or the one-line reason (str) it could not be fitted}, each set fitted alone.

    cols: a validated table with a `set` column; runs: names or globs chosen within each set (run names are
    SET-RUN after the import, so '*-m0-*' picks the same runs in every set); tasks, predict_kwargs: as
    ladder.laws.predict.predict. A LadderError (too few runs or sizes, a task missing from a set's runs, a
    --runs pattern that matches none of its runs) ends only that set; the warnings of each set's fit are
    kept in its Prediction.warnings and, with progress, said with the set's name.
    """
    from ladder.commands.predict import one_training_set, require_tasks_in_runs
    from ladder.laws.predict import predict, select_runs

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
             f"{'95% interval':>15}"]
    for name, p in preds.items():
        if isinstance(p, str):
            lines.append(f"{name:<{sw}} not fitted (see its section above)")
            continue
        for target, per_task in p.results.items():
            for task, r in per_task.items():
                iv = f"[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]"
                lines.append(f"{name:<{sw}} {target:<{tw}} {task:<{kw}} {r['method']:<12} {r['loss']:>7.4f} "
                             f"{r['acc']:>6.3f} {iv:>15}")
    return "\n".join(lines)


def plot_dir_name(name: str) -> str:
    """A set's plot folder: its name with characters a path cannot safely hold replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"
