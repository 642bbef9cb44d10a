"""Rule U of the default's band (docs/laws.md "Session 10: interval coverage on other shapes"): on a one-ratio
ladder every back-test split but the largest size's sits at g = 1, so the pooled quantile is an interpolation
error's; the band's scale is also at least the quantile of the cells that extrapolate upward. Cheap: stub cells,
no fits."""

import math

import numpy as np
import pytest

from ladder.laws import ensemble
from ladder.laws.backtest import Holdout
from ladder.laws.ensemble import UPWARD, Rule, band_scale, calibrate, rule_scale


def test_upward_cells_raise_the_scale_and_never_lower_it():
    interior = np.full(80, 0.01)                       # 80 interpolation cells, scaled error 0.01
    g = np.r_[np.ones(80), np.full(20, 1.22)]          # 20 cells one size step past the ladder
    big = np.r_[interior, np.full(20, 0.03)]
    assert rule_scale(big, g, upward=False) == band_scale(big) == pytest.approx(0.03)  # 20 of 100 > 5%: pooled sees it
    few = np.r_[interior, np.full(2, 0.03)]            # the upward split is 2 cells of 82: the pooled 95% misses it
    g2 = np.r_[np.ones(80), np.full(2, 1.22)]
    assert band_scale(few) == pytest.approx(0.01)
    assert rule_scale(few, g2, upward=True) == pytest.approx(0.03)  # fewer than 19: their largest (band_scale)
    small = np.r_[np.full(80, 0.02), np.full(2, 0.001)]
    assert rule_scale(small, g2, upward=True) == band_scale(small)  # never narrower than the pooled band
    assert rule_scale(few, np.ones(82), upward=True) == band_scale(few)  # no upward cell: as before


def test_a_rerun_a_little_past_the_ratio_is_not_an_upward_cell():
    assert UPWARD == pytest.approx(1 + math.log10(1.2))
    scores = np.r_[np.full(80, 0.01), np.full(2, 0.05)]
    g = np.r_[np.ones(80), np.full(2, 1 + math.log10(1.1))]  # 1.1x the fitted tokens per parameter
    assert rule_scale(scores, g, upward=True) == band_scale(scores)


def _suite(errors, dist):
    """One back-test split per (errors, distances) pair: one task, one member."""
    return [{"t": {"lm-loss": Holdout("lm-loss", "t", [], [f"r{i}" for i in range(len(e))],
                                      0.5 + np.asarray(e), np.full(len(e), 0.5), 0.0, None,
                                      distance=np.asarray(d, dtype=float))}} for e, d in zip(errors, dist)]


def test_calibrate_applies_u_to_the_band_and_its_leave_one_split_out_folds():
    rng = np.random.default_rng(0)
    inside = [rng.normal(0, 0.005, 16) for _ in range(12)]  # 12 interior size-out splits, g = 1: 192 cells
    top = np.full(8, 0.04)  # the largest size's split, one-signed bias, g = 1.2: 8 of 200 cells, under 5%
    suite = _suite(inside + [top], [np.ones(16)] * 12 + [np.full(8, 1.2)])
    pooled = calibrate(suite, ("lm-loss",), prior={}, rule=Rule(True, True, False, False))
    u = calibrate(suite, ("lm-loss",), prior={}, rule=Rule(True, True, False, True))
    assert u.q_acc == pytest.approx(0.04 / 1.2 ** 2)  # the upward cells' own (largest: 8 < 19) scaled error
    assert pooled.q_acc < u.q_acc and u.weights == pooled.weights and u.ensemble_mae == pooled.ensemble_mae
    assert u.coverage >= pooled.coverage  # each fold's scale is at least the pooled one's
    assert ensemble.RULE.upward
