"""Pretrain/specialize split law: recovery, Chinchilla reduction at D'=0, allocator vs brute force, CLI."""

import json

import numpy as np
import pytest

from ladder import cli
from ladder.errors import LadderError
from ladder.laws import split
from ladder.results import append_rows

TRUE = split.SplitLaw(E=1.0, A=25.0, alpha=0.32, B=40.0, beta=0.3, k=0.5, rho=0.8)
LEGAL = split.SplitLaw(E=1.0, A=25.0, alpha=0.32, B=40.0, beta=0.3, k=8.0, rho=0.9)
CODE = split.SplitLaw(E=0.7, A=25.0, alpha=0.32, B=80.0, beta=0.35, k=3.0, rho=0.85)


def grid(law, noise=0.0):
    n, d, dp = (a.ravel() for a in np.meshgrid([2e6, 6e6, 2e7, 6e7], [1e8, 3e8, 1e9], [0, 1e7, 3e7, 1e8, 3e8], indexing="ij"))
    loss = law(n, d, dp) * np.exp(noise * np.random.default_rng(0).standard_normal(n.shape))
    return split.SplitPoints(n, d, dp, loss)


def test_reduces_to_chinchilla_at_zero_domain_tokens():
    c = TRUE.chinchilla()
    n, d = np.array([1e7, 3e8]), np.array([2e8, 5e9])
    np.testing.assert_allclose(TRUE(n, d, 0.0), c["E"] + c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"], rtol=1e-12)


def test_recovers_parameters():
    fit = split.fit_split(grid(TRUE))
    for k, v in TRUE.to_dict().items():
        assert getattr(fit.law, k) == pytest.approx(v, rel=1e-3), k
    noisy = split.fit_split(grid(TRUE, noise=1e-3))  # 0.1% noise: E, A, alpha, beta, rho within 2%; B, k within 12%
    for k, tol in (("E", 0.02), ("A", 0.02), ("alpha", 0.02), ("beta", 0.02), ("rho", 0.02), ("B", 0.12), ("k", 0.12)):
        assert getattr(noisy.law, k) == pytest.approx(getattr(TRUE, k), rel=tol), k
    assert noisy.r2 > 0.999


def test_holdout_splits_predicted():
    for check in split.holdout_checks(grid(TRUE, noise=1e-3)):
        assert check["max_abs_rel_err"] < 0.005, check


def test_allocator_matches_brute_force_grid():
    laws, budget = {"legal": LEGAL, "code": CODE}, 1e18
    alloc = split.allocate(laws, budget)
    assert 6 * alloc.n * (alloc.d + sum(alloc.d_prime.values())) == pytest.approx(budget, rel=1e-9)
    logn = np.linspace(np.log(3e7), np.log(3e8), 61)
    frac_d, frac_legal = np.linspace(0, 1, 301)[1:], np.linspace(0, 1, 301)
    n, fd, fl = np.meshgrid(np.exp(logn), frac_d, frac_legal, indexing="ij")
    tokens = budget / (6 * n)
    d, rest = fd * tokens, (1 - fd) * tokens
    total = LEGAL(n, d, fl * rest) + CODE(n, d, (1 - fl) * rest)
    i = np.unravel_index(np.argmin(total), total.shape)
    assert alloc.total_loss <= total[i] + 1e-9  # never worse than the grid
    assert alloc.total_loss == pytest.approx(total[i], abs=1e-5)
    assert alloc.n == pytest.approx(n[i], rel=0.03)
    assert alloc.d == pytest.approx(d[i], rel=0.03)
    assert alloc.d_prime["code"] == pytest.approx((1 - fl[i]) * rest[i], rel=0.03)


def test_water_fill_corner_and_bad_budget():
    dp = split.water_fill([LEGAL, CODE], 1e9, 1e6)
    assert dp.sum() == pytest.approx(1e6) and (dp >= 0).all()
    with pytest.raises(LadderError, match="^budget:"):
        split.allocate({"legal": LEGAL}, -1.0)


def test_too_few_points_named():
    with pytest.raises(LadderError, match="^results: 5 distinct"):
        split.fit_split(grid(TRUE).subset(np.arange(5)))


def test_cli_fit_split_and_allocate(tmp_path, capsys):
    rows = []
    for domain, law in (("legal", LEGAL), ("code", CODE)):
        p = grid(law)
        for i in range(len(p)):
            base = p.d_prime[i] == 0
            rows.append({"run": f"{domain}-{i}", "n": p.n[i], "d": p.d[i] + p.d_prime[i], "step": 1, "task": "t",
                         "loss": 1.0, "acc": 0.5, "r": 0.0 if base else 1.0, "d_cpt": p.d_prime[i],
                         "base_run": "b", "kind": "base" if base else "domain", "domain": domain,
                         "domain_loss": p.loss[i], "general_loss": ""})
    append_rows(tmp_path / "results.csv", rows)
    assert cli.main(["fit", "split", str(tmp_path / "results.csv"), "--out", str(tmp_path), "--format", "json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["domains"]["legal"]["params"]["k"] == pytest.approx(8.0, rel=1e-3)
    assert cli.main(["allocate", "split", "--law", str(tmp_path / "split.json"), "--budget", "1e18", "--format", "json"]) == 0
    alloc = json.loads(capsys.readouterr().out)
    assert alloc["total_loss"] == pytest.approx(split.allocate({"code": CODE, "legal": LEGAL}, 1e18).total_loss, rel=1e-5)
    # The law's form and "ours" travel with every output: printed JSON, split.json, allocation.json and .csv.
    assert alloc["law_form"] == split.FORM == "L(N, D, D') = E + A/N^alpha + B/(D' + k D^rho)^beta"
    assert alloc["law_source"].startswith("ours")
    assert fitted["domains"]["legal"]["law_source"].startswith("ours")
    assert json.loads((tmp_path / "allocation.json").read_text())["law_form"] == split.FORM
    assert "law_source" in (tmp_path / "allocation.csv").read_text().splitlines()[0]
    assert (tmp_path / "allocation.png").stat().st_size > 10_000


def _cpt_table(law, sizes=(1e5, 3e5, 1e6), ratios=(0.0, 0.33, 0.67, 1.0), budgets=(0.5, 1.0, 2.0)):
    """A study's results table whose domain loss follows `law`: base runs at 10 tokens per parameter, then
    CPT at share r for budget x N tokens (D = base + (1 - r) d_cpt general tokens, D' = r d_cpt)."""
    rows = []
    for n in sizes:
        base = 10 * n
        rows.append({"run": f"b{n:g}", "n": n, "d": base, "step": 1, "r": 0.0, "d_cpt": 0.0,
                     "domain_loss": float(law(n, base, 0.0))})
        for r in ratios:
            for b in budgets:
                dc = b * n
                rows.append({"run": f"c{n:g}-{r}-{b}", "n": n, "d": base + dc, "step": 1, "r": r, "d_cpt": dc,
                             "domain_loss": float(law(n, base + (1 - r) * dc, r * dc))})
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def test_total_tokens_baseline_is_the_split_law_with_k_and_rho_at_1():
    total = split.SplitLaw(E=1.0, A=25.0, alpha=0.32, B=40.0, beta=0.3, k=1.0, rho=1.0)
    fit = split.fit_split(grid(total), form="total")
    assert fit.law.k == 1.0 and fit.law.rho == 1.0 and fit.r2 > 1 - 1e-9
    assert fit.law.B == pytest.approx(40.0, rel=1e-4) and fit.law.beta == pytest.approx(0.3, rel=1e-4)
    with pytest.raises(LadderError, match="^form:"):
        split.fit_split(grid(total), form="chinchilla")


@pytest.mark.slow  # ~100 s on the loaded 2-core machine (two D-CPT and four split fits)
def test_comparison_on_held_out_runs_picks_the_law_that_generated_them():
    """Runs generated by the split law with rho < 1: refitted without the largest domain budget, ours predicts
    the held-out CPT runs exactly; without the largest size it extrapolates from two sizes (E and A/N^alpha
    are then not separable: 1.5% measured); the total-tokens baseline (a general token is not worth a domain
    token) and the D-CPT law at the final mixture miss by 6-15% on both."""
    out = split.compare_with_baselines(_cpt_table(TRUE, ratios=(0.0, 0.5, 1.0)), n_starts=4)
    size, budget = out["held_out"]["size N=1e+06"], out["held_out"]["largest domain budget of each size"]
    assert size["n_test"] == budget["n_test"] == 9  # 3 shares x 3 budgets; 3 shares x 3 sizes
    assert budget["split"]["mean_abs_rel_err"] < 1e-6 and size["split"]["mean_abs_rel_err"] < 0.02
    for row in (size, budget):
        for baseline in ("total", "dcpt"):
            assert row[baseline]["mean_abs_rel_err"] > 3 * row["split"]["mean_abs_rel_err"] + 0.03
    assert out["best"] == "split"
