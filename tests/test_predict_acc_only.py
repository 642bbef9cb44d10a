"""An accuracy-only ladder (one final checkpoint per run, an LM loss and per-task accuracy, no task loss), as
other published ladders come: `ladder import csv --map` then `ladder predict` fit it without code, the methods
that need a task loss say they are skipped, and the default falls back to those that can run."""

import csv
import json

import numpy as np
import pytest

from ladder.cli import main
from ladder.importers import import_olmo
from ladder.results import read_table


def _acc_only_csv(shared_dir, path, tasks=("mmlu", "arc_easy")):
    """The OLMo ladder as a wide table: one row per run (its final checkpoint), N, D, C4 loss, acc_<task>."""
    final = {}
    for r in import_olmo(shared_dir / "reference/olmo_ladder/ladder-runs"):
        if r["task"] in tasks and r["step"] >= final.get((r["run"], r["task"]), {"step": -1})["step"]:
            final[(r["run"], r["task"])] = r
    runs = list(dict.fromkeys(run for run, _ in final))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "params", "tokens", "c4"] + [f"acc_{t}" for t in tasks])
        for run in runs:
            first = final[(run, tasks[0])]
            w.writerow([run, first["n"], first["d"], first["lm_loss"]] + [final[(run, t)]["acc"] for t in tasks])
    return path


def test_accuracy_only_ladder_imports_and_predicts_with_the_methods_it_allows(shared_dir, tmp_path, capsys):
    src = _acc_only_csv(shared_dir, tmp_path / "acc_only.csv")
    table = tmp_path / "results.csv"
    assert main(["import", "csv", str(src), "--map", "run=model,n=params,d=tokens,lm_loss=c4,acc=acc_*",
                 "-o", str(table)]) == 0
    cols = read_table(table, validate=True)  # a blank task loss is allowed; the fits that need it say so
    assert np.isnan(cols["loss"]).all() and len(set(cols["run"])) == 30 and (cols["step"] == 0).all()
    capsys.readouterr()

    out = tmp_path / "pred.json"
    assert main(["predict", str(table), "--target", "7b-4t", "--tasks", "mmlu", "--bootstrap", "20",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped paper, compute, chance-floor (needs a task loss; the table leaves blank every value of " \
           "'loss'): the ensemble weighs single-step, lm-loss" in printed
    r = json.loads(out.read_text())["7b-4t"]["mmlu"]
    assert r["method"] == "ensemble" and set(r["weights"]) == {"single-step", "lm-loss"}
    assert "FB" in r["flags"] and "needs a task loss" in r["flag_details"]["FB"]
    assert 0.25 < r["acc_lo"] < r["acc"] < r["acc_hi"] < 1 and r["loss"] is None  # no task loss: null in the JSON

    # a method that needs the task loss is one line naming the fix, not a traceback
    assert main(["predict", str(table), "--target", "7b-4t", "--tasks", "mmlu", "--method", "paper",
                 "--bootstrap", "0", "--out", str(tmp_path / "paper.json")]) != 0
    err = capsys.readouterr().err
    assert "needs a task loss" in err and "--method ensemble" in err and "Traceback" not in err
