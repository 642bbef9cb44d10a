"""A notebook needs no CLI: a D-CPT fit and its decision rules, a split fit and its allocation, the
compute-effectiveness report and a compile table, each one Python call returning values (the CPT study
itself: tests/test_cpt_study.py). Data: the synthetic studies of test_dcpt, test_split, test_specialize."""

import json

import pytest

from ladder import aot, specialization
from ladder.laws import split
from ladder.results import read_table
from test_dcpt import write_study as write_dcpt_study
from test_specialize import write_study as write_effectiveness_study
from test_split import CODE, LEGAL, write_two_domain_study


def test_dcpt_fit_and_rules_as_values(tmp_path):
    table = read_table(write_dcpt_study(tmp_path / "results.csv", noise=1e-3))
    fit = specialization.fit_dcpt(table, starts=6, n=6e6, d=1e7, tolerance=0.03)
    assert fit.summary["fits"]["domain"]["r2"] >= 0.99 and fit.summary["fits"]["general"]["r2"] >= 0.99
    (rule_a,) = fit.summary["rules"]
    assert rule_a["rule"] == "a" and rule_a["general_rise"] <= 0.03
    # The same rule from the fit's summary (as `ladder allocate dcpt` reads it from dcpt.json).
    again = specialization.dcpt_rule(fit.summary, "a", n=6e6, d=1e7, tolerance=0.03)
    assert again["r"] == pytest.approx(rule_a["r"], rel=1e-9)
    rule_b = specialization.dcpt_rule(fit.summary, "b", n=6e6, domain_tokens=2e6)
    assert 0 < rule_b["r"] <= 1
    # Written on request only, and what was written is what was returned.
    files = specialization.write_fit(fit, tmp_path / "spec")
    assert json.loads((tmp_path / "spec" / "dcpt.json").read_text())["rules"][0]["r"] == pytest.approx(rule_a["r"])
    assert len(files) == 3


def test_split_fit_and_allocation_as_values(tmp_path):
    write_two_domain_study(tmp_path / "results.csv")
    fit = specialization.fit_split(read_table(tmp_path / "results.csv"))
    assert fit.summary["domains"]["legal"]["params"]["k"] == pytest.approx(8.0, rel=1e-3)
    alloc = specialization.allocate_split(fit.summary, 1e18)
    exact = split.allocate({"code": CODE, "legal": LEGAL}, 1e18)
    assert alloc["total_loss"] == pytest.approx(exact.total_loss, rel=1e-5)
    assert min(alloc["profile"]["loss"]) == pytest.approx(alloc["total_loss"], rel=1e-2)  # the plot's optimum


def test_effectiveness_report_as_values(tmp_path):
    report = specialization.effectiveness_report(read_table(write_effectiveness_study(tmp_path / "r.csv")))
    assert report["trend"]["v"] == pytest.approx(0.3, rel=1e-9)


@pytest.mark.slow  # one compile for a TPU slice: 20-30 s on 2 busy cores
@pytest.mark.skipif(not aot.libtpu_available(), reason="libtpu is not installed (pip install 'ladder[tpu]')")
def test_compile_table_as_values():
    from ladder.compile_report import compile_rows
    from ladder.plan import plan_ladder

    plan = plan_ladder(preset="smoke")
    name = plan["rungs"][0]["name"]
    (report,) = aot.check_plan(plan, "v5e-4", rungs=[name], count_flops=False)
    assert report.rung == name and report.fits and report.n_devices == 4
    (row,) = compile_rows([report])  # the table as values
    assert row.rung == name and row.topology == "v5litepod-4" and row.fits and 0 < row.hbm_fraction < 0.85
    assert row.total_gib == pytest.approx(report.total / 2**30)


def test_plan_and_its_dry_run_as_values():
    from ladder.plan import plan_ladder
    from ladder.plan.dryrun import dry_run, format_dry_run

    plan = plan_ladder(preset="olmo-ladder")
    result = dry_run(plan, "v5p")
    assert [r["name"] for r in result["rungs"]] == [r["name"] for r in plan["rungs"]]
    assert [t["name"] for t in result["targets"]] == ["7b-4t", "13b-5t"] and result["failed"] == []
    assert result["hours"] == pytest.approx(sum(r["hours"] for r in result["rungs"]))
    assert format_dry_run(result).splitlines()[0] == "dry run on v5p:"
    assert dry_run(plan, "v5p", devices=48)["failed"]  # the CLI's exit 2 case (test_plan)
