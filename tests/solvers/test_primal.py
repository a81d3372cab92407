"""linear_svc_primal: Newton's method reaches liblinear's optimum, both losses, every task and C."""
import warnings

import numpy as np
import pytest
from sklearn.svm import SVC, LinearSVC

from medsearch.solvers.dual import ovr_targets
from medsearch.solvers.primal import (PrimalLinearSVC, augmented, hinge_gap, linear_svc_path,
                                        primal_linear_kernel_svc, solve_hinge, solve_squared_hinge)


def _data(n=400, d=30, k=3, seed=0):
    """Correlated, overlapping classes with more images than dimensions (liblinear's hard case)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    latent = rng.normal(size=(n, 5)) + rng.normal(size=(k, 5))[y]
    X = latent @ rng.normal(size=(5, d)) + 0.5 * rng.normal(size=(n, d))
    return (X - X.mean(0)) / X.std(0), y


def _liblinear(X, y, C):
    """liblinear's primal solver run to a tight tolerance: the reference optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinearSVC(C=C, dual=False, tol=1e-10, max_iter=100_000).fit(X, y)


@pytest.mark.parametrize("C", [0.1, 1.0, 100.0])
@pytest.mark.parametrize("k", [2, 3])
def test_same_optimum_as_liblinear(C, k):
    X, y = _data(k=k)
    ours = PrimalLinearSVC(C=C).fit(X, y)
    ref = _liblinear(X, y, C)
    assert ours.converged_
    assert np.allclose(ours.coef_, ref.coef_, atol=1e-5) and np.allclose(ours.intercept_, ref.intercept_, atol=1e-5)
    assert (ours.predict(X) == ref.predict(X)).all()


def test_multilabel_is_one_problem_per_column():
    X, y = _data(k=3)
    Y = np.column_stack([y == 0, y != 1, (y == 2) | (X[:, 0] > 1)]).astype(int)
    ours = PrimalLinearSVC(C=1.0).fit(X, Y)
    for j in range(3):
        ref = _liblinear(X, Y[:, j], 1.0)
        assert np.allclose(ours.decision_function(X)[:, j], ref.decision_function(X), atol=1e-5)
    assert ours.predict(X).shape == Y.shape


def test_warm_start_and_path_reach_the_cold_optimum():
    X, y = _data(k=2)
    Xa = augmented(X)
    [target], _ = ovr_targets(y)
    cold, ok = solve_squared_hinge(Xa, target, 10.0)
    warm, ok_warm = solve_squared_hinge(Xa, target, 10.0, w0=solve_squared_hinge(Xa, target, 0.1)[0])
    assert ok and ok_warm and np.allclose(cold, warm, atol=1e-6)
    path = linear_svc_path(Xa, [target], [0.1, 10.0], "squared_hinge")
    assert np.allclose(path[1][0][:, 0], cold, atol=1e-6) and path[1][1] == 0


def test_a_single_sign_target_gets_scikit_learns_constant_score():
    X, y = _data(k=3)
    Y = np.column_stack([y == 0, np.ones_like(y)]).astype(int)
    scores = PrimalLinearSVC(C=1.0).fit(X, Y).decision_function(X)
    assert np.allclose(scores[:, 1], 1.0)


def test_iteration_cap_is_reported():
    X, y = _data(k=2)
    assert not PrimalLinearSVC(C=100.0, max_iter=1).fit(X, y).converged_


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_hinge_reaches_liblinears_optimum(C):
    X, y = _data(k=3)
    ours = PrimalLinearSVC(loss="hinge", C=C).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LinearSVC(loss="hinge", C=C, tol=1e-10, max_iter=1_000_000).fit(X, y)
    assert ours.converged_
    assert np.abs(ours.decision_function(X) - ref.decision_function(X)).max() < 1e-3


