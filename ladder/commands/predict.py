"""`ladder predict RESULTS --target T ... | --plan PLAN [--runs ...] [--method ...] -o pred.json`.

Fits the two-step laws (docs/laws.md) per task, prints a table with intervals and flags, writes the JSON
{target: {task: {loss, acc, acc_lo, acc_hi, method, ...}}} and the step-1 / step-2 / chained PNGs.
With --set all (or a list of sets): the same per training set, one JSON {set: that JSON}
(ladder.laws.training_sets, which a notebook calls directly).
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from pathlib import Path

import numpy as np

from ladder import storage
from ladder.commands.common import (TARGET_HELP, add_out, check_out, path_arg, plan_targets, resolve_targets,
                                    split_list, whole)
from ladder.errors import require
from ladder.laws import MAX_BOOTSTRAP

EXAMPLES = """
ladder predict results.csv --plan plan.json -o pred.json
ladder predict results.csv --target 7b-4t --target 13b-5t -o pred.json
ladder predict results.csv --target 7B=6.89e9:3.95e12 --method auto --holdout '3B-*xC' -o pred.json
ladder predict mixes.csv --set dolma --target 7b-4t -o pred-dolma.json
ladder predict mixes.csv --set all --target 1b-100b -o pred-sets.json    # one law per set, one JSON
ladder predict mixes.csv --set 'dolma*,c4' --target 1b-100b -o pred-sets.json
"""


def add_arguments(parser) -> None:
    parser.add_argument("results", help="results table (CSV, docs/results.md)")
    from ladder.plan import TARGETS

    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", action="append", metavar="T", help=TARGET_HELP.format(presets=", ".join(TARGETS))
                       + "; NAME=N:D:F adds FLOPs per token F for the compute method (default: extrapolated "
                       "from the ladder)")
    which.add_argument("--plan", type=path_arg,
                       help="predict the targets of this plan file (written by `ladder plan -o`)")
    parser.add_argument("--runs", help="runs to fit: comma-separated names or globs ('paper' = the paper's 16); "
                        "default: where the paper's 16 are present, every size's 1xC-10xC runs (the 16 and "
                        "the 3B runs; no 0.5xC, no reruns: docs/laws.md), else all runs")
    parser.add_argument("--set", dest="training_set", metavar="NAME|all", help="fit only the runs of this training set "
                        "(the table's `set` column, `ladder import csv --map set=COL`); required when it holds "
                        "several. 'all', or comma-separated names and globs: fit each set on its own (one law "
                        "per set), a table per set, one JSON {set: prediction}, plots in PLOTS/SET/; a set "
                        "that cannot be fitted gets {\"problem\": ...} and exit code 1")
    parser.add_argument("--tasks", help="comma-separated tasks (default: all in the table)")
    parser.add_argument("--method", default="ensemble",
                        help="ensemble (default: back-tested weights, calibrated intervals) | auto | paper | "
                        "single-step | compute | lm-loss | chance-floor (docs/laws.md)")
    parser.add_argument("--bootstrap", type=whole(0, MAX_BOOTSTRAP), default=1000,
                        help=f"bootstrap samples for intervals (0: none; at most {MAX_BOOTSTRAP:,})")
    parser.add_argument("--seed", type=whole(0), default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--workers", type=whole(1), help="processes for the per-task fits and the bootstrap "
                        "(default: the cores available, or LADDER_FIT_WORKERS; results do not depend on it)")
    parser.add_argument("--holdout", help="also predict these runs (names or globs) from the fitted runs with "
                        "every method and report the errors, e.g. '3B-*xC'")
    add_out(parser, "prediction JSON to write (with --holdout also OUT.holdout.json)", required=True)
    parser.add_argument("--plots", help="directory for PNGs (default: next to --out)")


def run(args) -> int:
    from ladder.laws.predict import predict, select_runs
    from ladder.laws.training_sets import names_several, one_training_set, require_tasks_in_runs
    from ladder.plots import plot_prediction
    from ladder.results import read_table

    cols = read_table(args.results, validate=True)
    if names_several(args.training_set):
        return run_each_set(args, cols)
    cols = one_training_set(cols, args.training_set, args.runs)
    out, targets, plot_dir = _outputs_and_targets(args)
    note_unused_flops(cols, targets)
    tasks = split_list(args.tasks)
    runs, test = _runs_to_fit_and_hold_out(cols, args) if args.holdout else (args.runs, None)
    require_tasks_in_runs(cols, select_runs(cols, runs), tasks)
    if args.plots:
        check_out(plot_dir / "chain.png", True, "--plots")  # a file or read-only place: said now, not after the fit
    with storage.all_or_nothing(out.parent, plot_dir):  # the JSON, the plots and the holdout report land together
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = predict(cols, targets, method=args.method, runs=runs, tasks=tasks,
                           n_bootstrap=args.bootstrap, seed=args.seed,
                           progress=lambda msg: print(msg, flush=True), workers=args.workers)
            plot_prediction(pred, cols, plot_dir)
        for w in caught:
            print(f"warning: {w.message}")
        print(f"fitted runs: {', '.join(pred.runs)}")
        print(pred.table())
        storage.write_json(out, pred.to_json())
        print(f"wrote {out} and plots step1.png, step2.png, chain.png in {plot_dir}")
        if args.holdout:
            _report_held_out(cols, pred, test, _holdout_path(out))
    return 0


def _outputs_and_targets(args) -> tuple[Path, dict, Path]:
    """The JSON path, the targets and the plot folder, every option checked before any fit (an existing -o
    or a bad target found after minutes of fitting would waste them); both ways of predicting share it."""
    out = check_out(args.out, args.overwrite)
    if args.holdout:
        check_out(_holdout_path(out), args.overwrite)
    targets = plan_targets(args.plan) if args.plan else resolve_targets(args.target)
    plot_dir = Path(args.plots) if args.plots else out.parent
    for flag, value in (("--tasks", args.tasks), ("--runs", args.runs)):  # "" would silently mean "all"
        require(value is None or bool(split_list(value)), flag, "is empty",
                "name some, or leave the option out for all")
    return out, targets, plot_dir


def _holdout_path(out: Path) -> Path:
    return out.with_name(out.stem + ".holdout.json")


def _runs_to_fit_and_hold_out(cols: dict, args) -> tuple[list[str], list[str]]:
    """(runs to fit, runs held out), checked before the fit: a held-out run that is also fitted "predicts"
    itself (error 0). Without --runs every run not held out is fitted."""
    from ladder.laws.predict import select_runs

    test = select_runs(cols, args.holdout, field="--holdout")
    fitted = select_runs(cols, args.runs)
    both = [r for r in fitted if r in test]
    require(args.runs is None or not both, "--holdout", f"runs {', '.join(both[:4])} are also fitted (--runs)",
            "hold out runs that --runs leaves out")
    runs = [r for r in fitted if r not in test]
    require(bool(runs), "--holdout", "holds out every run, so none is left to fit", "hold out fewer runs")
    return runs, test


def _report_held_out(cols: dict, pred, test: list[str], path: Path) -> None:
    """Every method's accuracy error on the held-out runs: printed as a table, written as JSON to `path`."""
    from ladder.laws.predict import holdout_report

    report = holdout_report(cols, pred, test)
    methods = list(next(iter(report.values())))
    print(f"\nheld-out runs {', '.join(test)}: |predicted - actual| accuracy, fitted on the runs above")
    print(f"{'task':<14} " + " ".join(f"{m:>13}" for m in methods))
    for task, per in report.items():
        print(f"{task:<14} " + " ".join(f"{per[m]['error']:>13.4f}" if math.isfinite(per[m]["error"])
                                        else f"{'n/a':>13}" for m in methods))
    print("n/a: the method cannot be fitted to these runs (the reason is in the JSON's 'problem')")
    storage.write_json(path, report)
    print(f"wrote {path}")


