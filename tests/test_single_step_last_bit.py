"""The single-step back-test fits must not hang on the last bit of the arithmetic: numpy's exp and log give
different last bits on AVX-512 and AVX2 CPUs, and before the descent settled its starts (single_step.SETTLE)
that alone moved OLMo back-test cells by up to 15 points and the default's weights by 0.06. A 1-ulp change
of the accuracies is the same kind of perturbation, on any CPU (docs/laws.md "Same numbers on every CPU")."""

import warnings

import numpy as np

from ladder.importers import import_olmo
from ladder.laws.backtest import fit_methods, holdout_fits, splits
from ladder.laws.taskdata import select_runs
from ladder.results import append_rows, read_table

TOLERANCE = 1e-4  # 0.01 accuracy points


def _far_split_predictions(cols, task):
    """Single-step's predictions of the far split's test runs, fitted as the back-test suite does (quick)."""
    far = splits(cols, select_runs(cols))[-1]
    fits, _ = fit_methods(cols, task, far.fit_runs, ["single-step"], quick=True)
    return holdout_fits(cols, task, fits, far.fit_runs, far.test_runs)["single-step"].predicted


def test_a_one_ulp_change_of_the_accuracies_moves_no_back_test_prediction(shared_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        append_rows(tmp_path / "olmo.csv", import_olmo(shared_dir / "reference/olmo_ladder"))
        cols = read_table(tmp_path / "olmo.csv", validate=True)
    for task in ("arc_challenge", "csqa"):  # the two whose far-split cells moved most (7.6 and 15 points)
        base = _far_split_predictions(cols, task)
        for direction in (np.inf, -np.inf):
            nudged = dict(cols, acc=np.nextafter(cols["acc"], direction))
            assert np.max(np.abs(_far_split_predictions(nudged, task) - base)) < TOLERANCE, (task, direction)


def test_single_step_curvature_is_the_derivative_of_the_weighted_jacobian():
    """single_step._curvature (Newton's exact Hessian term, sum_i v_i d2r_i/dx2) against central differences of
    sum_i v_i dr_i/dx, on points and parameters of the OLMo scale, the floor clip included (one row below it)."""
    from ladder.laws import single_step as ss

    rng = np.random.default_rng(1)
    logN, logD = np.log(np.geomspace(2e8, 3e9, 9)), np.log(np.geomspace(4e9, 6e10, 9))
    logA = np.log(rng.uniform(0.3, 0.7, 9))
    X = np.array([[3.0, 5.0, 0.2, 0.3, 0.1, -0.6, 0.9], [6.0, 8.0, 0.35, 0.4, -1.0, -0.3, 0.7],
                  [1.0, 1.0, 0.1, 0.1, 5.0, -0.9999, 0.0]])        # the last: every point under ACC_FLOOR
    v = rng.uniform(-1e-3, 1e-3, (3, 9))
    r, J = ss._residuals(logN, logD, logA)(X, True)
    S = ss._curvature(X, r, J, v, logN, logD, logA)
    fd = np.empty_like(S)
    for j in range(7):
        e = np.zeros(7)
        e[j] = 1e-6
        up, down = (np.einsum("bn,bnp->bp", v, ss._residuals(logN, logD, logA)(X + s * e, True)[1]) for s in (1, -1))
        fd[:, :, j] = (up - down) / 2e-6
    assert np.allclose(S, fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max())
    assert np.allclose(S, np.swapaxes(S, 1, 2), rtol=0, atol=1e-15) and not S[2].any()
