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
