"""`ladder import csv` on tables as papers, W&B and spreadsheets export them (session 7's probe round, docs/laws.md
"Any published ladder in"): each class is read as meant or refused with one line; none is a silent wrong table.
Cheap: tiny CSVs in tmp_path, no fit except where a test says."""

import numpy as np
import pytest

from ladder.cli import main
from ladder.laws.training_sets import one_training_set, require_tasks_in_runs
from ladder.errors import LadderError
from ladder.importers import import_csv, parse_mapping
from ladder.results import read_table, validate_table

SIZES = (150e6, 300e6, 600e6)
TASKS = ("arc", "mmlu")
WIDE_MAP = "run=model,n=params,d=tokens,lm_loss=c4,acc=acc_*"


def _acc(i, j, t):
    return 0.3 + 0.05 * i + 0.02 * j + 0.1 * t


def _wide(fmt=lambda x: f"{x:.6g}", sep=",", extra=""):
    """One row per run (3 sizes x 2 budgets), one accuracy column per task."""
    lines = [sep.join(["model", "params", "tokens", "c4"] + [f"acc_{t}" for t in TASKS]) + extra]
    for i, n in enumerate(SIZES):
        for j, mult in enumerate((10, 20)):
            cells = [f"m{i}-{mult}", f"{n:.0f}", f"{n * mult:.0f}", f"{3.5 - 0.1 * i - 0.05 * j}"]
            lines.append(sep.join(cells + [fmt(_acc(i, j, t)) for t in range(len(TASKS))]) + extra)
    return "\n".join(lines) + "\n"


def _import(tmp_path, text, mapping=WIDE_MAP, capsys=None):
    src = tmp_path / "in.csv"
    src.write_bytes(text.encode() if isinstance(text, str) else text)
    out = tmp_path / "out.csv"
    rc = main(["import", "csv", str(src), "--map", mapping, "-o", str(out), "--overwrite"])
    return rc, (read_table(out, validate=True) if rc == 0 else None)


def _accs(cols):
    return sorted(zip(cols["run"].tolist(), cols["task"].tolist(), cols["acc"].tolist()))


@pytest.fixture
def reference(tmp_path):
    rc, cols = _import(tmp_path, _wide())
    assert rc == 0
    return cols


def test_percent_accuracy_columns_are_divided_by_100_with_a_note(tmp_path, capsys, reference):
    """Before: refused after the import ('outside [0, 1]'); a percent column is every value 0 or in (1, 100]."""
    rc, cols = _import(tmp_path, _wide(lambda x: f"{100 * x:.6g}"))
    assert rc == 0 and "acc (acc_arc, acc_mmlu) read as percentages" in capsys.readouterr().out
    assert np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])
    rc, cols = _import(tmp_path, _wide(lambda x: f"{100 * x:.6g}%"))  # explicit % signs: no guess needed
    assert rc == 0 and np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])


def test_a_column_mixing_fractions_and_percentages_is_refused(tmp_path, capsys):
    text = _wide().replace(",0.35,", ",35,", 1)
    rc, _ = _import(tmp_path, text)
    err = capsys.readouterr().err
    assert rc == 2 and "neither all fractions nor all percentages" in err and "acc_arc" in err


@pytest.mark.parametrize("n_text", ["{b:.6g}b", "{b:.6g} B", "{m:.6g}m", '"{n:,.0f}"'])
def test_counts_with_suffixes_spaces_and_thousands_commas(tmp_path, reference, n_text):
    text = _wide()
    for n in SIZES:
        text = text.replace(f",{n:.0f},", "," + n_text.format(b=n / 1e9, m=n / 1e6, n=n) + ",")
    rc, cols = _import(tmp_path, text)
    assert rc == 0 and sorted(set(cols["n"])) == pytest.approx(SIZES)


def test_tokens_per_parameter_column(tmp_path, capsys, reference):
    text = "\n".join(
        ",".join([c[0], c[1], str(float(c[2]) / float(c[1])), *c[3:]]) if i else ",".join(c)
        for i, c in enumerate(line.split(",") for line in _wide().splitlines())) + "\n"
    rc, cols = _import(tmp_path, text, WIDE_MAP.replace("d=tokens", "tpp=tokens"))
    assert rc == 0 and np.allclose(np.sort(cols["d"]), np.sort(reference["d"]))
    rc, _ = _import(tmp_path, text)  # the same column taken for tokens: 10 tokens for a 150M model
    assert rc == 2 and "is it tokens per parameter (map tpp=COLUMN" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-3.7", "0", "inf"])
