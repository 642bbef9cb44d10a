"""`ladder import olmo` and results-table validation."""

import csv

import numpy as np
import pytest

from ladder.cli import main
from ladder.errors import LadderError
from ladder.importers import OLMO_HELDOUT_CHANCE, OLMO_HELDOUT_TASKS, OLMO_N, import_olmo_run
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


def test_olmo_heldout_tasks_read_their_own_keys_chance_and_every_checkpoint(shared_dir):
    """The task keys bench/backtest_heldout_tasks.py scores the default on: BoolQ's plain accuracy (its
    export has no len_norm), MMLU val weighted like MMLU test, each task's chance level, one row per
    checkpoint (as many as the paper's tasks get)."""
    path = shared_dir / "reference/olmo_ladder/ladder-runs/370M-2xC.csv"
    rows = import_olmo_run(path, OLMO_HELDOUT_TASKS, OLMO_HELDOUT_CHANCE)
    with open(path) as f:
        last = list(csv.DictReader(f))[-1]
    final = {r["task"]: r for r in rows}  # rows are in checkpoint order: the last row per task is the final one
    assert set(final) == {"boolq", "winogrande", "arc_easy_val", "arc_challenge_val", "openbookqa_val", "mmlu_val"}
    assert final["boolq"]["acc"] == pytest.approx(float(last["eval/downstream/boolq_val_rc_5shot_acc"]))
    bpb = float(last["eval/downstream_bpb/winogrande_val_rc_5shot_bpb"])
    assert final["winogrande"]["loss"] == pytest.approx(bpb)
    w = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
    acc = sum(v * float(last[f"eval/downstream/mmlu_{k}_val_rc_5shot_len_norm"]) for k, v in w.items())
    assert final["mmlu_val"]["acc"] == pytest.approx(acc)
    assert {t: r["chance"] for t, r in final.items()} == {"boolq": 0.5, "winogrande": 0.5, "arc_easy_val": 0.25,
                                                         "arc_challenge_val": 0.25, "openbookqa_val": 0.25,
                                                         "mmlu_val": 0.25}
    paper = import_olmo_run(path)
    per_task = {t: sum(r["task"] == t for r in rows) for t in final}
    assert set(per_task.values()) == {sum(r["task"] == "mmlu" for r in paper)}


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


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_import_long_table_with_other_column_names(tmp_path, capsys):
    src = _write(tmp_path / "long.csv", ["model", "params", "tokens", "bench", "accuracy", "bpb", "c4"],
                 [["m1", "190M", "3.8e9", "arc", "0.41", "1.2", "3.1"], ["m1", "190M", "3.8e9", "piqa", "0.6", "0.9", "3.1"],
                  ["m2", "1.3B", "2.6e10", "arc", "0.52", "1.0", "2.7"]])
    out = tmp_path / "r.csv"
    assert main(["import", "csv", str(src), "--map", "run=model,n=params,d=tokens,task=bench,acc=accuracy,loss=bpb,"
                 "lm_loss=c4,chance=0.25", "-o", str(out)]) == 0
    cols = read_table(out, validate=True)
    assert cols["n"].tolist() == [190e6, 190e6, 1.3e9] and cols["task"].tolist() == ["arc", "piqa", "arc"]
    assert cols["loss"].tolist() == [1.2, 0.9, 1.0] and (cols["chance"] == 0.25).all() and (cols["step"] == 0).all()


def test_csv_import_wide_table_accuracy_only_and_mapping_file(tmp_path):
    from ladder.importers import import_csv, parse_mapping

    src = _write(tmp_path / "wide.csv", ["name", "N", "D", "acc_arc", "acc_mmlu", "loss_c4"],
                 [["a", "1e8", "2e9", "0.3", "0.26", "3.3"], ["a", "1e8", "4e9", "0.32", "", "3.2"],
                  ["b", "2e8", "4e9", "0.35", "0.27", "3.0"]])
    spec = tmp_path / "map.txt"
    spec.write_text("run=name  # the model\nn=N\nd=D\nacc=acc_*\nlm_loss=loss_c4\n")
    rows = import_csv(src, parse_mapping(str(spec)))
    assert [(r["run"], r["task"], r["step"]) for r in rows] == [
        ("a", "arc", 0), ("a", "mmlu", 0), ("a", "arc", 1), ("b", "arc", 0), ("b", "mmlu", 0)]  # blank cell skipped
    assert all(r["loss"] != r["loss"] for r in rows) and rows[0]["lm_loss"] == 3.3


def test_csv_import_takes_tokens_from_flops_and_runs_from_several_columns(tmp_path):
    from ladder.importers import import_csv, parse_mapping

    src = _write(tmp_path / "f.csv", ["data", "size", "N", "FLOPs", "acc_arc"],
                 [["dolma", "150M", "1.5e8", "1.2e18", "0.3"], ["c4", "150M", "1.5e8", "1.2e18", "0.32"]])
    rows = import_csv(src, parse_mapping("run=data+size,n=N,flops=FLOPs,acc=acc_*"))
    assert rows[0]["d"] == pytest.approx(1.2e18 / (6 * 1.5e8)) and rows[0]["flops"] == 1.2e18
    # one run per training set: the two 150M runs stay apart (each its single final checkpoint, step 0)
    assert sorted((r["run"], r["step"]) for r in rows) == [("c4-150M", 0), ("dolma-150M", 0)]


@pytest.mark.parametrize("mapping, words", [
    ("run=name,n=N,d=D", ["no column for 'acc'"]),
    ("run=name,n=N,d=D,acc=accuracy", ["no task"]),
    ("run=name,n=N,d=D,acc=acc_*,loss=bpb_*", ["bpb_arc"]),
    ("run=name,n=N,d=D,acc=acc_*,size=N", ["unknown field 'size'"]),
    ("run=name,n=name,d=D,acc=acc_*", ["'name'", "not a number"]),
])
def test_csv_import_errors_name_the_field_or_column(tmp_path, mapping, words):
    from ladder.importers import import_csv, parse_mapping

    src = _write(tmp_path / "w.csv", ["name", "N", "D", "acc_arc"], [["a", "1e8", "2e9", "0.3"]])
    with pytest.raises(LadderError) as e:
        import_csv(src, parse_mapping(mapping))
    for w in words:
        assert w in str(e.value)
