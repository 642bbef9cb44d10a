"""`ladder import olmo` and results-table validation."""

import csv

import numpy as np
import pytest

from ladder.cli import main
from ladder.errors import LadderError
from ladder.importers import OLMO_N, import_olmo_run
from ladder.results import append_rows, read_table, validate_table


def test_olmo_run_import_weights_mmlu_and_sets_n(shared_dir):
    path = shared_dir / "reference/olmo_ladder/ladder-runs/370M-2xC.csv"
    rows = import_olmo_run(path)
    with open(path) as f:
        last = list(csv.DictReader(f))[-1]
    mmlu = [r for r in rows if r["task"] == "mmlu"][-1]
    w = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
    acc = sum(v * float(last[f"eval/downstream/mmlu_{k}_test_rc_5shot_len_norm"]) for k, v in w.items())
    bpb = sum(v * float(last[f"eval/downstream_bpb/mmlu_{k}_test_rc_5shot_bpb"]) for k, v in w.items())
    assert mmlu["acc"] == pytest.approx(acc) and mmlu["loss"] == pytest.approx(bpb)
    assert mmlu["n"] == OLMO_N["370M"] == 371_262_464 and mmlu["step"] == int(float(last["_step"]))
    assert mmlu["d"] == float(last["throughput/total_tokens"]) and mmlu["multiple"] == 2.0
    hs = [r for r in rows if r["task"] == "hellaswag"][-1]
    assert hs["acc"] == pytest.approx(float(last["eval/downstream/hellaswag_val_rc_5shot_len_norm"]))
    assert {r["task"] for r in rows} == {"mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa",
                                         "socialiqa", "openbookqa"}


def test_import_cli_writes_a_valid_table_and_refuses_to_overwrite(shared_dir, tmp_path, capsys):
    out = tmp_path / "olmo.csv"
    runs = shared_dir / "reference/olmo_ladder/ladder-runs"
    assert main(["import", "olmo", str(runs), "-o", str(out)]) == 0
    cols = read_table(out, validate=True)
    assert len(set(cols["run"])) == 30 and set(cols["size"]) == {"190M", "370M", "760M", "1B", "3B"}
    assert main(["import", "olmo", str(runs), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def _table(tmp_path, changes=None):
    rows = [{"run": f"r{i}", "n": 1e8, "d": 1e9 * (j + 1), "step": j, "task": "t", "loss": 1.0, "acc": 0.4}
            for i in range(2) for j in range(3)]
    for (i, k), v in (changes or {}).items():
        rows[i][k] = v
    path = tmp_path / "t.csv"
    append_rows(path, rows)
    return path


@pytest.mark.parametrize("change, words", [
    ({(4, "n"): float("nan")}, ["'n'", "r1"]),
    ({(1, "d"): -5}, ["'d'", "r0"]),
    ({(5, "loss"): 0.0}, ["'loss'", "r1"]),
    ({(3, "acc"): 45.0}, ["'acc'", "r1", "[0, 1]"]),
    ({(2, "n"): "many"}, ["'n'", "r0", "not a number"]),
])
def test_bad_values_name_the_run_and_column(tmp_path, change, words):
    with pytest.raises(LadderError) as e:
        read_table(_table(tmp_path, change), validate=True)
    for w in words:
        assert w in str(e.value)


def test_missing_column_is_named(tmp_path):
    cols = read_table(_table(tmp_path))
    del cols["acc"]
    with pytest.raises(LadderError, match=r"missing required columns \['acc'\]"):
        validate_table(cols, "t.csv")
    assert np.isfinite(read_table(_table(tmp_path / "ok"), validate=True)["loss"]).all()