def test_lm_loss_must_be_positive_where_given(tmp_path, capsys, value):
    """Before: imported and fitted (a negative C4 loss went into lm-loss's step 1)."""
    rc, _ = _import(tmp_path, _wide().replace(",3.5,", f",{value},", 1))
    assert rc == 2 and "column 'lm_loss' is <= 0 or infinite" in capsys.readouterr().err


def test_semicolons_with_decimal_commas_and_tabs_read_as_commas(tmp_path, reference):
    """Before: 'has no column params' (the whole header was one column)."""
    euro = _wide(lambda x: f"{x:.6g}".replace(".", ","), sep=";").replace("3.", "3,")
    quoted = _wide(lambda x: f'"{x:.6g}"'.replace(".", ","))  # LibreOffice, German locale, ',' separator
    tabs = euro.replace(";", "\t")
    for text in (euro, quoted, tabs, _wide(sep="\t"), "\ufeff" + _wide().replace("\n", "\r\n")):
        rc, cols = _import(tmp_path, text)
        assert rc == 0
        assert np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])
        assert np.allclose(np.sort(cols["lm_loss"]), np.sort(reference["lm_loss"]))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(",150000000,", ",150,000,000,", 1), "has 8 fields, the header 6"),  # before: shifted columns
    (lambda t: t.replace("acc_mmlu", "acc_arc"), "the header names 'acc_arc' 2 times"),  # before: the last one won
    (lambda t: t.replace("m0-20,", "m0-20,x,", 1).replace("acc_mmlu", "acc_mmlu,", 1), "has values but no name"),
])
def test_malformed_rows_and_headers_name_the_line(tmp_path, capsys, edit, message):
    rc, _ = _import(tmp_path, edit(_wide()))
    assert rc == 2 and message in capsys.readouterr().err


def test_short_row_is_refused_and_padding_is_not(tmp_path, capsys, reference):
    lines = _wide().splitlines()
    rc, _ = _import(tmp_path, "\n".join(lines[:2] + [lines[2].rsplit(",", 2)[0]] + lines[3:]) + "\n")
    assert rc == 2 and "fill the missing cells" in capsys.readouterr().err
    header = ",".join(f" {h} " for h in lines[0].split(",")) + ",,"  # padded names, two blank columns
    padded = header + "\n\n" + "\n".join(line + ",," for line in lines[1:]) + "\n,,,,,,,,\n"  # + blank rows
    rc, cols = _import(tmp_path, padded)
    assert rc == 0 and np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])


@pytest.mark.parametrize("blank", ["NA", "-", "#N/A", "null", "n/a", "None"])
def test_missing_value_spellings_leave_the_cell_out(tmp_path, blank):
    """Before: 'has 'NA', not a number' for every spelling but '' and 'nan'."""
    rc, cols = _import(tmp_path, _wide().replace(",0.35,", f",{blank},", 1))
    assert rc == 0 and len(cols["run"]) == 2 * 6 - 1


def _long_checkpoints(order=1, budget=False, seeds=1):
    lines = ["model,seed,params,tokens,task,accuracy"]
    for s in range(seeds):
        for i, n in enumerate(SIZES):
            steps = range(1, 4)[::order]
            for k in steps:
                d = n * 20 if budget else n * 20 * k / 3
                lines.append(f"m{i},{s},{n:.0f},{d:.0f},arc,{0.3 + 0.05 * i + 0.02 * k + 0.001 * s}")
    return "\n".join(lines) + "\n"


def test_checkpoints_without_a_step_are_ordered_by_tokens(tmp_path):
    """Before: numbered in file order, so a table listed newest-first ended at its first checkpoint."""
    mapping = "run=model,n=params,d=tokens,task=task,acc=accuracy"
    rc, cols = _import(tmp_path, _long_checkpoints(order=-1), mapping)
    assert rc == 0
    for run in set(cols["run"]):
        m = cols["run"] == run
        assert list(cols["d"][m][np.argsort(cols["step"][m])]) == sorted(cols["d"][m])


