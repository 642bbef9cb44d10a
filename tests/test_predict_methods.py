"""The paper's ablations (single-step, compute), the back-tested ensemble, flags and predictability."""

import json

import numpy as np
import pytest

from ladder.laws import single_step as ss
from ladder.laws.backtest import Holdout, splits
from ladder.laws.chinchilla import LOSS_C
from ladder.laws.ensemble import GROWTH, PRIOR, UPWARD, calibrate, conformal_quantile, distance
from ladder.laws.fitting import minimize_from_grid
from ladder.laws.predict import predict, task_data
from ladder.laws.taskfit import fit_task
from ladder.results import columns
from tests.test_predict import _cols, synthetic_rows

SINGLE = np.array([np.log(40.0), np.log(300.0), 0.22, 0.28, -3.2, -0.7, 0.95])


def _single_step_rows(noise=0.0):
    rows = []
    for n in (1e8, 2e8, 4e8, 8e8):
        for c in (1, 2, 5, 10):
            for j, d in enumerate(np.linspace(20 * n * c / 10, 20 * n * c, 10)):
                acc = float(ss.accuracy(SINGLE, np.log([n]), np.log([d]), jac=False)[0][0, 0])
                rows.append({"run": f"{n / 1e6:.0f}M-{c}xC", "n": n, "d": d, "step": j, "task": "t", "loss": 1.0,
                             "acc": acc + noise, "chance": 0.25})
    return rows


def test_single_step_is_the_papers_seven_parameter_law_and_recovers_it(tmp_path):
    cols = _cols(tmp_path, _single_step_rows())
    fit = fit_task(task_data(cols, "t", sorted(set(cols["run"]))), "single-step")
    assert fit.single.names == list(ss.NAMES) and fit.single.converged
    N, D = np.array([7e9, 1.3e10]), np.array([3e12, 5e12])
    truth = ss.accuracy(SINGLE, np.log(N), np.log(D), jac=False)[0][0]
    np.testing.assert_allclose(fit.predict(N, D)[1], truth, atol=2e-3)


def test_compute_uses_flops_per_token_and_extrapolates_it():
    # FLOPs/token = 6N + 2000 N^0.7 (an attention-like excess); loss is a law of C = D x FLOPs/token
    rows = []
    for n in (1e8, 2e8, 4e8, 8e8):
        fpt = 6 * n + 2000 * n ** 0.7
        for c in (1, 2, 5, 10):
            # the last 5 evaluations at the final D: step 1 fits the mean of the last 5
            for j, d in enumerate(np.r_[np.linspace(2 * n * c, 16 * n * c, 5), np.full(5, 20 * n * c)]):
                loss = 0.6 + np.exp(9.0) * (d * fpt) ** -0.18
                rows.append({"run": f"{n:.0f}-{c}", "n": n, "d": d, "step": j, "task": "t", "loss": loss,
                             "acc": 0.25 + 0.5 / (1 + np.exp(4 * (loss - 1.5))), "flops": d * fpt})
    cols = columns(rows)
    data = task_data(cols, "t", sorted(set(cols["run"])))
    assert data.flops_per_token(7e9) == pytest.approx(6 * 7e9 + 2000 * 7e9 ** 0.7, rel=1e-6)
    fit = fit_task(data, "compute")
    assert fit.step1.params["alpha"] == pytest.approx(0.18, abs=2e-3)
    N, D = 7e9, 2e12
    want = 0.6 + np.exp(9.0) * (D * (6 * N + 2000 * N ** 0.7)) ** -0.18
    assert float(fit.predict(N, D)[0]) == pytest.approx(want, rel=2e-3)
    # C = 6ND instead would be wrong here: the law is in the true compute
    assert float(LOSS_C.predict(fit.step1.x, N, D)) != pytest.approx(want, rel=1e-2)


def test_e_at_its_floor_and_failed_optimizer_are_flagged_with_reasons(tmp_path):
    rows = synthetic_rows()
    for r in rows:  # a pure power law with no irreducible loss: E -> 0
        r["loss"] = float(30.0 * r["n"] ** -0.2 + 60.0 * r["d"] ** -0.25)
    pred = predict(_cols(tmp_path, rows), {"big": (7e9, 3e11)}, method="paper", n_bootstrap=0)
    r = pred.results["big"]["t"]
    assert "E0" in r["flags"] and "floor" in r["flag_details"]["E0"]
    assert "NC" not in r["flags"]

    def rosenbrock(x):
        f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        return f, np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])

    fit = minimize_from_grid(rosenbrock, np.array([[-1.5, 2.0]]), ["x", "y"], maxiter=3)
    assert not fit.converged and "restart lowered the objective" in fit.message


