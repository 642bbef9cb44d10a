"""The two-step predictor: synthetic ladders with known laws, bad input, back-test, the paper run on OLMo."""

import json
import warnings

import numpy as np
import pytest

from ladder.cli import main
from ladder.errors import LadderError
from ladder.laws.chinchilla import LOSS_ND
from ladder.laws.predict import METHODS, PAPER_RUNS, backtest, predict, task_data
from ladder.laws.sigmoid import SigmoidForm
from ladder.plots import plot_prediction
from ladder.results import append_rows, read_table

STEP1 = {"a": np.log(30.0), "b": np.log(60.0), "e": np.log(0.5), "alpha": 0.2, "beta": 0.25}
STEP2 = {"a": -0.7, "b": 0.98, "k": 6.0, "L0": 0.75}


def synthetic_rows(sizes=(1e8, 2e8, 4e8, 8e8), multiples=(1, 2, 5, 10), noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for c in multiples:
            for j, d in enumerate(np.linspace(20 * n * c / 25, 20 * n * c, 25)):
                loss = float(LOSS_ND.predict(STEP1, n, d)) * (1 + noise * rng.standard_normal())
                acc = float(SigmoidForm().predict(STEP2, loss)) + noise * rng.standard_normal()
                rows.append({"run": f"{n / 1e6:.0f}M-{c}xC", "n": n, "d": d, "step": j, "task": "t", "loss": loss,
                             "acc": acc, "lm_loss": 2 * loss, "chance": 0.25})
    return rows


def _cols(tmp_path, rows):
    append_rows(tmp_path / "r.csv", rows)
    return read_table(tmp_path / "r.csv", validate=True)


def test_paper_method_predicts_a_synthetic_target_within_its_interval(tmp_path):
    cols = _cols(tmp_path, synthetic_rows())
    N, D = 7e9, 20 * 7e9 * 2
    pred = predict(cols, {"big": (N, D)}, method="paper", n_bootstrap=200)
    plot_prediction(pred, cols, tmp_path / "plots")
    r = pred.results["big"]["t"]
    true_loss = float(LOSS_ND.predict(STEP1, N, D))
    true_acc = float(SigmoidForm().predict(STEP2, true_loss))
    assert r["loss"] == pytest.approx(true_loss, rel=0.02) and r["acc"] == pytest.approx(true_acc, abs=0.02)
    assert r["acc_lo"] <= r["acc"] <= r["acc_hi"] and r["method"] == "paper"
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"step1.png", "step2.png", "chain.png"}
    assert json.loads(json.dumps(pred.to_json()))["big"]["t"]["acc"] == r["acc"]
    fit = pred.fits["t"]  # notebook API: parameters, objective, convergence, residuals
    assert fit.step1.converged and fit.step1.residuals.shape == (16,) and set(fit.step2.params) == set(STEP2)
    L, acc = fit.predict(np.array([1e9, 2e9])[:, None], np.array([1e10, 1e11, 1e12]))
    assert L.shape == acc.shape == (2, 3)


def test_step2_points_skip_the_first_tenth_and_smooth_over_five(tmp_path):
    cols = _cols(tmp_path, synthetic_rows(sizes=(1e8, 2e8), multiples=(1,)))
    data = task_data(cols, "t", ["100M-1xC", "200M-1xC"])
    # 25 checkpoints at D = k/25 * D_final: k=1,2 fall under 10%, 23 remain -> 19 moving averages per run
    assert len(data.point_feature) == 2 * 19
    assert data.feature[0] == pytest.approx(np.mean(cols["loss"][:25][-5:]))
    # a task's chance/flops are kept with the table's index, but a table sharing its run/task/step columns
    # with another chance column is read afresh
    assert data.chance == 0.25 and data.fpt is None
    other = dict(cols, chance=np.full(len(cols["chance"]), 0.5), flops=6 * cols["n"] * cols["d"])
    again = task_data(other, "t", ["100M-1xC", "200M-1xC"])
    assert again.chance == 0.5 and again.fpt == pytest.approx(6 * again.n)
    assert task_data(cols, "t", ["100M-1xC"]).chance == 0.25


def test_every_method_backtests_and_auto_picks_the_lowest_error(tmp_path):
    cols = _cols(tmp_path, synthetic_rows())
    bt = backtest(cols, "t", sorted(set(cols["run"])))
    assert set(bt) == set(METHODS)
    # the largest size (800M) is held out, in the order given; the three smaller sizes are fitted
    runs = sorted(set(cols["run"]))
    held_out = [r for r in runs if r.startswith("800M-")]
    assert held_out == ["800M-10xC", "800M-1xC", "800M-2xC", "800M-5xC"]
    for h in bt.values():
        assert h.test_runs == held_out and h.fit_runs == [r for r in runs if r not in held_out]
        assert len(h.fit_runs) == 12 and h.problem == "" and h.predicted.shape == h.actual.shape == (4,)
    assert all(np.isfinite(h.error) for h in bt.values())
    assert bt["paper"].error < 0.01  # the data follow the paper's law
    pred = predict(cols, {"big": (7e9, 3e11)}, method="auto", n_bootstrap=0)
    chosen = pred.results["big"]["t"]["method"]
    assert bt[chosen].error == min(h.error for h in bt.values())


