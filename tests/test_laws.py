"""Step-1 and step-2 fits: recovery of known parameters, the published Chinchilla replication, bootstrap solver."""

import csv

import numpy as np
import pytest

from ladder.laws.chinchilla import LOSS_C, LOSS_ND, fit_loss, fit_loss_batched
from ladder.laws.batched import minimize_batched
from ladder.laws.sigmoid import SigmoidForm, fit_sigmoid, fit_sigmoid_batched

TRUE_ND = {"a": np.log(400.0), "b": np.log(1800.0), "e": np.log(1.8), "alpha": 0.34, "beta": 0.36}


def _points(rng, noise):
    N = np.repeat(np.geomspace(1e8, 3e9, 6), 5)
    D = N * np.tile([5.0, 10, 20, 50, 100], 6)
    L = LOSS_ND.predict(TRUE_ND, N, D) * np.exp(noise * rng.standard_normal(N.size))
    return N, D, L


def test_step1_recovers_known_parameters_from_noisy_points():
    N, D, L = _points(np.random.default_rng(0), 2e-3)
    fit = fit_loss(LOSS_ND, N, D, L)
    assert fit.converged and fit.residuals.shape == (30,)
    got = LOSS_ND.readable(fit.params)
    assert got["E"] == pytest.approx(1.8, rel=0.03)
    assert got["alpha"] == pytest.approx(0.34, abs=0.03) and got["beta"] == pytest.approx(0.36, abs=0.03)
    # predictions are vectorised over N and D and match the truth where the data are
    grid = LOSS_ND.predict(fit.params, N[:, None], D[None, :5])
    assert grid.shape == (30, 5)
    np.testing.assert_allclose(LOSS_ND.predict(fit.params, N, D), LOSS_ND.predict(TRUE_ND, N, D), rtol=5e-3)


def test_compute_form_recovers_its_exponent():
    C = np.geomspace(1e18, 1e22, 20)
    N = np.sqrt(C / 6 / 20)
    L = 1.7 + np.exp(12.0) * C ** -0.2
    fit = fit_loss(LOSS_C, N, C / (6 * N), L)
    assert fit.params["alpha"] == pytest.approx(0.2, abs=1e-3) and np.exp(fit.params["e"]) == pytest.approx(1.7, rel=1e-3)


def test_chinchilla_replication_objective_and_parameters(shared_dir):
    with open(shared_dir / "reference/chinchilla/chinchilla_fig4_points.csv") as f:
        rows = list(csv.DictReader(f))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(L)[:240]  # drop the 5 highest-loss points
    N, C, L = N[keep], C[keep], L[keep]
    fit = fit_loss(LOSS_ND, N, C / (6 * N), L)  # SUM of Huber(1e-3) of log residuals
    assert fit.converged
    assert fit.objective == pytest.approx(0.0010183, rel=1e-4)
    got = LOSS_ND.readable(fit.params)
    for k, v in {"A": 477.8, "B": 2143.9, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}.items():
        assert got[k] == pytest.approx(v, rel=0.01), k


def test_batched_refit_with_unit_weights_matches_the_full_fit():
    N, D, L = _points(np.random.default_rng(1), 2e-3)
    fit = fit_loss(LOSS_ND, N, D, L)
    X, f, conv = fit_loss_batched(LOSS_ND, fit.x + 0.01, N, D, L, np.ones((3, N.size)))
    assert conv.all()
    np.testing.assert_allclose(f, fit.objective, rtol=1e-6)
    # doubling every weight doubles the objective and leaves the optimum in place
    X2, f2, _ = fit_loss_batched(LOSS_ND, fit.x, N, D, L, 2 * np.ones((1, N.size)))
    np.testing.assert_allclose(f2, 2 * fit.objective, rtol=1e-6)


