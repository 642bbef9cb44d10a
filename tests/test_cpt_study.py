"""`ladder cpt configs/specialization.py:ci` end to end: base runs, the CPT grid, collect, the D-CPT fit with
held-out checks and rule (a), the check run, the report; then a second invocation (from Python) skips every
finished run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ladder import cpt, results
from ladder.config import load_config

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # the whole study, end to end

CPT_COLUMNS = {"general_loss", "domain_loss", "r", "d_cpt", "base_run", "kind"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("cpt-study")
    cmd = [sys.executable, "-m", "ladder", "cpt", "configs/specialization.py:ci", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count(": done, skipped") == 0  # a fresh directory: every run trained
    return out, first, cmd


@pytest.mark.timeout(1000)
def test_every_stage_writes_its_files(study):
    out, first, _ = study
    rungs = json.loads((out / "rungs.json").read_text())
    assert len(rungs["base"]) == 2 and len(rungs["cpt"]) == 2 * 3 * 2  # sizes x ratios x budgets
    for rung in rungs["base"] + rungs["cpt"]:
        run_dir = out / "runs" / rung["name"]
        assert json.loads((run_dir / "status.json").read_text())["state"] == "done", rung["name"]
        assert (run_dir / "results.csv").is_file()
        assert (run_dir / "init.json").is_file() == ("base_run" in rung)
    table = results.read_table(out / "results.csv")
    assert CPT_COLUMNS <= set(table)
    assert set(table["kind"]) == {"base", "general", "domain"}
    cpt = table["kind"] != "base"
    # A CPT row counts the base's tokens in d: d - d_cpt is the base run's token count.
    base_tokens = {b["name"]: b["tokens"] for b in rungs["base"]}
    assert all(float(d) - float(dc) == base_tokens[b]
               for d, dc, b in zip(table["d"][cpt], table["d_cpt"][cpt], table["base_run"][cpt]))
    spec = out / "specialization"
    for name in ("dcpt.json", "dcpt.csv", "dcpt.png", "effectiveness.json", "effectiveness.csv",
                 "domain_metric_vs_compute.png"):
        assert (spec / name).is_file(), name
    summary = json.loads((out / "study.json").read_text())
    assert set(summary["dcpt"]) == {"domain", "general"} and len(summary["holdout"]) == 6
    assert 0 <= summary["rule_a"]["r"] <= 1
    check = summary["check"]
    assert (out / "runs" / check["run"] / "results.csv").is_file() and check["r"] == round(summary["rule_a"]["r"], 3)
    assert set(summary["seconds"]) == {"plan", "train", "collect", "fit", "check", "report", "split_comparison"}
    # 2 sizes cannot hold one out: the split-law comparison says so instead of failing the study.
    assert "3+ sizes" in summary["split_comparison"]["error"]
    assert (out / "specialization" / "split_comparison.json").is_file()
    assert '"rule_a"' in first.stdout


@pytest.mark.timeout(1000)
def test_a_second_run_from_a_notebook_skips_finished_runs(study):
    """ladder.cpt.run_study from Python on the same directory (the second invocation: the CLI, which made
    the study, calls the same function): every run is done (skipped), and the fit, the rule, the check and
    the report come back as values equal to what `ladder cpt` wrote. (One second invocation, not two: a
    second CLI run cost a whole extra process of fitting for the same skip logic.)"""
    out, _, _ = study
    written = json.loads((out / "study.json").read_text())
    lines = []
    summary = cpt.run_study(load_config(f"{ROOT}/configs/specialization.py:ci"), out, log=lines.append)
    assert sum(": done, skipped" in line for line in lines) == 2 + 12 + 1
    again = json.loads(json.dumps(summary, default=float))
    for key in ("dcpt", "holdout", "rule_a", "check", "effectiveness"):
        assert again[key] == written[key], key