def test_hinge_duality_gap_is_certified_where_liblinear_stops_short():
    """At C = 100 liblinear's coordinate descent stops at its pass cap; ours ends with primal - dual ~ 0."""
    X, y = _data(k=2)
    Xa = augmented(X)
    [target], _ = ovr_targets(y)
    w, alpha, ok = solve_hinge(Xa, target, 100.0)
    primal, gap = hinge_gap(Xa, target, 100.0, w, alpha)
    assert ok and 0 <= gap <= 1e-6 * primal and (alpha >= 0).all() and (alpha <= 100.0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LinearSVC(loss="hinge", C=100.0, max_iter=1000).fit(X, y)
    primal_ref, _ = hinge_gap(Xa, target, 100.0, np.r_[ref.coef_[0], ref.intercept_[0]], alpha)
    assert primal <= primal_ref + 1e-9 * primal


def test_hinge_multilabel_and_path_warm_start():
    X, y = _data(k=3)
    Y = np.column_stack([y == 0, y != 1]).astype(int)
    ours = PrimalLinearSVC(loss="hinge", C=1.0).fit(X, Y)
    Xa = augmented(X)
    targets, _ = ovr_targets(Y)
    path = linear_svc_path(Xa, targets, [0.1, 1.0], "hinge")
    assert np.allclose(Xa @ path[1][0], ours.decision_function(X), atol=1e-3) and path[1][1] == 0


@pytest.mark.parametrize("top", [1.0, 1e3])
def test_newton_direction_is_float64_accurate_however_conditioned(top):
    """Well conditioned: the float32 factorisation, refined once, solves the system to float64-level accuracy.
    Ill conditioned (cond 1e10, as at large penalties): float32 rounding makes the rank-updated matrix
    indefinite, so H is rebuilt in float64 from the rows and the system solved in float64."""
    from medsearch.solvers.primal import _newton_direction, _outer

    rng = np.random.default_rng(0)
    U, V = np.linalg.qr(rng.normal(size=(400, 60)))[0], np.linalg.qr(rng.normal(size=(60, 60)))[0]
    rows = U @ np.diag(np.logspace(-3, np.log10(top), 60)) @ V.T
    H = _outer(rows.astype(np.float32))
    g, scale = rng.normal(size=60), 1e4
    p, _ = _newton_direction(scale, H, g, lambda: rows)
    if top > 1:
        assert np.allclose(H, rows.T @ rows, rtol=0, atol=1e-12)  # rebuilt in place
    exact = -np.linalg.solve(np.eye(60) + scale * H, g)  # with the matrix it ended up using
    assert np.linalg.norm(p - exact) <= 1e-6 * np.linalg.norm(exact)


def test_hinge_cold_start_at_large_C_reaches_the_path_optimum():
    """From w = 0 at large C the penalty starts small (COLD_SIGMA); the optimum is the warm-started path's."""
    from medsearch.solvers.primal import COLD_SIGMA

    X, y = _data(k=2)
    Xa = augmented(X)
    [target], _ = ovr_targets(y)
    assert COLD_SIGMA < 100.0
    w, alpha, ok = solve_hinge(Xa, target, 100.0)
    [(W, failed)] = linear_svc_path(Xa, [target], [0.1, 100.0], "hinge")[1:]
    primal, gap = hinge_gap(Xa, target, 100.0, w, alpha)
    primal_path, _ = hinge_gap(Xa, target, 100.0, W[:, 0], alpha)
    assert ok and failed == 0 and gap <= 1e-6 * primal
    assert abs(primal - primal_path) <= 1e-6 * primal


def _free_bias_objective(X, y, C, w, b) -> float:
    margins = np.where(y == y.max(), 1.0, -1.0) * (X @ w + b)
    return 0.5 * float(w @ w) + C * float(np.maximum(0.0, 1.0 - margins).sum())


@pytest.mark.parametrize("C", [0.1, 100.0])
def test_linear_kernel_svc_in_the_primal_is_libsvms_problem(C):
    """SVC(kernel='linear') has a free bias: the primal solver (bias scaled by FREE_BIAS_SCALING) reaches
    libsvm's optimum of that problem, run to a tight tolerance, or a lower objective, and the same scores."""
    X, y = _data(n=400, d=30, k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SVC(kernel="linear", C=C, tol=1e-10).fit(X, y)
    ours = primal_linear_kernel_svc(C).fit(X, y)
    assert ours.converged_
    ref_obj = _free_bias_objective(X, y, C, ref.coef_[0], ref.intercept_[0])
    ours_obj = _free_bias_objective(X, y, C, ours.coef_[0], ours.intercept_[0])
    assert ours_obj <= ref_obj * (1 + 1e-6)
    scale = np.abs(ref.decision_function(X)).max()
    assert np.abs(ours.decision_function(X) - ref.decision_function(X)).max() <= 1e-3 * scale
    # a regularised bias (LinearSVC's problem) is a different optimum: the free bias is what is solved
    regularised = PrimalLinearSVC(C=C, loss="hinge").fit(X, y)
    assert _free_bias_objective(X, y, C, regularised.coef_[0], regularised.intercept_[0]) > ours_obj


def test_linear_kernel_svc_multilabel_is_one_free_bias_problem_per_column():
    X, y = _data(n=300, d=20, k=3, seed=3)
    Y = np.column_stack([y == 0, y != 1]).astype(int)
    ours = primal_linear_kernel_svc(1.0).fit(X, Y)
    for j in range(Y.shape[1]):
        ref = SVC(kernel="linear", C=1.0, tol=1e-8).fit(X, Y[:, j])
        assert np.allclose(ours.decision_function(X)[:, j], ref.decision_function(X), atol=1e-3)



def test_squared_hinge_recovers_from_a_useless_direction(monkeypatch):
    """The Hessian is kept by float32 rank updates; where its drift, magnified by 2C, ruins the direction
    (real ODIR lite0, C = 10: Newton sat at step length 0 until the cap), the step after a stalled one
    rebuilds the Hessian in float64. Simulated: every direction from the tracked Hessian points uphill."""
    from medsearch.solvers import primal as lp

    X, y = _data(k=2)
    Xa = augmented(X)
    [target], _ = ovr_targets(y)
    reference, ok = solve_squared_hinge(Xa, target, 10.0)
    assert ok
    direction = lp._newton_direction

    def drifted(scale, H, g, rows, exact=False, **kwargs):  # (and no factor to reuse)
        return direction(scale, H, g, rows, exact=True) if exact else (g.copy(), None)

    monkeypatch.setattr(lp, "_newton_direction", drifted)
    w, ok = solve_squared_hinge(Xa, target, 10.0, max_newton=100)
    assert ok and np.allclose(w, reference, atol=1e-6)
    monkeypatch.setattr(lp, "STALL_STEP", 0.0)  # the rebuild off: stuck at the start
    w, ok = solve_squared_hinge(Xa, target, 10.0, max_newton=100)
    assert not ok and np.abs(w).max() < 1e-12



def test_free_bias_hinge_factors_in_float64(monkeypatch):
    """SVC-linear's scaled bias leaves its Newton direction hanging on a small Schur complement that float32
    cannot resolve (a real ODIR problem stopped at the step cap): those solves factor in float64 only."""
    from medsearch.solvers import primal as lp
    from medsearch.solvers.primal import FREE_BIAS_SCALING

    seen = []
    direction = lp._newton_direction

    def spy(*args, **kwargs):
        seen.append(kwargs.get("float64", False))
        return direction(*args, **kwargs)

    monkeypatch.setattr(lp, "_newton_direction", spy)
    X, y = _data(k=2)
    [target], _ = ovr_targets(y)
    assert solve_hinge(augmented(X, FREE_BIAS_SCALING), target, 10.0)[2] and seen and all(seen)
    seen.clear()
    assert solve_hinge(augmented(X), target, 10.0)[2] and seen and not any(seen)  # LinearSVC: float32 first


@pytest.mark.parametrize("float64", [False, True])
def test_newton_system_reuses_its_factor_only_for_a_few_changed_rows(monkeypatch, float64):
    """A band that changed by a few rows at the same scale gets its direction from the last factor (Woodbury),
    exactly the fresh factor's direction; a changed scale, or more changed rows than WOODBURY_ROWS, refactors.
    Both for the float32 factors of LinearSVC and the float64 ones of SVC-linear's free bias."""
    from medsearch.solvers import primal as lp

    rng = np.random.default_rng(1)
    Xa = augmented(rng.normal(size=(500, 40)))
    factored = []
    direction = lp._newton_direction

    def spy(*args, **kwargs):
        factored.append(True)
        return direction(*args, **kwargs)

    monkeypatch.setattr(lp, "_newton_direction", spy)
    system = lp._NewtonSystem(Xa, Xa if float64 else Xa.astype(np.float32), float64=float64)
    g = rng.normal(size=Xa.shape[1])

    def exact(scale, mask):
        return -np.linalg.solve(np.eye(Xa.shape[1]) + scale * Xa[mask].T @ Xa[mask], g)

    mask = rng.random(500) < 0.5
    steps = [(10.0, mask), (10.0, mask ^ (np.arange(500) < 6)),  # 6 rows joined or left: reused
             (10.0, mask ^ (np.arange(500) < 200)),             # 200 changed: refactored
             (20.0, mask ^ (np.arange(500) < 200))]             # new scale: refactored
    for (scale, m), refactors in zip(steps, [1, 1, 2, 3]):
        p = system.direction(scale, g, m)
        assert len(factored) == refactors
        # (a float32 H is float32-accurate, so that is all the agreement with the float64 matrix there is)
        assert np.linalg.norm(p - exact(scale, m)) <= (1e-10 if float64 else 1e-5) * np.linalg.norm(p)


@pytest.mark.parametrize("C", [1.0, 100.0])
def test_squared_hinge_fit_goes_through_smaller_C(C):
    """PrimalLinearSVC's squared hinge at a large C warm-starts through C/10, C/100, ... (continuation):
    the same optimum as the solve from w = 0, in fewer Newton steps."""
    from medsearch.solvers.primal import continuation

    assert continuation(100.0) == pytest.approx([0.1, 1.0, 10.0, 100.0]) and continuation(0.1) == [0.1]
    X, y = _data(k=2)
    [target], _ = ovr_targets(y)
    cold, ok = solve_squared_hinge(augmented(X), target, C)
    ours = PrimalLinearSVC(C=C).fit(X, y)
    assert ok and ours.converged_
    assert np.allclose(np.r_[ours.coef_[0], ours.intercept_], cold, atol=1e-6)


def test_hinge_path_started_from_the_squared_hinge_reaches_the_cold_optimum():
    """The hinge problems at the first C may start from the squared hinge's solution there (its dual point
    clipped into [0, C] as multipliers): a feasible start, the same certified optimum as from w = 0."""
    from medsearch.solvers.primal import hinge_start_from_squared

    X, y = _data(k=3)
    Xa = augmented(X)
    targets, _ = ovr_targets(y)
    Cs = [0.1, 10.0]
    [(W_sq, _), _] = linear_svc_path(Xa, targets, Cs, "squared_hinge")
    cold = linear_svc_path(Xa, targets, Cs, "hinge")
    warm = linear_svc_path(Xa, targets, Cs, "hinge", squared_first=W_sq)
    for (Wc, failed_c), (Ww, failed_w), C in zip(cold, warm, Cs):
        assert failed_c == failed_w == 0
        for k, t in enumerate(targets):
            cold_obj, _ = hinge_gap(Xa, t, C, Wc[:, k], np.zeros(t.size))
            warm_obj, _ = hinge_gap(Xa, t, C, Ww[:, k], np.zeros(t.size))
            assert abs(warm_obj - cold_obj) <= 2e-6 * cold_obj
    w, alpha = hinge_start_from_squared(Xa, targets[0], 0.1, W_sq[:, 0])
    assert np.array_equal(w, W_sq[:, 0]) and alpha.min() >= 0 and alpha.max() <= 0.1 and alpha.max() > 0
