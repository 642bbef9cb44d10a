"""Hostile inputs to the specialization verbs (fit dcpt/split, allocate dcpt, report): each class gives one
line naming the field, a warning, or the same answer as the clean table. Tables are tmp_path CSVs; no training."""

import csv
import json

import numpy as np
import pytest

from ladder import cli
from test_dcpt import write_study


def _rows(path):
    return list(csv.DictReader(open(path)))


def _write(path, rows):
    header = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return _rows(write_study(tmp_path_factory.mktemp("study") / "results.csv", noise=1e-3))


def _fit(tmp_path, capsys, rows, law="dcpt", *extra, name="t.csv"):
    path = _write(tmp_path / name, rows)
    starts = ["--starts", "4"] if law == "dcpt" else []  # split has no multi-start search: --starts is refused there
    code = cli.main(["fit", law, str(path), "-o", str(tmp_path / "out"), "--overwrite", *starts, *extra])
    return code, capsys.readouterr()


@pytest.mark.parametrize("law", ["dcpt", "split"])
def test_infinite_loss_is_a_diverged_run_not_a_blank(tmp_path, capsys, study, law):
    rows = [dict(r) for r in study]
    rows[5]["domain_loss"] = "inf"
    code, out = _fit(tmp_path, capsys, rows, law)
    assert code == 2 and "error: domain_loss: is inf in 1 rows" in out.err and "diverged" in out.err


@pytest.mark.parametrize("law", ["dcpt", "split"])
def test_a_row_repeated_with_another_loss_is_refused(tmp_path, capsys, study, law):
    rows = study + [dict(study[0], domain_loss="9.0")]
    code, out = _fit(tmp_path, capsys, rows, law)
    assert code == 2 and "repeat a (run, step, task)" in out.err


def test_dcpt_two_domains_need_domain_and_one_is_fitted(tmp_path, capsys, study):
    rows = [dict(r, domain="legal") for r in study] + [
        dict(r, domain="code", run=r["run"] + "c", domain_loss=str(2 * float(r["domain_loss"]))) for r in study]
    code, out = _fit(tmp_path, capsys, rows)
    assert code == 2 and "error: domain: the table holds CPT rows of 2 domains ['code', 'legal']" in out.err
    code, out = _fit(tmp_path, capsys, rows, "dcpt", "--domain", "code")
    assert code == 0
    code = cli.main(["report", "specialization", str(tmp_path / "t.csv"), "-o", str(tmp_path / "rep")])
    assert code == 2 and "error: domain: the table holds runs of 2 domains" in capsys.readouterr().err
    code = cli.main(["report", "specialization", str(tmp_path / "t.csv"), "-o", str(tmp_path / "rep"),
                     "--domain", "legal", "--format", "json"])
    legal = json.loads(capsys.readouterr().out)
    assert code == 0 and legal["sizes"]
    code = cli.main(["report", "specialization", str(tmp_path / "t.csv"), "-o", str(tmp_path / "rep2"),
                     "--domain", "prose"])
    assert code == 2 and "--domain: 'prose' is not in the table" in capsys.readouterr().err


@pytest.mark.parametrize("law", ["dcpt", "split"])
def test_loss_rising_with_tokens_cannot_be_fitted(tmp_path, capsys, study, law):
    rows = [dict(r, domain_loss=str(1 + 1e-8 * float(r["d_cpt"])), general_loss=str(1 + 1e-8 * float(r["d_cpt"])))
            for r in study]
    code, out = _fit(tmp_path, capsys, rows, law)
    assert code == 2 and "explains none of its variation" in out.err and "cannot fit" in out.err


def test_row_order_and_column_order_do_not_change_the_fit(tmp_path, capsys, study):
    rows = [dict(r, domain="legal") for r in study]
    assert _fit(tmp_path, capsys, rows, "dcpt", name="a.csv")[0] == 0
    clean = json.loads((tmp_path / "out" / "dcpt.json").read_text())
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    shuffled = [dict(reversed(list(r.items())), extra="zz") for r in shuffled]  # columns reversed, one added
    assert _fit(tmp_path, capsys, shuffled, "dcpt", name="b.csv")[0] == 0
    assert json.loads((tmp_path / "out" / "dcpt.json").read_text())["fits"] == clean["fits"]


def test_rules_outside_the_fitted_range_warn(tmp_path, capsys, study):
    code, out = _fit(tmp_path, capsys, [dict(r) for r in study], "dcpt", "--n", "1", "--d", "1")
    assert code == 0 and "warning: rule (a): N = 1 lies outside the fitted N range [2e+06, 2e+07]" in out.err
    law = str(tmp_path / "out" / "dcpt.json")
    assert cli.main(["allocate", "dcpt", "--law", law, "--rule", "b", "--n", "6e6", "--domain-tokens", "1",
                     "-o", str(tmp_path / "a"), "--format", "json"]) == 0
    out = capsys.readouterr()
    assert "D = 16.3 lies outside the fitted D range" in json.loads(out.out)["warning"]
    assert cli.main(["allocate", "dcpt", "--law", law, "--rule", "a", "--n", "6e6", "--d", "1e7",
                     "-o", str(tmp_path / "a"), "--overwrite", "--format", "json"]) == 0
    assert "warning" not in json.loads(capsys.readouterr().out)


def test_report_on_broken_tables_is_one_line(tmp_path, capsys, study):
    bad = {"empty.csv": "", "header.csv": ",".join(study[0]) + "\n", "binary.csv": "\x00\x01x"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        assert cli.main(["report", "specialization", str(tmp_path / name), "-o", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error: results:" in err, err