def run_each_set(args, cols: dict) -> int:
    """--set all | A,B,GLOB*: ladder.laws.training_sets.predict_each_set, printed and written; exit code 1
    when some set could not be fitted (its reason is in its JSON entry), 0 when every set was."""
    from ladder.laws import training_sets
    from ladder.plots import plot_prediction

    require(not args.holdout, "--holdout", "is for one training set", "add --set NAME to hold out its runs")
    sets = training_sets.choose_sets(cols, args.training_set)
    folders = plot_dir_names(sets)
    out, targets, plot_dir = _outputs_and_targets(args)
    note_unused_flops(cols, targets)
    with storage.all_or_nothing(out.parent, plot_dir):
        out.parent.mkdir(parents=True, exist_ok=True)
        preds = training_sets.predict_each_set(
            cols, targets, sets, runs=args.runs, tasks=split_list(args.tasks), method=args.method,
            n_bootstrap=args.bootstrap, seed=args.seed, workers=args.workers,
            progress=lambda msg: print(msg, flush=True))
        for name, pred in preds.items():
            print(f"\n== set {name}")
            if isinstance(pred, str):
                print(f"not fitted: {pred}")
                continue
            plot_prediction(pred, training_sets.one_training_set(cols, name, None),
                            plot_dir / folders[name])
            print(f"fitted runs: {', '.join(pred.runs)}" + (f"; plots in {plot_dir / folders[name]}"
                                                              if folders[name] != name else ""))
            print(pred.table())
        print("\nevery set (the tables above, side by side):")
        print(training_sets.summary(preds))
        storage.write_json(out, training_sets.to_json(preds))
        failed = [name for name, p in preds.items() if isinstance(p, str)]
        print(f"\nwrote {out} ({len(preds) - len(failed)} of {len(preds)} sets predicted) and plots in "
              f"{plot_dir}/SET/")
        if failed:
            print(f"not fitted: {', '.join(failed)} (the reasons are in the JSON's 'problem')")
    return 1 if failed else 0


def note_unused_flops(cols: dict, targets: dict) -> None:
    """A target's F (NAME=N:D:F) is read by the compute method only against a table's `flops` column: without
    one, compute is 6ND for the ladder and the target alike, and F is not used. Said, not silently dropped."""
    given = [name for name, v in targets.items() if len(v) > 2]
    if given and ("flops" not in cols or not np.isfinite(cols["flops"]).any()):
        print(f"note: --target {', '.join(given)}: F is not used; the table has no flops column, so the compute "
              "method takes 6ND for the ladder and the targets alike (docs/laws.md, Data each method sees)")


def plot_dir_names(sets: list[str]) -> dict[str, str]:
    """Each set's plot folder (plot_dir_name), with a digest added to names that differ only in case ('C4',
    'c4'): one folder on a case-insensitive disk (macOS, Windows)."""
    folders = {s: plot_dir_name(s) for s in sets}
    folded = [f.casefold() for f in folders.values()]
    return {s: f if folded.count(f.casefold()) == 1 else f"{f}-{hashlib.sha256(s.encode()).hexdigest()[:6]}"
            for s, f in folders.items()}


def plot_dir_name(name: str) -> str:
    """A set's plot folder: its name with characters a path cannot safely hold replaced by '_', and then, when
    that changed it, a digest of the name: before, sets 'a/b' and 'a_b' (or 'c4 en' and 'c4_en', or two
    non-Latin names of one length) shared a folder and the second set's plots replaced the first's."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
