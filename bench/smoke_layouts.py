"""What each smoke-ladder layout's self-check would report, from rungs already trained (docs/run.md, "The smoke
ladder"): training is deterministic and a rung's rows do not depend on the other rungs, so fitting the predictor
(`ensemble`, 200 bootstrap samples, as `ladder run` calls it) on a subset of measured rungs gives exactly what
that layout's job would print, against the one measured check model.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/smoke_layouts.py RUN_DIR [RUN_DIR ...] \
        --layout "10 rungs=45k-*,93k-*,160k-*,236k-0.5xC" --layout "13 rungs=*"

Each RUN_DIR is a `ladder run` output directory (its collected results.csv; a run whose predict stage
failed for too few rungs still has one), and the self-check's (rungs/check-*) rows are the measurement. A layout is NAME=PATTERNS (fnmatch
patterns of rung names, comma-separated).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import warnings
from pathlib import Path

import numpy as np

from ladder import results
from ladder.laws.predict import FINAL_WINDOW, predict
from ladder.rundir import read_results
from ladder.run import _check_task


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--layout", action="append", required=True)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--method", default="ensemble")
    a = p.parse_args()
    rows, check_rows, check_plan, target = {}, [], None, None
    for run in map(Path, a.runs):
        with open(run / "results.csv", newline="") as f:  # the collected table (with its chance column)
            for row in csv.DictReader(f):
                rows.setdefault(row["run"], []).append(row)
        for rung in sorted((run / "rungs").glob("check-*")):
            check_rows, check_plan = read_results(rung), json.loads((run / "self_check_plan.json").read_text())
        if (run / "plan.json").exists() and target is None:
            plan = json.loads((run / "plan.json").read_text())
            target = {t["name"]: (float(t["n"]), float(t["tokens"])) for t in plan["targets"]}
    c = check_plan["rungs"][0]
    targets = dict(target, **{c["name"]: (float(c["n"]), float(c["tokens"]))})
    measured = results.validate_table(results.columns(check_rows, "check"), "check")
    print(f"{len(rows)} rungs read; check {c['name']}; {a.method}, {a.bootstrap} bootstrap samples")
    for layout in a.layout:
        name, _, patterns = layout.partition("=")
        chosen = [r for r in rows if any(fnmatch.fnmatch(r, pat.strip()) for pat in patterns.split(","))]
        # the plan's order (size, then multiple), as `ladder collect` writes the table: the bootstrap resamples
        # by row position, so another order gives other intervals
        chosen.sort(key=lambda r: (float(rows[r][0]["n"]), float(rows[r][0]["multiple"])))
        cols = results.validate_table(results.columns([x for r in chosen for x in rows[r]], name), name)
        ns = sorted({float(n) for n in cols["n"]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = predict(cols, targets, method=a.method, n_bootstrap=a.bootstrap, seed=0)
        table = {t: _check_task(measured, t, v, FINAL_WINDOW) for t, v in pred.to_json()[c["name"]].items()}
        cells = []
        for t, r in sorted(table.items()):
            cells.append(f"{t.split('_')[0]} {r['loss_err']:+.1%} / {r['acc_err'] * 100:+.1f}"
                         f" [{r['acc_lo']:.3f}, {r['acc_hi']:.3f}] {'covers' if r['covered'] else 'MISSES'}")
        hits = sum(abs(r["loss_err"]) <= 0.05 and abs(r["acc_err"]) <= 0.03 and r["covered"] for r in table.values())
        print(f"{name}: {len(chosen)} rungs, {len(ns)} sizes over {ns[-1] / ns[0]:.1f}x | " + " | ".join(cells)
              + f" | all three criteria on {hits} of {len(table)}")


if __name__ == "__main__":
    main()