@pytest.mark.parametrize("text, mapping, message", [
    (_long_checkpoints(budget=True), "run=model,n=params,d=tokens,task=task,acc=accuracy",
     "has two rows at the same d"),  # d is each run's budget, written at every checkpoint
    (_long_checkpoints(seeds=2), "run=model,n=params,d=tokens,task=task,acc=accuracy",
     "join the columns that tell runs apart into run (run=model+seed)"),  # before: seeds read as checkpoints
])
def test_rows_at_one_d_in_one_run_are_refused(tmp_path, capsys, text, mapping, message):
    rc, _ = _import(tmp_path, text, mapping)
    assert rc == 2 and message in capsys.readouterr().err


def _mixes(shift):
    rng = np.random.default_rng(0)
    base = _wide().splitlines()
    lines = ["recipe," + base[0]]
    for recipe, delta in (("dolma", 0.0), ("c4", shift)):
        for line in base[1:]:
            c = line.split(",")
            accs = [f"{float(a) + (delta if shift else rng.normal(0, 0.01)):.6g}" for a in c[4:]]
            lines.append(",".join([recipe] + c[:4] + accs))
    return "\n".join(lines) + "\n"


def test_data_mixes_are_named_by_a_sign_test_and_kept_apart_by_set(tmp_path, capsys):
    mapping = "run=recipe+model,n=params,d=tokens,lm_loss=c4,acc=acc_*"
    rc, _ = _import(tmp_path, _mixes(-0.05), mapping)
    out = capsys.readouterr().out
    assert rc == 0 and "column 'recipe' are not seeds: 'dolma' is above 'c4' in 12 of 12" in out
    rc, _ = _import(tmp_path, _mixes(0), mapping)  # seeds-like noise: no such note
    assert rc == 0 and "are not seeds" not in capsys.readouterr().out
    rc, cols = _import(tmp_path, _mixes(-0.05), "set=recipe,run=model,n=params,d=tokens,lm_loss=c4,acc=acc_*")
    assert rc == 0 and set(cols["set"]) == {"dolma", "c4"} and "c4-m0-10" in set(cols["run"])
    with pytest.raises(LadderError, match="come from 2 training sets .* --set c4"):
        one_training_set(cols, None, None)
    assert set(one_training_set(cols, "dolma", None)["run"]) == {f"dolma-m{i}-{m}" for i in range(3) for m in (10, 20)}
    assert len(one_training_set(cols, None, "c4-*")["run"]) == len(cols["run"])  # --runs picks one set: allowed
    with pytest.raises(LadderError, match="--set: 'web' is not a training set"):
        one_training_set(cols, "web", None)


def test_a_task_missing_from_some_runs_to_fit_is_one_line(reference):
    """Before: a StopIteration traceback from the ensemble (no member could be fitted)."""
    keep = ~((reference["task"] == "mmlu") & (reference["n"] == SIZES[2]))
    cols = validate_table({k: v[keep] for k, v in reference.items()})
    runs = sorted(set(cols["run"]))
    with pytest.raises(LadderError, match=r"task mmlu: has no rows in 2 of the 6 runs to fit \(m2-10, m2-20\)"):
        require_tasks_in_runs(cols, runs, None)
    require_tasks_in_runs(cols, runs, ["arc"])  # the other task alone is fine


def test_names_with_wrapped_lines_become_one_line(tmp_path):
    text = _wide().replace("m0-10,", '"OLMo,\nm0-10",', 1)
    rc, cols = _import(tmp_path, text)
    assert rc == 0 and "OLMo, m0-10" in set(cols["run"])


def test_mapping_names_new_fields():
    want = {"run": "a", "n": "b", "tpp": "c", "set": "d", "acc": "e_*"}
    assert parse_mapping("run=a,n=b,tpp=c,set=d,acc=e_*") == want
    with pytest.raises(LadderError, match="maps both d and tpp"):
        import_csv(__file__, parse_mapping("run=a,n=b,d=c,tpp=c,acc=e_*"))


def test_sizes_given_as_labels_get_a_note(tmp_path, capsys):
    """OLMo: N as labels (190M ... 3B) instead of counts moved the 7B-4T MMLU prediction 0.486 -> 0.602, silently."""
    rc, _ = _import(tmp_path, _wide())
    assert rc == 0 and "gives every N to 2 significant digits (150M, 300M, 600M)" in capsys.readouterr().out
    counts = _wide().replace(",150000000,", ",151234567,").replace(",300000000,", ",298765432,")
    rc, _ = _import(tmp_path, counts)
    assert rc == 0 and "significant digits" not in capsys.readouterr().out


