"""The generic fitter: Huber values/derivatives, multi-start L-BFGS-B, bound and convergence reporting."""

import numpy as np
import pytest

from ladder.laws.fitting import FitResult, huber, minimize_from_grid


def test_huber_values_and_derivative_match_finite_differences():
    r = np.array([-0.5, -1e-3, -1e-4, 0.0, 5e-4, 1e-3, 0.2])
    v, d = huber(r, 1e-3)
    np.testing.assert_allclose(v[[2, 3, 4]], 0.5 * r[[2, 3, 4]] ** 2)
    np.testing.assert_allclose(v[[0, 6]], 1e-3 * (np.abs(r[[0, 6]]) - 5e-4))
    eps = 1e-9
    fd = (huber(r + eps, 1e-3)[0] - huber(r - eps, 1e-3)[0]) / (2 * eps)
    np.testing.assert_allclose(d, fd, atol=1e-6)


def _line_problem(x, y):
    def fun_and_grad(p):
        res = p[0] + p[1] * x - y
        return 0.5 * float(res @ res), np.array([res.sum(), res @ x])
    return fun_and_grad


def test_grid_fit_recovers_line_and_keeps_best_start():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 50)
    y = 0.3 + 2.0 * x + 1e-3 * rng.standard_normal(50)
    fit = minimize_from_grid(_line_problem(x, y), np.array([[0.0, 0.0], [5.0, -5.0]]), ["a", "b"],
                             residual_fn=lambda p: p[0] + p[1] * x - y)
    assert isinstance(fit, FitResult) and fit.converged and fit.n_starts == 2
    assert fit.params["a"] == pytest.approx(0.3, abs=2e-3) and fit.params["b"] == pytest.approx(2.0, abs=4e-3)
    assert fit.residuals.shape == (50,) and fit.at_bound == []


def test_bound_hit_is_reported_by_name():
    x = np.linspace(0, 1, 20)
    y = 1.0 + 2.0 * x
    fit = minimize_from_grid(_line_problem(x, y), np.zeros((1, 2)), ["a", "b"], bounds=[(None, None), (0, 1)])
    assert fit.at_bound == ["b"] and fit.params["b"] == pytest.approx(1.0)


def test_all_starts_non_finite_is_an_error():
    with pytest.raises(ValueError, match="finite"):
        minimize_from_grid(lambda p: (np.nan, np.zeros(1)), np.zeros((3, 1)), ["a"])


def test_lbfgsb_driver_is_scipys_minimize_bit_for_bit():
    """fitting.lbfgsb skips scipy's per-evaluation wrappers; its iterates must stay scipy's own."""
    from scipy.optimize import minimize

    from ladder.laws import single_step as ss
    from ladder.laws.fitting import lbfgsb

    def rosenbrock(x):
        f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        return f, np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])

    rng = np.random.default_rng(0)
    logN, logD = np.log(rng.uniform(1e8, 1e9, 16)), np.log(rng.uniform(1e10, 1e11, 16))
    logA = np.log(ss.accuracy(np.array([3.0, 5.0, 0.2, 0.3, 0.0, -0.7, 1.0]), logN, logD, jac=False)[0][0]
                  + 0.01 * rng.standard_normal(16))
    single = ss._objective(logN, logD, logA, np.ones(16))
    cases = [(rosenbrock, [-1.5, 2.0], None, 1000), (rosenbrock, [-1.5, 2.0], [(None, 0.5), (0.0, None)], 1000),
             (rosenbrock, [-1.5, 2.0], None, 3), (single, ss.starts(0.25)[0], list(ss.BOUNDS), 1000)]
    for fun, x0, bounds, maxiter in cases:
        opts = {"maxiter": maxiter, "gtol": 1e-10, "ftol": 1e-14}
        want = minimize(fun, np.array(x0), jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        got = lbfgsb(fun, np.array(x0), bounds, **opts)
        assert got.x.tobytes() == want.x.tobytes() and got.fun == want.fun
        assert (got.success, got.message, got.nit) == (bool(want.success), str(want.message), want.nit)
