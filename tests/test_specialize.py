"""Compute effectiveness of specialization (exact on a synthetic study) and CPT grid generation."""

import json
import math

import numpy as np
import pytest

from ladder import cli
from ladder.effectiveness import compute_effectiveness
from ladder.errors import LadderError
from ladder.plan.cpt_grid import cpt_grid
from ladder.results import append_rows, read_table

SIZES = [1e6, 4e6, 1.6e7]
BUDGETS = [1e6, 2e6, 4e6, 8e6]


def true_ratio(n):
    return 2.0 * (n / 1e6) ** 0.3


def write_study(path):
    """General CPT: domain loss = a C^-0.05 exactly; domain CPT reaches what general CPT needs ratio(N)x for."""
    rows = []
    for n in SIZES:
        a = 3.0 * (n / 1e6) ** -0.1
        for d in BUDGETS:
            c = 6 * n * d
            for kind, loss, gen in (("general", a * c**-0.05, 1.0), ("domain", a * (true_ratio(n) * c) ** -0.05, 1.02)):
                rows.append({"run": f"{n:g}-{kind}-{d:g}", "n": n, "d": 20 * n + d, "step": 10, "task": "t", "loss": 1.0,
                             "acc": 0.5, "r": 0.0 if kind == "general" else 1.0, "d_cpt": d, "base_run": f"{n:g}",
                             "kind": kind, "general_loss": gen, "domain_loss": loss})
    append_rows(path, rows)
    return path


def test_compute_ratio_and_trend_recovered_exactly(tmp_path):
    report = compute_effectiveness(read_table(write_study(tmp_path / "r.csv")))
    for s in report["sizes"]:
        assert s["compute_ratio_geomean"] == pytest.approx(true_ratio(s["n"]), rel=1e-9)
    assert report["trend"]["v"] == pytest.approx(0.3, rel=1e-9)
    assert all(p["forgetting_vs_general_cpt"] == pytest.approx(0.02) for p in report["points"])


def test_ratio_interpolates_between_runs_and_its_interval_holds_a_curved_curve(tmp_path):
    """Exact log-linear general curves: chord and neighbouring lines coincide, the interval collapses onto the
    ratio. On a curve whose log loss bends down (-0.05 x - 0.01 (x - x_min)^2, concave like the measured
    study's), the ratio is the chord crossing between the bracketing runs (recomputed by hand), the true
    crossing lies inside the interval, and the neighbouring lines make it wider than the point."""
    table = read_table(write_study(tmp_path / "r.csv"))
    exact = compute_effectiveness(table)
    for p in exact["points"]:
        if p["reached"]:
            assert p["compute_ratio_interval"] == pytest.approx([p["compute_ratio"]] * 2, rel=1e-6)
    for s in exact["sizes"]:
        assert s["compute_ratio_interval"] == pytest.approx([s["compute_ratio_geomean"]] * 2, rel=1e-6)
    gen = table["kind"] == "general"
    c = 6 * table["n"].astype(float) * table["d_cpt"].astype(float)
    x, x_min = np.log(c), np.log(6 * table["n"].astype(float) * min(BUDGETS))
    table["domain_loss"] = table["domain_loss"].astype(float)
    table["domain_loss"][gen] = table["domain_loss"][gen] * np.exp(-0.01 * (x[gen] - x_min[gen]) ** 2)
    curved = compute_effectiveness(table)
    p = next(q for q in curved["points"] if q["reached"] and q["n"] == SIZES[0] and q["d_cpt"] == BUDGETS[0])
    at = gen & (table["n"].astype(float) == SIZES[0])
    gx, gy = x[at], np.log(table["domain_loss"][at])
    y0 = math.log(p["value"])
    k = int(np.flatnonzero(gy <= y0)[0]) - 1
    chord = gx[k] + (y0 - gy[k]) * (gx[k + 1] - gx[k]) / (gy[k + 1] - gy[k])
    assert p["compute_ratio"] == pytest.approx(math.exp(chord) / p["compute"], rel=1e-9)
    a = 3.0 * (SIZES[0] / 1e6) ** -0.1  # true crossing: log a - 0.05 x - 0.01 (x - x_min)^2 = y0
    x_min0 = math.log(6 * SIZES[0] * min(BUDGETS))
    f = lambda v: math.log(a) - 0.05 * v - 0.01 * (v - x_min0) ** 2 - y0  # noqa: E731
    from scipy.optimize import brentq

    truth = math.exp(brentq(f, gx[k], gx[k + 1])) / p["compute"]
    lo, hi = p["compute_ratio_interval"]
    assert lo < truth < hi and p["compute_ratio"] == pytest.approx(lo)  # concave: the chord reaches it first