def _holdout(m, err, g, loss=None):
    err = np.asarray(err, dtype=float)
    return Holdout(m, "t", [], ["r"] * len(err), 0.5 + err, np.full(len(err), 0.5), float(np.mean(abs(err))), None,
                   loss_rel=None if loss is None else np.asarray(loss), distance=np.asarray(g, dtype=float))


def test_ensemble_weights_are_prior_over_mse_and_intervals_scale_with_distance():
    rng = np.random.default_rng(0)
    suite = []
    for s in range(4):
        e = rng.normal(0, 0.01 * (1.0 + s) ** GROWTH, 20)  # errors that grow with distance as the rule assumes
        suite.append({"t": {"paper": _holdout("paper", e, np.full(20, 1.0 + s), e),
                            "compute": _holdout("compute", 2 * e, np.full(20, 1.0 + s), e)}})
    cal = calibrate(suite, ("paper", "compute"))
    mse_p, mse_c = cal.mse["paper"], cal.mse["compute"]
    assert mse_c == pytest.approx(4 * mse_p)
    ratio = (PRIOR["paper"] / mse_p) / (1 / mse_c)
    assert cal.weights["paper"] / cal.weights["compute"] == pytest.approx(ratio)
    assert sum(cal.weights.values()) == pytest.approx(1)
    # one unit per decade of N beyond the largest fitted N, and per decade of tokens/parameter beyond its largest
    fit_n, fit_d = [1e8, 1e9], [2e10, 2e10]
    assert distance([1e8, 1e10, 1e8, 1e11], [1e9, 2e11, 2e11, 2e12], fit_n, fit_d) == pytest.approx([1, 2, 2, 3])
    assert conformal_quantile(np.arange(1, 20)) == 19 and conformal_quantile(np.arange(1, 40)) == 38
    assert conformal_quantile(np.arange(1, 5)) == float("inf")  # too few cells for a 95% quantile
    assert 0.85 <= cal.coverage <= 1.0 and cal.n_far == 60 and 0.85 <= cal.far_coverage <= 1.0  # g 2, 3, 4


def test_interval_grows_as_distance_squared_and_covers_far_cells():
    # back-test cells near the ladder (g 1-1.3) whose errors grow as g^2; fresh cells at g = 2 (a target's
    # distance) must fall inside the calibrated band about 95% of the time. A band growing as g would hold
    # about 3 in 4 of them (docs/laws.md: 79% of the far OLMo cells).
    rng = np.random.default_rng(1)
    suite = []
    for g in (1.0, 1.1, 1.2, 1.3):
        e = rng.normal(0, 0.01 * g ** GROWTH, 400)
        suite.append({"t": {"paper": _holdout("paper", e, np.full(400, g))}})
    cal = calibrate(suite, ("paper",))
    e = np.concatenate([np.abs(per["t"]["paper"].predicted - 0.5) for per in suite])
    g = np.concatenate([per["t"]["paper"].distance for per in suite])
    # rule U: at least the same quantile over the cells past the ladder (g 1.1-1.3 here), never below the pooled
    up = g > UPWARD
    assert GROWTH == cal.growth == 2.0 and cal.q_acc == max(conformal_quantile(e / g ** 2),
                                                            conformal_quantile(e[up] / g[up] ** 2))
    assert cal.half_width(2.0) == pytest.approx(4 * cal.q_acc)
    far = np.abs(rng.normal(0, 0.01 * 2.0 ** GROWTH, 4000))
    assert 0.93 <= np.mean(far <= cal.half_width(2.0)) <= 0.97
    assert np.mean(far <= conformal_quantile(e / g) * 2.0) < 0.8  # the linear rule's band


