"""The session-10 rules of the default (docs/laws.md "Ladders of other shapes"): the steep guard holds a member's
accuracy past the ladder within what the fitted runs' own slope supports (flag STEEP), and a member no back-test
cell could judge gets a defined weight. Cheap: no fits, stub members."""

from types import SimpleNamespace

import numpy as np
import pytest

from ladder.laws import ensemble
from ladder.laws.backtest import Holdout
from ladder.laws.ensemble import EnsembleFit, Rule, calibrate, weights_from
from ladder.laws.steep import K, NOISE, Envelope

SIZES = np.geomspace(190e6, 1.28e9, 4)


def _near_chance(ratio=20.0):
    """4 sizes x 2 seeds at one ratio, accuracy barely leaving chance (arc_challenge-like, 0.24-0.33)."""
    n = np.repeat(SIZES, 2)
    acc = np.repeat(np.linspace(0.24, 0.33, 4), 2) + np.tile([0.004, -0.004], 4)
    return n, ratio * n, acc


def test_envelope_holds_a_steep_step_past_the_ladder_and_nothing_inside():
    n, d, acc = _near_chance()
    env = Envelope.of(n, d, acc)
    x = np.log10(6 * n * d)
    assert env.x_top == pytest.approx(x.max())
    assert env.slope >= abs(np.polyfit(x, acc, 1)[0]) - 1e-12  # at least the all-runs slope
    N = 3.17e9
    lo, hi = env.bounds(N, 20 * N)
    step = np.log10(6 * N * 20 * N) - env.x_top
    assert hi == pytest.approx(env.y_top + K * env.slope * step + NOISE * env.sigma)
    assert 0.33 < hi < 0.5 and env.clip(0.851, N, 20 * N) == pytest.approx(hi)  # OLMo 3B-1xC's 0.851 is held
    assert env.clip(0.36, N, 20 * N) == 0.36  # a step the runs support is left alone
    assert env.clip(0.9, SIZES[1], 20 * SIZES[1]) == 0.9  # inside the ladder: interpolation, never clipped
    assert Envelope.of(n[:2], d[:2], acc[:2]) is None  # two runs draw no line
    assert Envelope.of(np.full(4, 1e9), np.full(4, 2e10), acc[:4]) is None  # one compute level


class _Member:
    """A stub TaskFit: fitted on the near-chance runs, predicting a steep sigmoid past them."""

    def __init__(self, name, acc_at):
        n, d, acc = _near_chance()
        self.data = SimpleNamespace(n=n, d=d, acc=acc)
        self.method = SimpleNamespace(name=name, feature="lm_loss", single_step="", form="nd")
        self.task, self.step1, self.step2, self.form, self.sigmoid = "t", None, None, None, None
        self.acc_at = acc_at

    def predict(self, N, D, F=None, rows=None):
        return np.nan, np.full(np.shape(N), self.acc_at(N)) if rows is None else np.full(len(rows), self.acc_at(N))


def test_ensemble_clips_each_member_and_flags_steep():
    steep, tame = _Member("lm-loss", lambda N: 0.851), _Member("single-step", lambda N: 0.36)
    N = 3.17e9
    on = EnsembleFit({"lm-loss": steep, "single-step": tame}, {"lm-loss": 0.5, "single-step": 0.5}, steep=True)
    off = EnsembleFit({"lm-loss": steep, "single-step": tame}, {"lm-loss": 0.5, "single-step": 0.5}, steep=False)
    hi = on.envelopes["lm-loss"].bounds(N, 20 * N)[1]
    assert on.predict(N, 20 * N)[1] == pytest.approx(0.5 * hi + 0.5 * 0.36)
    assert off.predict(N, 20 * N)[1] == pytest.approx(0.5 * 0.851 + 0.5 * 0.36)
    assert np.allclose(on.predict(N, 20 * N, rows={"lm-loss": [0] * 3, "single-step": [0] * 3})[1],
                       0.5 * hi + 0.5 * 0.36)  # bootstrap samples are held the same way
    flags = on.steep_clips(N, 20 * N)
    assert [c for c, _ in flags] == ["STEEP"] and "lm-loss: 0.851 held to" in flags[0][1]
    said = off.steep_clips(N, 20 * N)  # with the guard off (Rule(steep=False)): flagged, not clipped
    assert [c for c, _ in said] == ["STEEP"] and "lm-loss: 0.851, past" in said[0][1]
    assert on.steep_clips(SIZES[2], 20 * SIZES[2]) == []


def test_member_without_back_test_cells_weighs_as_the_worst_judged():
    err = np.array([[0.01, np.nan, 0.02], [-0.01, np.nan, 0.04], [0.02, np.nan, np.nan]])
    methods = ["lm-loss", "single-step", "compute"]
    prior = {"lm-loss": 2.0}
    w0, mse = weights_from(err, methods, prior, unjudged=False)
    assert w0["single-step"] == 0 and w0["compute"] == 0 and w0["lm-loss"] == 1  # compute misses one cell: 0
    w, _ = weights_from(err, methods, prior, unjudged=True)
    assert np.isnan(mse["single-step"]) and w["compute"] == 0
    assert w["lm-loss"] / w["single-step"] == pytest.approx(2.0)  # prior 2 vs 1 at the same (worst) MSE
    # no judged method at all: nothing to compare with, every weight stays 0 (the default falls back)
    assert sum(weights_from(np.full((2, 2), np.nan), ["a", "b"], {}, unjudged=True)[0].values()) == 0


def test_calibrate_with_an_unjudged_member_keeps_the_band_of_the_judged():
    e = np.array([0.01, -0.02, 0.005, 0.03])
    nan = np.full(2, np.nan)

    def hs(s):
        return {"lm-loss": Holdout("lm-loss", "t", [], ["a", "b"], 0.5 + e[2 * s:2 * s + 2], np.full(2, 0.5), 0.0,
                                   None, distance=np.ones(2)),
                "single-step": Holdout("single-step", "t", [], ["a", "b"], nan, nan, float("nan"), None, "7 > 6 runs",
                                       distance=np.ones(2))}
    suite = [{"t": hs(s)} for s in range(2)]
    cal = calibrate(suite, ("lm-loss", "single-step"), prior={"lm-loss": 2.0}, rule=Rule(True, True, False))
    assert cal.weights["single-step"] == pytest.approx(1 / 3) and cal.q_acc == pytest.approx(0.03)
    old = calibrate(suite, ("lm-loss", "single-step"), prior={"lm-loss": 2.0}, rule=Rule(True, False, False))
    assert old.weights == {"lm-loss": 1.0, "single-step": 0.0} and old.q_acc == cal.q_acc


def test_the_default_rule_is_the_adopted_one():
    assert ensemble.RULE == Rule(steep=True, unjudged=True, per_task=False, upward=True)