def test_tokens_that_fall_as_steps_grow_and_fractional_steps_are_refused(tmp_path, capsys):
    """Before: both imported (a 'tokens remaining' column fitted as tokens seen; step 1000.5 truncated to 1000)."""
    mapping = "run=model,n=params,d=tokens,step=step,task=task,acc=accuracy"
    lines = _long_checkpoints().splitlines()
    with_steps = [lines[0] + ",step"] + [f"{line},{k % 3 + 1}" for k, line in enumerate(lines[1:])]
    rc, _ = _import(tmp_path, "\n".join(with_steps) + "\n", mapping)
    assert rc == 0
    falling = [with_steps[0]] + [line.rsplit(",", 1)[0] + f",{4 - int(line[-1])}" for line in with_steps[1:]]
    rc, _ = _import(tmp_path, "\n".join(falling) + "\n", mapping)
    assert rc == 2 and "d falls from" in capsys.readouterr().err
    rc, _ = _import(tmp_path, "\n".join(with_steps[:1] + [with_steps[1][:-1] + "1000.5"] + with_steps[2:]) + "\n",
                    mapping)
    assert rc == 2 and "has 1000.5, not a step" in capsys.readouterr().err


def test_a_run_with_two_model_sizes_is_refused(reference):
    """Before: a checkpoint row with N typed 10x too large was fitted as another model of the same run."""
    cols = {k: v.copy() for k, v in reference.items()}
    cols["n"][3] *= 10
    with pytest.raises(LadderError, match=r"run 'm0-20' has more than one 'n' \(1.5e\+08 and 1.5e\+09\)"):
        validate_table(cols)


def test_standard_error_columns_matched_by_the_pattern_are_not_tasks(tmp_path, capsys, reference):
    """Before: acc=acc_* made tasks 'arc_stderr' and 'mmlu__MAX' out of an export's spread columns."""
    lines = _wide().splitlines()
    text = "\n".join([lines[0] + ",acc_arc_stderr,acc_mmlu__MAX"] + [line + ",0.01,0.9" for line in lines[1:]])
    rc, cols = _import(tmp_path, text + "\n")
    assert rc == 0 and set(cols["task"]) == set(TASKS)
    assert "also matches 2 columns of standard errors or ranges (acc_arc_stderr, acc_mmlu__MAX): left out" in \
        capsys.readouterr().out


def test_set_may_join_columns_and_seeds_are_compared_within_a_set(tmp_path, capsys):
    text = _mixes(-0.05)
    lines = text.splitlines()
    text = "\n".join([lines[0] + ",lr"] + [line + f",{k % 2}" for k, line in enumerate(lines[1:])]) + "\n"
    rc, cols = _import(tmp_path, text, "set=recipe+lr,run=model,n=params,d=tokens,lm_loss=c4,acc=acc_*")
    assert rc == 0 and set(cols["set"]) == {"dolma-0", "dolma-1", "c4-0", "c4-1"}
    assert "c4-1-m0-20" in set(cols["run"]) and "are not seeds" not in capsys.readouterr().out


def test_excel_sep_line_captions_and_notes_around_the_table(tmp_path, capsys, reference):
    """Before: 'sep=;' or a caption line became the header ('has no column params'); a note line was refused."""
    body = _wide(sep=";")
    for text in ("sep=;\n" + body, "Table 3: our ladder\n\n" + _wide() + "* trained on our data\n"):
        rc, cols = _import(tmp_path, text)
        assert rc == 0 and np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])
    assert "left out 2 line(s) of one cell (a title or note: line 1, 10)" in capsys.readouterr().out