def test_extrapolation_is_flagged_and_inside_target_warns(tmp_path):
    cols = _cols(tmp_path, synthetic_rows())
    with pytest.warns(UserWarning, match="inside the ladder's range"):
        pred = predict(cols, {"small": (2e8, 4e9), "huge": (1e11, 1e13)}, method="paper", n_bootstrap=0)
    assert "X100" in pred.results["huge"]["t"]["flags"] and "IN" not in pred.results["huge"]["t"]["flags"]
    assert "X100" not in pred.results["small"]["t"]["flags"] and "IN" in pred.results["small"]["t"]["flags"]
    assert "X100" in pred.table() and "the target is more than 100x the compute" in pred.table()


@pytest.mark.parametrize("kwargs, rows, match", [
    ({"method": "paper"}, synthetic_rows(sizes=(1e8,), multiples=(1, 2, 5, 10, 20)), "one model size"),
    ({"method": "single-step"}, synthetic_rows(sizes=(1e8, 2e8), multiples=(1, 2, 5)), "7 parameters"),
    ({"method": "paper", "runs": ["100M-1xC", "200M-1xC"]}, synthetic_rows(), "5 parameters"),
    ({"method": "magic"}, synthetic_rows(), "unknown method"),
    ({"runs": ["7B-*"]}, synthetic_rows(), "matches no run"),
])
def test_bad_input_is_a_clear_error(tmp_path, kwargs, rows, match):
    cols = _cols(tmp_path, rows)
    with pytest.raises(LadderError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predict(cols, {"big": (7e9, 3e11)}, n_bootstrap=0, **kwargs)


def test_default_runs_are_every_size_at_the_papers_budgets_when_the_papers_16_are_there():
    """docs/laws.md "Which runs the default fits": on the published ladder the 16 and the 3B runs at 1xC-10xC,
    not the 0.5xC runs or the reruns; any other ladder: every run; "paper" still names the 16."""
    from ladder.laws.predict import select_runs

    olmo = [f"{s}-{c}" for s in ("190M", "370M", "760M", "1B", "3B")
            for c in ("0.5xC", "1xC", "1xC-rerun", "2xC", "5xC", "10xC")]
    cols = {"run": np.array(olmo)}
    assert select_runs(cols) == [f"{s}-{c}xC" for s in ("190M", "370M", "760M", "1B", "3B") for c in (1, 2, 5, 10)]
    assert select_runs(cols, "paper") == list(PAPER_RUNS)
    assert select_runs(cols, "3B-*") == [r for r in olmo if r.startswith("3B-")]
    other = {"run": np.array(olmo[6:])}  # 190M missing: not the published ladder, so every run
    assert select_runs(other) == olmo[6:]


def test_ensemble_without_back_test_splits_falls_back_to_the_paper_method(tmp_path):
    cols = _cols(tmp_path, synthetic_rows(sizes=(1e8, 2e8), multiples=(1, 2, 5)))
    with pytest.warns(UserWarning, match="allows no back-test split"):
        pred = predict(cols, {"big": (7e9, 3e11)}, n_bootstrap=0)
    r = pred.results["big"]["t"]
    assert r["method"] == "paper" and "FB" in r["flags"] and pred.calibration is None


def test_paper_method_runs_end_to_end_on_the_published_ladder(shared_dir, tmp_path, capsys):
    out = tmp_path / "olmo.csv"
    assert main(["import", "olmo", str(shared_dir / "reference/olmo_ladder/ladder-runs"), "-o", str(out)]) == 0
    code = main(["predict", str(out), "--target", "7B=6887575552:3945065873408", "--target",
                 "13B=13202396160:5000088518656", "--method", "paper", "--tasks", "mmlu,hellaswag",
                 "--bootstrap", "100", "--out", str(tmp_path / "pred.json")])
    assert code == 0
    pred = json.loads((tmp_path / "pred.json").read_text())
    printed = capsys.readouterr().out
    fitted = list(PAPER_RUNS) + [f"3B-{c}xC" for c in (1, 2, 5, 10)]  # the default: every size at 1xC-10xC
    assert f"fitted runs: {', '.join(fitted)}\n" in printed
    for target in ("7B", "13B"):
        for task in ("mmlu", "hellaswag"):
            r = pred[target][task]
            assert r["method"] == "paper" and 0.25 < r["acc_lo"] <= r["acc"] <= r["acc_hi"] < 1
    assert pred["13B"]["mmlu"]["compute_ratio"] == pytest.approx(32.8, abs=0.1)  # x the 3B-10xC run's 6ND
    assert "X100" not in pred["13B"]["mmlu"]["flags"] and "X100" not in pred["7B"]["mmlu"]["flags"]
    assert "NC" not in pred["7B"]["mmlu"]["flags"] and "(ABNORMAL" not in printed  # fits that match the reference
    assert (tmp_path / "chain.png").exists()


def test_the_reported_interval_always_holds_its_point_and_plots(tmp_path):
    """A percentile interval of biased refits can miss the point (seen on a 3-size ladder with 20 resamples,
    where the plot then raised on a negative error bar): the interval is stretched to the point."""
    from ladder.laws.task_results import bootstrap_interval
    from ladder.plots import _plt, _target

    assert bootstrap_interval(np.array([0.50, 0.51, 0.52, np.nan]), 0.45) == (0.45, pytest.approx(0.5195))
    assert bootstrap_interval(np.array([0.50, 0.51, 0.52]), 0.60) == (pytest.approx(0.5005), 0.60)
    # a prediction file written before the rule: the plot draws it rather than raising
    fig, ax = _plt().subplots()
    _target(ax, 1e9, {"acc": 0.45, "acc_lo": 0.50, "acc_hi": 0.52}, "acc", "*", "old file")
    fig.savefig(tmp_path / "p.png")
