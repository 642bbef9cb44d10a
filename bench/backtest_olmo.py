"""The back-test tables of docs/laws.md: every split x task x method on the published OLMo ladder, the
default ensemble's weights, its leave-one-split-out error and interval coverage, as markdown.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/backtest_olmo.py [--tasks mmlu,arc_easy] [--acc-only]

--acc-only cuts the ladder to what other published ladders give (each run's final checkpoint, no task loss, C4
loss kept): the table of docs/laws.md "The default against the paper-style method on an accuracy-only ladder".

Needs ../shared/reference/olmo_ladder (exits otherwise). Minutes on a shared 2-core machine (the suite is
7 splits x 8 tasks x 5 methods of fits; about 13 CPU-s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "reference"

from ladder.laws.backtest import run_suite  # noqa: E402
from ladder.laws.ensemble import MENU, _cells, _combine, calibrate, weights_from  # noqa: E402


def tables(suite, cal) -> str:
    """Markdown: task x method (pooled mean |error|, points), split x method, the ensemble, coverage."""
    methods = list(cal.weights)
    tasks = list(suite[0])
    c = _cells(suite, methods)
    ens_all = _combine(c["err"], cal.weights, methods)
    # leave-one-split-out ensemble errors (weights refitted without the split): the honest score
    loso = np.full(len(ens_all), np.nan)
    for s in np.unique(c["split"]):
        w, _ = weights_from(c["err"][c["split"] != s], methods)
        te = c["split"] == s
        loso[te] = _combine(c["err"][te], w, methods)
    cols = methods + ["ensemble (LOSO)"]

    def row(name, mask):
        vals = [np.mean(np.abs(c["err"][mask, j])) for j in range(len(methods))] + [np.mean(np.abs(loso[mask]))]
        best = np.nanargmin(vals)
        return f"| {name} | " + " | ".join(("**%.2f**" if j == best else "%.2f") % (100 * v)
                                          for j, v in enumerate(vals)) + " |"

    head = "| | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols)
    out = ["Mean |predicted - measured| accuracy in points over every split (rows: tasks), best in bold; "
           "`ensemble (LOSO)` is the default with its weights refitted without the cell's split.", "", head]
    out += [row(t, c["task"] == t) for t in tasks]
    out.append(row("**all tasks**", np.ones(len(loso), bool)))
    names = [next(iter(next(iter(per.values())).values())).split for per in suite]
    out += ["", "Per split (all tasks):", "", head.replace("| |", "| split |", 1)]
    out += [row(f"{n} (distance g {np.min(c['g'][c['split'] == i]):.2f}-{np.max(c['g'][c['split'] == i]):.2f})",
                c["split"] == i)
            for i, n in enumerate(names)]
    rmse = {m: 100 * np.sqrt(cal.mse[m]) for m in methods}
    out += ["", "RMSE over all cells (points): " + ", ".join(f"{m} {v:.2f}" for m, v in rmse.items())
            + f", ensemble (LOSO) {100 * np.sqrt(np.mean(loso ** 2)):.2f}.",
            "Bias (mean predicted - measured, points): " + ", ".join(
                f"{m} {100 * np.mean(c['err'][:, j]):+.2f}" for j, m in enumerate(methods))
            + f", ensemble (LOSO) {100 * np.mean(loso):+.2f}.",
            "", "Weights on the full suite: " + ", ".join(f"`{m}` {w:.3f}" for m, w in cal.weights.items()) + ".",
            f"Interval scale q = {cal.q_acc:.4f} accuracy per unit of g^{cal.growth:g}"
            + (f" (loss: {cal.q_loss:.4f} relative)" if np.isfinite(cal.q_loss) else " (no task loss in the table)")
            + f"; leave-one-split-out coverage of the 95% interval: **{cal.coverage:.1%}** of {cal.n_cells} "
            f"accuracy cells ({cal.far_coverage:.1%} of the {cal.n_far} at g > 1.5)"
            + (f", {cal.loss_coverage:.1%} for the task loss." if np.isfinite(cal.loss_coverage) else "."),
            "Error against distance (ensemble, LOSO): " + ", ".join(
                f"g = 1 (inside): {100 * np.mean(np.abs(loso[m])):.2f}" if hi == 1 else
                f"g in ({lo}, {hi}]: {100 * np.mean(np.abs(loso[m])):.2f}"
                for lo, hi, m in ((lo, hi, ((c["g"] > lo) | (lo == 1) & (c["g"] == 1)) & (c["g"] <= hi))
                                  for lo, hi in ((1, 1), (1, 1.25), (1.25, 9)))
                if m.any()) + " points (mean |error|)."]
    return "\n".join(out)


def acc_only_table(cols: dict) -> dict:
    """The ladder as other published ladders give it: one row per run and task (its final checkpoint), N, D,
    the C4 LM loss and accuracy; no task loss, no FLOPs."""
    keep = np.zeros(len(cols["run"]), dtype=bool)
    for key in set(zip(cols["run"].tolist(), cols["task"].tolist())):
        m = np.flatnonzero((cols["run"] == key[0]) & (cols["task"] == key[1]))
        keep[m[np.argmax(cols["step"][m])]] = True
    out = {k: v[keep] for k, v in cols.items() if k not in ("flops",)}
    out["loss"] = np.full(int(keep.sum()), np.nan)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", help="comma list (default: all 8)")
    ap.add_argument("--acc-only", action="store_true",
                    help="the ladder as an accuracy-only table: each run's final checkpoint, no task loss, C4 loss "
                    "kept (acc_only_table)")
    args = ap.parse_args()
    if not (SHARED / "olmo_ladder").is_dir():
        sys.exit("needs ../shared/reference/olmo_ladder")
    from ladder.importers import import_olmo
    from ladder.laws.predict import select_runs, unavailable
    from ladder.results import append_rows, read_table

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        append_rows(Path(d) / "olmo.csv", import_olmo(SHARED / "olmo_ladder"))
        cols = read_table(Path(d) / "olmo.csv", validate=True)
    if args.acc_only:
        cols = acc_only_table(cols)
    tasks = args.tasks.split(",") if args.tasks else sorted(set(cols["task"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        menu = [m for m in MENU if m not in unavailable(cols, MENU)]  # as `ladder predict` does
        suite = run_suite(cols, tasks, select_runs(cols), menu, progress=lambda m: print(m, file=sys.stderr))
    print(tables(suite, calibrate(suite, menu)))


if __name__ == "__main__":
    main()
