"""Honest flags and honest files (#13 item 4): what a prediction says about itself must hold.

Each test failed before its fix: a target below the ladder flagged IN, accuracy below chance predicted above
every data point with no flag, BOOT on every exact (noise-free) ladder, bare NaN in the JSON files.
"""

import json
import math
import warnings

import numpy as np
import pytest

from ladder import storage
from ladder.cli import main
from ladder.laws.predict import predict
from ladder.results import append_rows, read_table
from test_predict import synthetic_rows


def _strict(text: str):
    """json.loads refusing NaN/Infinity: what JSON.parse and jq's strict readers accept."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "r.csv"
    append_rows(path, synthetic_rows())
    return path


def test_write_json_writes_null_for_missing_numbers(tmp_path):
    storage.write_json(tmp_path / "x.json", {"a": float("nan"), "b": [np.float64("inf"), np.float32(1.5)],
                                             "c": np.array([1.0, np.nan]), "d": np.int64(3), "e": True})
    assert _strict((tmp_path / "x.json").read_text()) == {"a": None, "b": [None, 1.5], "c": [1.0, None],
                                                          "d": 3, "e": True}


def test_every_json_predict_writes_is_strict_json(table, tmp_path, capsys):
    """Before: the back-test error of a method without cells (single-step here) was written as bare NaN."""
    out = tmp_path / "p.json"
    assert main(["predict", str(table), "--target", "x=7e9:2.8e11", "--bootstrap", "0", "-o", str(out)]) == 0
    assert _strict(out.read_text())["x"]["t"]["backtest_error"]["single-step"] is None
    out = tmp_path / "h.json"
    assert main(["predict", str(table), "--target", "x=7e9:2.8e11", "--bootstrap", "0", "--method", "paper",
                 "--holdout", "800M-*", "-o", str(out)]) == 0
    capsys.readouterr()
    for path in (out, out.with_name("h.holdout.json")):
        _strict(path.read_text())


def test_a_target_below_the_ladder_is_an_extrapolation_not_inside(table):
    """Before: x=100:1e9 (N 10^6 below the smallest rung) was flagged IN, 'not an extrapolation', with the
    calibrated band of a target inside (distance g = 1)."""
    cols = read_table(table, validate=True)
    targets = {"in": (2e8, 4e9), "tiny": (100.0, 1e9), "short": (4e8, 2e9), "big": (7e9, 2.8e11)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = predict(cols, targets, n_bootstrap=0)
    flags = {t: pred.results[t]["t"]["flags"] for t in targets}
    assert "IN" in flags["in"] and "BELOW" not in flags["in"]
    for t in ("tiny", "short"):  # N below the smallest rung; 5 tokens per parameter, the ladder's fewest 20
        assert "BELOW" in flags[t] and "IN" not in flags[t]
        assert any(f"target {t} is below the ladder" in str(w.message) for w in caught)
    assert not {"IN", "BELOW"} & set(flags["big"])
    width = {t: pred.results[t]["t"]["acc_hi"] - pred.results[t]["t"]["acc_lo"] for t in targets}
    g = {t: pred.results[t]["t"]["distance"] for t in targets}
    assert g["in"] == 1.0 and g["tiny"] == pytest.approx(1 + math.log10(1e8 / 100) + math.log10(1e9 / 100 / 200))  # and D/N above
    assert g["short"] == pytest.approx(1 + math.log10(20 / 5))
    assert width["short"] > width["in"] and width["tiny"] > width["in"]
    assert "BELOW" in pred.table() and "below the ladder" in pred.table()


def test_accuracy_below_chance_everywhere_is_flagged_and_the_interval_reaches_the_data(tmp_path):
    """Before: accuracies 0.10-0.19 on a chance-0.25 task predicted above every data point, interval too, with no
    flag. Now SUB names the task, and the interval reaches down to the best measured accuracy."""
    rows = synthetic_rows()
    loss = np.array([r["loss"] for r in rows])
    for r in rows:
        r["acc"] = 0.10 + 0.09 * (loss.max() - r["loss"]) / np.ptp(loss)
    append_rows(tmp_path / "r.csv", rows)
    cols = read_table(tmp_path / "r.csv", validate=True)
    r = predict(cols, {"big": (7e9, 2.8e11)}, method="paper", n_bootstrap=0).results["big"]["t"]
    assert "SUB" in r["flags"] and r["flag_details"]["SUB"].startswith("t: every fitted run's final accuracy")
    assert r["acc"] > 0.19 and r["acc_lo"] == pytest.approx(0.19)


def test_a_noise_free_ladder_raises_no_boot(tmp_path):
    """Before: BOOT '100% of refits did not converge' on this noise-free 4-size x 4-budget table: at an exact fit
    every gain is rounding, the relative stopping rule never held, every step-1 refit ran to its cap."""
    append_rows(tmp_path / "r.csv", synthetic_rows(noise=0.0))
    cols = read_table(tmp_path / "r.csv", validate=True)
    pred = predict(cols, {"big": (7e9, 2.8e11)}, method="paper", n_bootstrap=5)
    r = pred.results["big"]["t"]
    assert "BOOT" not in r["flags"] and "SUB" not in r["flags"]
    assert pred.samples["t"]["converged"].all()


def test_boot_counts_refits_short_of_their_optimum():
    from ladder.laws.task_results import refits_short
    samples, conv = np.linspace(0, 1, 100), np.ones(100, dtype=bool)
    conv[:5] = False
    assert refits_short(samples, conv) == ""  # 5%: not more than BOOT_SHARE
    conv[:10] = False
    assert refits_short(samples, conv).startswith("10% of refits stopped short of their optimum")
    assert "fewer than 2 converged" in refits_short(samples, np.zeros(100, dtype=bool))


def test_a_loss_band_over_100_percent_stops_at_zero():
    """The smoke ladder's calibrated loss band is wider than 100% far out: loss x (1 - band) was reported as a
    negative lower bound (prose_continuation loss_lo -0.09)."""
    from ladder.laws.ensemble import Calibration
    from ladder.laws.task_results import widen_to_calibration

    c = Calibration(weights={}, mse={}, q_acc=0.01, q_loss=0.5, n_cells=20, coverage=0.95, loss_coverage=0.95,
                    ensemble_mae=0.01)
    r = {"acc": 0.5, "acc_lo": 0.45, "acc_hi": 0.55, "loss": 2.0, "loss_lo": 1.9, "loss_hi": 2.1, "distance": 2.0}
    widen_to_calibration(r, c)  # half-width 0.5 x 2^2 = 200%
    assert r["loss_lo"] == 0.0 and r["loss_hi"] == pytest.approx(6.0)