@pytest.mark.parametrize("dump", [lambda d: __import__("json").dumps(d), repr])  # JSON, or pandas' dict repr
def test_metrics_in_an_object_cell(tmp_path, capsys, reference, dump):
    """A results export whose scores sit in one object column (metrics = {"acc_norm": ..., ...}): acc=metrics.KEY.
    Before: 'has no column metrics.acc_norm'."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "params", "tokens", "task", "metrics"])
    for i, n in enumerate(SIZES):
        for j, mult in enumerate((10, 20)):
            for t, task in enumerate(TASKS):
                w.writerow([f"m{i}-{mult}", f"{n:.0f}", f"{n * mult:.0f}", task,
                            dump({"acc_norm": round(_acc(i, j, t), 6), "acc_raw": 0.1, "extra": {"bpb": 1.5}})])
    rc, cols = _import(tmp_path, buf.getvalue(), "run=model,n=params,d=tokens,task=task,acc=metrics.acc_norm,"
                       "loss=metrics.extra.bpb")
    assert rc == 0 and np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])
    assert set(cols["loss"]) == {1.5}
    rc, _ = _import(tmp_path, buf.getvalue().replace('"acc_norm"', '"x"').replace("'acc_norm'", "'x'"),
                    "run=model,n=params,d=tokens,task=task,acc=metrics.acc_norm")
    assert rc == 2 and "no row with an accuracy (the first 'metrics' cell has keys x, acc_raw, extra)" in \
        capsys.readouterr().err


def test_data_mixes_inside_run_names_are_named_too(tmp_path, capsys):
    """Runs named dolma-m0-10 / c4-m0-10 in one column: the sign test runs over the names' parts."""
    lines = _mixes(-0.05).splitlines()
    text = "\n".join([lines[0].split(",", 1)[1]] + [
        ",".join([f"{c[0]}-{c[1]}"] + c[2:]) for c in (line.split(",") for line in lines[1:])]) + "\n"
    rc, cols = _import(tmp_path, text)
    assert rc == 0 and "c4-m0-10" in set(cols["run"])
    assert "differ only in part 1 of their names are not seeds: 'dolma' is above 'c4' in 12 of 12" in \
        capsys.readouterr().out


def test_excel_unicode_text_and_old_mac_line_ends(tmp_path, reference):
    """Excel's "Unicode Text" export is tab-separated UTF-16 (before: 'not UTF-8 text (byte 0xff at offset 0)')."""
    for data in (_wide(sep="\t").replace("\n", "\r\n").encode("utf-16"), _wide().replace("\n", "\r").encode()):
        rc, cols = _import(tmp_path, data)
        assert rc == 0 and np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])


def test_a_repeated_header_from_joined_files_is_left_out(tmp_path, capsys, reference):
    """Before: "column 'params' has 'params', not a number" (cat a.csv b.csv > ladder.csv)."""
    lines = _wide().splitlines()
    rc, cols = _import(tmp_path, "\n".join(lines[:4] + lines[:1] + lines[4:]) + "\n")
    assert rc == 0 and np.allclose([a for *_, a in _accs(cols)], [a for *_, a in _accs(reference)])
    assert "left out 1 repeat(s) of the header (line 5: files joined?)" in capsys.readouterr().out


def test_a_results_table_in_percent_names_the_conversion(reference):
    cols = {k: v.copy() for k, v in reference.items()}
    cols["acc"] *= 100
    with pytest.raises(LadderError, match=r"every acc here is 0 or in \(1, 100\]: divide the column by 100"):
        validate_table(cols)


def test_a_task_not_in_the_table_is_named(reference):
    """Before: "no method of the ensemble could be fitted: ..." repeated per method and run."""
    with pytest.raises(LadderError, match=r"--tasks: task 'mmlü' is not in the table; choose from \['arc', 'mmlu'\]"):
        require_tasks_in_runs(reference, sorted(set(reference["run"])), ["mmlü"])


def test_a_comma_in_an_unmapped_column_does_not_change_the_locale(tmp_path, reference):
    lines = _wide().splitlines()
    text = "\n".join([lines[0] + ",tags"] + [line + ',"0,5"' for line in lines[1:]]).replace(",150000000,",
                                                                                        ',"150,000,000",')
    rc, cols = _import(tmp_path, text + "\n")
    assert rc == 0 and sorted(set(cols["n"])) == pytest.approx(SIZES)


def test_a_long_table_may_take_the_loss_from_a_column_per_task(tmp_path):
    text = "model,params,tokens,task,accuracy,bpb_arc,bpb_mmlu\n" + "".join(
        f"m{i},{n:.0f},{n * 20:.0f},{t},{_acc(i, 0, k)},{1.0 - 0.1 * i},{2.0 - 0.1 * i}\n"
        for i, n in enumerate(SIZES) for k, t in enumerate(TASKS))
    rc, cols = _import(tmp_path, text, "run=model,n=params,d=tokens,task=task,acc=accuracy,loss=bpb_*")
    assert rc == 0
    assert sorted(zip(cols["task"].tolist(), cols["loss"].round(6).tolist()))[:2] == [("arc", 0.8), ("arc", 0.9)]


