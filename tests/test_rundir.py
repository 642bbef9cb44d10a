"""ladder.rundir: the one module that reads and writes run directories, and results.last_rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladder import formats, results, rundir, storage
from ladder.errors import LadderError


def test_json_written_atomically_and_torn_json_reads_as_absent(tmp_path):
    storage.write_json(tmp_path / "status.json", {"state": "done", "loss": np.float32(1.5)})
    assert storage.read_json(tmp_path / "status.json") == {"state": "done", "loss": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left behind
    (tmp_path / "torn.json").write_text('{"state": "run')
    assert storage.read_json(tmp_path / "torn.json") is None and storage.read_json(tmp_path / "absent.json") is None
    assert rundir.read_status(tmp_path / "nowhere") == {}


def test_metrics_read_and_truncated_through_one_reader(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)))
    rundir.truncate_metrics(tmp_path, 2)
    assert rundir.read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    assert rundir.read_metrics(tmp_path / "absent") == []


@pytest.mark.parametrize("seconds, text", [(None, "-"), (float("nan"), "-"), (0.4, "0s"), (59, "59s"),
                                           (150, "2m"), (5400, "1.5h"), (3 * 86400, "3.0d")])
def test_format_duration(seconds, text):
    assert formats.format_duration(seconds) == text


def test_collect_fills_plan_columns_and_refuses_to_overwrite(tmp_path):
    row = dict(run="a", n=10, d=100, step=5, task="t", loss=1.0, acc=0.5)
    results.append_rows(tmp_path / "runs" / "a" / "results.csv", [row])
    plan = {"rungs": [dict(name="a", size="10", multiple=1, flops_per_token=6.0),
                      dict(name="b", size="20", multiple=1, flops_per_token=9.0)]}
    out = tmp_path / "all.csv"
    assert rundir.collect(plan, tmp_path / "runs", out) == (1, ["b"])
    table = results.read_table(out)
    assert table["flops"].tolist() == [600.0] and table["size"].tolist() == ["10"]
    with pytest.raises(LadderError, match="file exists"):
        rundir.collect(plan, tmp_path / "runs", out)
    assert rundir.collect(plan, tmp_path / "runs", out, overwrite=True, plan_columns=False) == (1, ["b"])
    assert "flops" not in results.read_table(out)


def test_last_rows_picks_each_runs_final_step_and_cpt_columns_are_numbers(tmp_path):
    run = np.array(["a", "b", "a", "b", "a"])
    step = np.array([1.0, 5.0, 3.0, 2.0, 2.0])
    assert results.last_rows(run, step).tolist() == [1, 2]
    assert results.last_rows(run, step, keep=step < 3).tolist() == [3, 4]
    rows = [dict(run="a", n=10, d=100, step=1, task="t", loss=1.0, acc=0.5, r=0.2, d_cpt=50, general_loss=1.1,
                 domain_loss=0.9, k="", kind="domain")]
    results.write_table(tmp_path / "r.csv", rows)
    cols = results.read_table(tmp_path / "r.csv")
    assert all(cols[c].dtype == np.float64 for c in ("r", "d_cpt", "general_loss", "domain_loss", "k"))
    assert cols["kind"].dtype.kind == "U" and np.isnan(cols["k"][0])


def test_report_draws_loss_curves_from_run_dirs_read_through_rundir(tmp_path, monkeypatch):
    """The report reads metrics.jsonl through rundir (etils.epath), so a gs:// run root gets its curves too."""
    from ladder import plots

    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "tokens": 100 * s, "loss": 3.0 / s}) + "\n" for s in (1, 2, 3)))
    plan = {"rungs": [dict(name="a", n=1000, multiple=1), dict(name="b", n=2000, multiple=1),
                      dict(name="c", n=3000, multiple=1)]}  # c has no metrics yet: skipped
    seen = []
    real = rundir.read_metrics
    monkeypatch.setattr(rundir, "read_metrics", lambda d: seen.append(str(d)) or real(d))
    path = plots.plot_loss_curves(plan, str(tmp_path / "runs"), tmp_path / "out")
    assert path is not None and path.exists()
    assert seen == [f"{tmp_path}/runs/{n}" for n in "abc"]