@pytest.mark.parametrize("form", [LOSS_ND, LOSS_C], ids=lambda f: f.name)
def test_refits_log_loss_by_exp_is_log_loss_to_rounding(form):
    """The bootstrap refits' cheaper log L-hat (one exp per term, shifted by the point's largest) is the full
    fits' logaddexp form to rounding, value and Jacobian, also where a term would overflow exp unshifted."""
    rng = np.random.default_rng(4)
    X = form.grid[rng.choice(len(form.grid), 64)] + rng.normal(0, 0.1, (64, len(form.names)))
    X[0, 0] = 800.0  # exp(a - alpha log N) alone would overflow
    X[1, 0], X[1, form.names.index("alpha")] = 6000.0, 300.0  # a row's terms spread past exp's range
    logN, logD = np.log(rng.uniform(2e7, 1e9, (64, 16))), np.log(rng.uniform(1e9, 1e11, (64, 16)))
    for lN, lD in ((logN, logD), (logN[0], logD[0])):  # each problem its own points, or shared points
        y, J = form.log_loss(X, lN, lD)
        y2, J2 = form.log_loss_by_exp(X, lN, lD)
        np.testing.assert_allclose(y2, y, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(J2, J, rtol=1e-12, atol=1e-13)
        assert np.array_equal(form.log_loss_by_exp(X, lN, lD, jac=False)[0], y2)


def test_step2_sums_equal_the_direct_weighted_sums():
    """fit_sigmoid_batched forms its sums of d = s (1 - s) from (1, u, y, u y, u^2) columns; they equal the
    weighted sums of the products of (s, e, d, 1, y) taken point by point."""
    from ladder.laws.sigmoid import _sums

    rng = np.random.default_rng(5)
    L, y = rng.uniform(0.6, 1.8, 300), rng.uniform(0.2, 0.9, 300)
    W = rng.poisson(1.0, (7, 300)).astype(np.float64)
    k, L0, c = rng.uniform(1, 12, 7), rng.uniform(0.8, 1.4, 7), 1.1
    s = 1 / (1 + np.exp(-k[:, None] * (L - L0[:, None])))
    u = L - c
    G = _sums(s, W, L0 - c, np.column_stack([np.ones_like(L), u, y, u * y, u * u]), chunk=3)
    d = s * (1 - s)
    Q = np.stack([s, d * (L - L0[:, None]), d, np.ones_like(s), np.broadcast_to(y, s.shape)], -1)
    ref = np.einsum("bn,bni,bnj->bij", W, Q, Q)
    for i, j in [(0, 1), (0, 2), (1, 1), (1, 2), (2, 2), (1, 3), (1, 4), (2, 3), (2, 4)]:
        np.testing.assert_allclose(G[:, i, j], ref[:, i, j], rtol=1e-11, atol=1e-12, err_msg=f"{i}{j}")
        np.testing.assert_allclose(G[:, j, i], ref[:, i, j], rtol=1e-11, atol=1e-12, err_msg=f"{j}{i}")


@pytest.mark.parametrize("floor", [None, 0.25])
def test_step2_sigmoid_recovers_parameters(floor):
    rng = np.random.default_rng(2)
    form = SigmoidForm(floor)
    true = {"a": -0.7, "b": 0.95, "k": 6.0, "L0": 0.9} if floor is None else {"b": 0.95, "k": 6.0, "L0": 0.9}
    L = rng.uniform(0.5, 1.6, 400)
    acc = form.predict(true, L) + 0.005 * rng.standard_normal(400)
    fit = fit_sigmoid(form, L, acc)
    assert fit.converged
    for k, v in true.items():
        assert fit.params[k] == pytest.approx(v, rel=0.05), k
    if floor is not None:
        assert form.predict(fit.params, 50.0) == pytest.approx(floor, abs=1e-6)  # floor pinned at chance
    X, f, conv = fit_sigmoid_batched(form, fit.x, L, acc, np.ones((2, 400)))
    np.testing.assert_allclose(X, np.stack([fit.x] * 2), atol=1e-4)


def _resampled_sigmoid(floor, seed, true_free, true_floored, n_resamples):
    """A step-2 problem for the refit tests: 300 noisy points of a known sigmoid (the form's parameters from
    `true_free`, or `true_floored` with a floor), its full fit, and Poisson resample weights."""
    rng = np.random.default_rng(seed)
    form = SigmoidForm(floor)
    L = rng.uniform(0.4, 1.6, 300)
    acc = form.predict(true_free if floor is None else true_floored, L) + 0.01 * rng.standard_normal(300)
    W = rng.poisson(1.0, (n_resamples, 300)).astype(np.float64)
    return form, L, acc, fit_sigmoid(form, L, acc), W


@pytest.mark.parametrize("floor", [None, 0.25])
def test_step2_refits_by_variable_projection_land_on_the_four_parameter_optimum(floor):
    """The bootstrap's step-2 refits solve (a, b) exactly given (k, L0); on resamples where the ceiling b = 1
    binds and where it does not, they reach the optimum a tightly converged 4-parameter descent reaches."""
    form, L, acc, fit, W = _resampled_sigmoid(floor, 3, {"a": -0.75, "b": 0.99, "k": 5.0, "L0": 0.9},
                                              {"b": 1.0, "k": 5.0, "L0": 0.9}, 40)
    X, f, conv = fit_sigmoid_batched(form, fit.x, L, acc, W)

    def residual_fn(X, jac):
        y, J = form.acc(X, L, jac)
        return y - acc, J

    X4, f4, _ = minimize_batched(residual_fn, np.tile(fit.x, (40, 1)), W, bounds=form.bounds, rtol=1e-13,
                                 max_iter=5000)
    assert conv.all()
    assert (f <= f4 * (1 + 1e-7)).all()
    np.testing.assert_allclose(form.predict(X, L), form.predict(X4, L), atol=2e-4)
    at_ceiling = np.isclose(X[:, 1 if floor is None else 0], form.bounds[1 if floor is None else 0][1])
    assert 0 < at_ceiling.sum() < 40  # both kinds of resample were exercised


@pytest.mark.parametrize("floor", [None, 0.25])
def test_step2_shared_start_matches_per_problem_start(floor):
    """Refits that all start at the full fit take their start's sums from one product of the weights with
    per-point columns (`_shared_start`), not from a sigmoid per problem; they reach the optimum the per-problem
    start reaches (the starts nudged apart by 1e-12 take that path), within the solver's tolerance."""
    form, L, acc, fit, W = _resampled_sigmoid(floor, 4, {"a": -0.7, "b": 0.97, "k": 6.0, "L0": 0.9},
                                              {"b": 0.97, "k": 6.0, "L0": 0.9}, 30)
    X, f, conv = fit_sigmoid_batched(form, fit.x, L, acc, W)
    X0 = np.tile(fit.x, (30, 1))
    X0[:, -1] += 1e-12 * np.arange(30)
    Xc, fc, convc = fit_sigmoid_batched(form, X0, L, acc, W)
    assert conv.all() and convc.all()
    np.testing.assert_allclose(f, fc, rtol=3e-7)
    np.testing.assert_allclose(form.predict(X, L), form.predict(Xc, L), atol=1e-4)
    # the start's sums themselves equal the per-problem ones
    from ladder.laws.sigmoid import _shared_start, _sums

    th0, c = form.full(fit.x)[0, 2:], 1.1
    const = {"1": W.sum(1), "y": W @ acc, "yy": W @ (acc * acc)}
    a, b, f0, lin, G = _shared_start(form, th0, L, acc, W, c, const)
    s = np.tile(1 / (1 + np.exp(-th0[0] * (L - th0[1]))), (30, 1))
    u = L - c
    G_ref = _sums(s, W, np.full(30, th0[1] - c), np.column_stack([np.ones_like(L), u, acc, u * acc, u * u]), chunk=7)
    G_ref[:, 0, 0], G_ref[:, 0, 3] = (W * s * s).sum(1), (W * s).sum(1)
    G_ref[:, 3, 0], G_ref[:, 3, 3] = G_ref[:, 0, 3], W.sum(1)
    np.testing.assert_allclose(G, G_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(lin["sy"], (W * s * acc).sum(1), rtol=1e-12)
    X_start = np.column_stack(([a, b] if floor is None else [b]) + [np.full(30, v) for v in th0])
    f_ref = 0.5 * (W * (form.predict(X_start, L) - acc) ** 2).sum(1)
    np.testing.assert_allclose(f0, f_ref, rtol=1e-11)


def test_sigmoid_bounds_are_reported():
    L = np.linspace(0.5, 1.5, 50)
    acc = 1.2 - 0.5 * L  # exceeds 1 at low loss: the ceiling b pins at its bound
    fit = fit_sigmoid(SigmoidForm(), L, np.clip(acc, 0, 1.2))
    assert "b" in fit.at_bound


def test_single_step_polish_objective_is_the_batched_one_digit_for_digit():
    """L-BFGS-B polishes single-step fits through a one-row objective (no batch axis, for speed); it must give
    the batched residuals' value and gradient exactly, or the polished optima would drift."""
    from ladder.laws import single_step as ss
    from ladder.laws.batched import robust_loss

    rng = np.random.default_rng(4)
    N = np.exp(rng.uniform(18, 21, 16))
    D, acc = N * rng.uniform(20, 200, 16), rng.uniform(0.3, 0.8, 16)
    logs = np.log(N), np.log(D), np.log(acc)
    w = rng.integers(1, 4, 16).astype(np.float64)
    batched, one_row = ss._residuals(*logs), ss._objective(*logs, w)
    for x in ss.starts(0.25) + rng.normal(0, 0.2, (33, 7)):
        r, J = batched(x[None])
        v, d, _ = robust_loss(r[0], ss.HUBER_DELTA)
        f, g = one_row(x)
        assert f == float(w @ v) and np.array_equal(g, J[0].T @ (w * d))


def test_single_step_trial_intermediates_give_the_residuals_jacobian_bit_for_bit():
    """The bootstrap refits build an accepted trial's Jacobian from the trial's own exponentials
    (single_step._trial_value / _trial_jacobian); they must be `_residuals`' bits, floor clip included."""
    from ladder.laws import single_step as ss

    rng = np.random.default_rng(5)
    N = np.exp(rng.uniform(18, 21, (40, 16)))
    logs = np.log(N), np.log(N * rng.uniform(20, 200, (40, 16))), np.log(rng.uniform(0.3, 0.8, (40, 16)))
    X = ss.starts(0.25)[np.arange(40) % 33] + rng.normal(0, 0.3, (40, 7))
    X[:5, 5], X[:5, 6] = -0.9999, 0.0  # Acc-hat under ACC_FLOOR at some points: the clipped branch
    r_ref, J_ref = ss._residuals(*logs)(X, True)
    r, kept = ss._trial_value(X, *logs)
    r2, J = ss._trial_jacobian(X, kept, *logs)
    assert np.array_equal(r, r_ref) and np.array_equal(r2, r_ref) and np.array_equal(J, J_ref)
    assert (np.exp(r_ref[:5]) * np.exp(logs[2][:5]) <= ss.ACC_FLOOR * (1 + 1e-12)).any()


def test_single_step_refits_with_kept_trials_equal_the_plain_solver_bit_for_bit():
    """minimize_batched's `trial` path (kept intermediates, rows dropping out as they converge) iterates as
    the plain residual function does: the same refits, bit for bit."""
    from ladder.laws import single_step as ss

    rng = np.random.default_rng(6)
    N = np.repeat(np.geomspace(1.5e8, 1.3e9, 4), 4)
    D = N * np.tile([20.0, 40.0, 100.0, 200.0], 4)
    acc = 0.8 - 0.25 * (N / 1e8) ** -0.2 - 0.1 * (D / 1e9) ** -0.25 + rng.normal(0, 0.01, 16)
    x0 = ss.fit_single_step(N, D, acc, 0.25).x
    W = rng.multinomial(16, np.full(16, 1 / 16), size=60).astype(np.float64)
    logs = tuple(np.repeat(v[None], 60, 0) for v in (np.log(N), np.log(D), np.log(acc)))

    def residual_fn(X, jac, logN, logD, logA):
        return ss._residuals(logN, logD, logA)(X, jac)

    plain = minimize_batched(residual_fn, np.repeat(x0[None], 60, 0), W, delta=ss.HUBER_DELTA, bounds=ss.BOUNDS,
                             max_iter=2000, rtol=1e-6, data=logs)
    X, f, c = ss.refit_many(x0, N, D, acc, W)
    assert np.array_equal(X[0], plain[0]) and np.array_equal(f[0], plain[1]) and np.array_equal(c[0], plain[2])
    # max_iter caps the same iterates (bench/bench_kstep_bootstrap.py's k-step refits): 3 steps are the plain
    # solver's first 3, and most refits are not done after them
    plain3 = minimize_batched(residual_fn, np.repeat(x0[None], 60, 0), W, delta=ss.HUBER_DELTA, bounds=ss.BOUNDS,
                              max_iter=3, rtol=1e-6, data=logs)
    X3, f3, c3 = ss.refit_many(x0, N, D, acc, W, max_iter=3)
    assert np.array_equal(X3[0], plain3[0]) and np.array_equal(f3[0], plain3[1]) and np.array_equal(c3[0], plain3[2])
    assert (f3[0] >= f[0]).all() and not c3[0].all()


def test_fits_of_several_tasks_in_one_descent_equal_their_own_bit_for_bit():
    """chinchilla.fit_loss_tasks / single_step.fit_single_step_tasks (every task of a ladder in one batched
    descent, equal problems once) give each problem's own fit_loss_many / fit_single_step_many, digit for digit."""
    from ladder.laws import single_step as ss
    from ladder.laws.chinchilla import fit_loss_many, fit_loss_tasks

    rng = np.random.default_rng(2)
    W = np.ones((2, 30))
    W[1, :5] = 0.0  # a back-test split leaving a size out
    probs = [(*_points(rng, 2e-3), W), (*_points(rng, 5e-3), W)]
    N, D, L = _points(rng, 2e-3)
    probs += [probs[0], (N[:20], D[:20], L[:20], None)]  # a repeated problem, and one of another length
    got = fit_loss_tasks(LOSS_ND, probs, top_k=8, polish=1)
    for p, fits in zip(probs, got):
        want = fit_loss_many.__wrapped__(LOSS_ND, *p, top_k=8, polish=1)
        assert [f.x.tobytes() for f in fits] == [f.x.tobytes() for f in want]
        assert [f.objective for f in fits] == [f.objective for f in want]
    single = [(N, D, 0.3 + 0.02 * np.log(N * D) / 40 + 0.01 * rng.standard_normal(30), 0.25, W),
              (N, D, 0.5 + 0.03 * np.log(N * D) / 40 + 0.01 * rng.standard_normal(30), 0.5, W[:1])]
    got = ss.fit_single_step_tasks(single, top_k=1)
    for p, fits in zip(single, got):
        want = ss.fit_single_step_many(*p[:4], p[4], top_k=1)
        assert [f.x.tobytes() for f in fits] == [f.x.tobytes() for f in want]


def test_lockstep_polishes_are_minimize_from_grid_bit_for_bit():
    """ladder.laws.polish runs many fits' L-BFGS-B starts together (one batched objective pass per round);
    each fit must be its own minimize_from_grid's, digit for digit: iterates, optimum, message, flags."""
    from ladder.laws import single_step as ss
    from ladder.laws.fitting import minimize_from_grid
    from ladder.laws.polish import minimize_from_grid_many

    rng = np.random.default_rng(6)
    problems, data = [], []
    for n in (16, 12, 16, 9):  # fits of different point counts share the rounds
        N = np.exp(rng.uniform(18, 21, n))
        D, acc = N * rng.uniform(20, 200, n), rng.uniform(0.3, 0.8, n)
        logs = np.log(N), np.log(D), np.log(acc)
        w = rng.integers(1, 4, n).astype(np.float64)
        starts = ss.starts(0.25)[:3] + rng.normal(0, 0.3, (3, 7))
        starts[2, 0] = 1e4  # a start whose objective is not finite is skipped, as there
        res = ss._residuals(*logs)
        problems.append((ss._objective(*logs, w), starts, lambda x, res=res: res(x[None], False)[0][0]))
        data.append((*logs, w))
    got = minimize_from_grid_many(ss._objective_rows(data), problems, ss.NAMES, list(ss.BOUNDS))
    for (fg, starts, res), fit in zip(problems, got):
        want = minimize_from_grid(fg, starts, ss.NAMES, list(ss.BOUNDS), residual_fn=res)
        assert fit.x.tobytes() == want.x.tobytes() and fit.objective == want.objective
        assert (fit.converged, fit.message, fit.at_bound) == (want.converged, want.message, want.at_bound)
        assert fit.residuals.tobytes() == want.residuals.tobytes()