def test_ratio_only_inside_the_measured_range(tmp_path):
    report = compute_effectiveness(read_table(write_study(tmp_path / "r.csv")))
    for p in report["points"]:
        inside = true_ratio(p["n"]) * p["d_cpt"] <= max(BUDGETS) * (1 + 1e-12)
        assert p["reached"] == inside and (inside or math.isnan(p["compute_ratio"]))
    assert sum(p["reached"] for p in report["points"]) == 3 + 2 + 1  # ratio 2, 3.03, 4.59: budgets within 8x
    # Equal-compute gain: log L_dom - log L_gen = -0.05 log ratio(N), so gain = L_gen (ratio^-0.05 - 1).
    for p in report["points"]:
        a = 3.0 * (p["n"] / 1e6) ** -0.1
        assert p["gain_at_equal_compute"] == pytest.approx(a * p["compute"] ** -0.05 * (true_ratio(p["n"]) ** -0.05 - 1))
    assert report["trend_gain"]["n_sizes"] == 3


def test_general_cpt_that_never_matches_is_not_extrapolated(tmp_path):
    path = write_study(tmp_path / "r.csv")
    table = read_table(path)
    gen = table["kind"] == "general"
    table["domain_loss"][gen] = 2.0  # general CPT does not move the domain loss
    report = compute_effectiveness(table)
    assert not any(p["reached"] for p in report["points"]) and report["trend"] is None
    for p in report["points"]:
        assert math.isnan(p["compute_ratio"])
        assert p["compute_ratio_lower_bound"] == pytest.approx(6 * p["n"] * max(BUDGETS) / p["compute"])
    assert {s["status"] for s in report["sizes"]} == {"not reached within the measured range"}


def test_trend_needs_three_sizes(tmp_path):
    table = read_table(write_study(tmp_path / "r.csv"))
    keep = table["n"].astype(float) < 1e7
    report = compute_effectiveness({k: v[keep] for k, v in table.items()})
    assert report["trend"] is None and report["trend_gain"] is None


def test_cpt_grid_sizes_ratios_budgets():
    base = {"name": "1M-1xC", "size": "1M", "n": 1e6, "tokens": 2e7, "batch_tokens": 4096, "peak_lr": 1e-3,
            "flops_per_token": 7e6, "flops_per_token_6n": 6.5e6, "flops": 1.4e14, "share": 0.01, "warmup_steps": 50}
    rungs = cpt_grid([base, base | {"name": "4M-1xC", "n": 4e6}], [0, 0.5, 1], [1, 2])
    assert len(rungs) == 2 * 3 * 2
    r = rungs[1]
    assert r["base_run"] == "1M-1xC" and r["init_from"] == {"run": "1M-1xC", "step": "final", "restore_optimizer": False}
    assert r["mixture"] == {"general": 0.5, "domain": 0.5} and r["kind"] == "domain" and rungs[0]["kind"] == "general"
    assert r["tokens"] == r["d_cpt"] == r["total_steps"] * 4096 and r["tokens"] >= 1e6
    assert r["flops"] == 7e6 * r["tokens"] and r["share"] == pytest.approx(0.01 * r["flops"] / 1.4e14)
    assert len({x["name"] for x in rungs}) == len(rungs)
    with pytest.raises(LadderError, match=r"^ratios\[1\]: 1.2 is outside"):
        cpt_grid([base], [0, 1.2], [1])
    with pytest.raises(LadderError, match=r"^rung.batch_tokens:"):
        cpt_grid([{k: v for k, v in base.items() if k != "batch_tokens"}], [0], [1])


def test_cli_report_specialization(tmp_path, capsys):
    path = write_study(tmp_path / "r.csv")
    assert cli.main(["report", "specialization", str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trend"]["v"] == pytest.approx(0.3, rel=1e-6)
    out = tmp_path / "specialization"
    for name in ("domain_metric_vs_compute.png", "general_loss_vs_compute.png", "compute_ratio_vs_n.png"):
        assert (out / name).stat().st_size > 10_000
    assert (out / "effectiveness.csv").read_text().count("\n") == 1 + len(SIZES) * len(BUDGETS)
    assert cli.main(["report", "specialization", str(tmp_path / "missing.csv")]) == 2
    assert "error: results:" in capsys.readouterr().err