def test_tokens_from_flops_carry_a_note(tmp_path, capsys, reference):
    lines = _wide().splitlines()
    text = "\n".join([lines[0].replace("tokens", "flops")] + [
        ",".join([c[0], c[1], f"{6 * float(c[1]) * float(c[2]):.12g}", *c[3:]]) for c in
        (line.split(",") for line in lines[1:])]) + "\n"
    rc, cols = _import(tmp_path, text, WIDE_MAP.replace("d=tokens", "flops=flops"))
    assert rc == 0 and np.allclose(np.sort(cols["d"]), np.sort(reference["d"]))
    assert "tokens taken as D = flops / 6N: if 'flops' counts attention" in capsys.readouterr().out


def _predict(tmp_path, table, name):
    out = tmp_path / "pred.json"
    rc = main(["predict", str(table), "--set", name, "--target", "1B=1e9:2e10", "--bootstrap", "0",
               "--workers", "1", "--plots", str(tmp_path / "plots"), "-o", str(out), "--overwrite"])
    return rc, (out.read_text() if rc != 2 else None)


def _alone(table, name):
    """`--set NAME`'s prediction through the API (the CLI's plots cost ~3 CPU-s a set), as JSON text."""
    import json
    import warnings

    from ladder.laws.predict import predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same notes the CLI printed (no task loss, no back-test split)
        pred = predict(one_training_set(read_table(table, validate=True), name, None), {"1B": (1e9, 2e10)},
                       n_bootstrap=0, workers=1)
    from ladder.storage import json_text

    return json.dumps(json.loads(json_text(pred.to_json())))  # as written: a missing number is null


def test_set_all_predicts_each_set_as_set_name_does(tmp_path, capsys):
    """DataDecide-style comparison of recipes: one call, one law per set; each entry equals `--set NAME`'s JSON
    (compared as JSON text, a missing number null in both)."""
    import json

    _import(tmp_path, _mixes(-0.05), "set=recipe,run=model,n=params,d=tokens,lm_loss=c4,acc=acc_*")
    table = tmp_path / "out.csv"
    rc, text = _predict(tmp_path, table, "all")
    every, out = json.loads(text), capsys.readouterr().out
    assert rc == 0 and sorted(every) == ["c4", "dolma"]
    assert "set c4 (1/2)" in out and "set dolma (2/2)" in out and "2 of 2 sets predicted" in out
    side = out.split("every set (the tables above, side by side):\n")[1].splitlines()
    assert side[1].split()[:3] == ["c4", "1B", "arc"] and side[4].split()[:3] == ["dolma", "1B", "mmlu"]
    assert float(side[3].split()[5]) == round(every["dolma"]["1B"]["arc"]["acc"], 3)
    assert all((tmp_path / "plots" / name / "chain.png").exists() for name in every)
    rc, one = _predict(tmp_path, table, "dolma")  # the single-set layout, unchanged
    assert rc == 0 and one.strip() == json.dumps(every["dolma"], indent=2)
    assert json.dumps(every["c4"]) == _alone(table, "c4")
    assert every["dolma"]["1B"]["arc"]["acc"] > every["c4"]["1B"]["arc"]["acc"]  # c4 is 0.05 lower everywhere


def test_a_set_that_cannot_be_fitted_is_reported_and_the_others_predicted(tmp_path, capsys):
    import json

    lines = _mixes(-0.05).splitlines()
    text = "\n".join([lines[0]] + [line for line in lines[1:] if not line.startswith(("c4,m1", "c4,m2"))]) + "\n"
    _import(tmp_path, text, "set=recipe,run=model,n=params,d=tokens,lm_loss=c4,acc=acc_*")  # c4: one size
    table = tmp_path / "out.csv"
    rc, text = _predict(tmp_path, table, "c4,dol*")
    every, out = json.loads(text), capsys.readouterr().out
    assert rc == 1 and list(every) == ["c4", "dolma"] and set(every["c4"]) == {"problem"}
    assert "set c4: not fitted:" in out and "1 of 2 sets predicted" in out and "not fitted: c4" in out
    assert json.dumps(every["dolma"]) == _alone(table, "dolma")
    rc, _ = _predict(tmp_path, table, "web*,dolma")
    assert rc == 2 and "--set: 'web*' matches no training set" in capsys.readouterr().err