def test_ensemble_is_the_default_and_falls_back_without_task_loss(tmp_path):
    cols = _cols(tmp_path, synthetic_rows())
    assert [s.name for s in splits(cols, sorted(set(cols["run"])))][:1] == ["size-out 100M"]
    pred = predict(cols, {"big": (7e9, 3e11)}, n_bootstrap=20)
    r = pred.results["big"]["t"]
    assert r["method"] == "ensemble" and sum(r["weights"].values()) == pytest.approx(1)
    # 4 sizes + 1 budget out, 4 runs each, + far: 800M at 5xC and 10xC from the smaller sizes at 1xC-2xC
    assert [s.name for s in splits(cols, sorted(set(cols["run"])))][-1] == "far 800M"
    assert r["acc_lo"] < r["acc"] < r["acc_hi"] and pred.calibration.n_cells == 22
    assert {"acc_change", "acc_noise"} <= set(r) and "ensemble weights" in pred.table()
    # an accuracy-only table: methods that need the task loss say so and the ensemble keeps the rest
    acc_only = dict(cols, loss=np.full(len(cols["loss"]), np.nan))
    acc_only.pop("lm_loss")
    pred = predict(acc_only, {"big": (7e9, 3e11)}, n_bootstrap=0)
    r = pred.results["big"]["t"]
    assert set(r["weights"]) == {"single-step"} and "FB" in r["flags"]
    assert "needs a task loss; the table leaves blank every value of 'loss'" in r["flag_details"]["FB"]


def test_target_takes_optional_flops_per_token():
    from ladder.errors import LadderError
    from ladder.laws.predict import parse_target

    assert parse_target("7B=6.9e9:3.9e12") == ("7B", (6.9e9, 3.9e12))
    assert parse_target("7B=6.9e9:3.9e12:4.94e10") == ("7B", (6.9e9, 3.9e12, 4.94e10))
    with pytest.raises(LadderError, match="NAME=N:D"):
        parse_target("7B=6.9e9")


def test_worker_processes_do_not_change_the_prediction(tmp_path):
    """Tasks and bootstrap refits spread over processes give the serial run's numbers exactly."""
    rows = synthetic_rows(sizes=(1e8, 2e8, 4e8), multiples=(1, 2, 5))
    rows += [dict(r, task="u", acc=min(1.0, r["acc"] + 0.02)) for r in rows]
    cols = _cols(tmp_path, rows)
    serial, pooled = (predict(cols, {"big": (7e9, 3e11)}, n_bootstrap=30, workers=w) for w in (1, 2))
    assert json.dumps(serial.results) == json.dumps(pooled.results)  # NaN-safe: the same text, digit for digit
    assert serial.calibration.weights == pooled.calibration.weights


def test_bootstrap_past_its_budget_is_cut_and_says_so(tmp_path, monkeypatch):
    """Resamples x runs past BOOTSTRAP_BUDGET: fewer resamples, a warning and a note, never an unbounded refit."""
    from ladder.laws import predict as predict_lib

    cols = _cols(tmp_path, synthetic_rows(sizes=(1e8, 2e8, 4e8), multiples=(1, 2, 5)))  # 9 runs
    monkeypatch.setattr(predict_lib, "BOOTSTRAP_BUDGET", 9 * 25)
    with pytest.warns(UserWarning, match="9 runs x 100 resamples is past the budget of 225 run refits: 25"):
        pred = predict(cols, {"big": (7e9, 3e11)}, method="paper", n_bootstrap=100)
    assert any("25 resamples" in n for n in pred.warnings)
    assert all(len(rows["converged"]) == 25 for rows in pred.samples.values())


def test_task_chunks_cut_tasks_into_one_contiguous_chunk_per_worker():
    from ladder.laws.parallel import task_chunks

    assert task_chunks(["a", "b", "c"], 2) == [(("a", "b"),), (("c",),)]
    assert task_chunks(["a", "b"], 1) == [(("a", "b"),)] and task_chunks(["a"], 4) == [(("a",),)]


def test_a_back_test_cell_no_method_could_fit_judges_none_of_them():
    """A split whose fit set is degenerate (every accuracy at chance: 'cannot fit') leaves its cells NaN for
    every method; counted, they zeroed every weight and the default refused a ladder its methods fit."""
    from ladder.laws.ensemble import weights_from

    err = np.array([[0.01, 0.02], [np.nan, np.nan], [0.03, np.nan]])
    w, mse = weights_from(err, ["paper", "compute"])
    assert w == {"paper": 1.0, "compute": 0.0} and mse["paper"] == pytest.approx((0.01**2 + 0.03**2) / 2)
    w, _ = weights_from(err[:2], ["paper", "compute"])
    assert w["paper"] == pytest.approx(2 / 0.01**2 / (2 / 0.01**2 + 1 / 0.02**2))
