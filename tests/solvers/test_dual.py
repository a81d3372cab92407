"""dual: LinearSVC's problem solved by libsvm on a Gram matrix reaches liblinear's optimum (wide data)."""
import warnings

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from medsearch.errors import MedsearchError
from medsearch.solvers.dual import (C_INT_MAX, DualLinearSVC, augmented_gram, ovr_targets, smo_pass_cap, solve)
from medsearch.solvers.inputs import SolverInputError


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _wide(n=60, d=150, k=3, seed=0):
    """Fewer images than dimensions, overlapping classes: the case the dual route takes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + 0.4 * rng.normal(size=(k, d))[y]
    return (X - X.mean(0)) / X.std(0), y


def _liblinear(X, y, C, loss):
    """liblinear run to a tight tolerance: the reference optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinearSVC(C=C, loss=loss, dual=True, tol=1e-10, max_iter=1_000_000).fit(X, y)


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("C", [0.1, 10.0])
def test_same_optimum_as_liblinear(loss, k, C):
    X, y = _wide(k=k)
    ours = DualLinearSVC(C=C, loss=loss).fit(X, y)
    ref = _liblinear(X, y, C, loss)
    assert ours.converged_ and ours.n_iter_ >= 1
    scale = np.abs(ref.decision_function(X)).max()
    assert np.abs(ours.decision_function(X) - ref.decision_function(X)).max() <= 1e-3 * scale
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    assert np.array_equal(ours.classes_, ref.classes_)


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
def test_multilabel_is_one_problem_per_column(loss):
    X, y = _wide()
    Y = np.column_stack([y == 0, y != 1, np.ones_like(y)]).astype(int)  # the last column has one sign
    ours = DualLinearSVC(C=1.0, loss=loss).fit(X, Y)
    scores = ours.decision_function(X)
    for j in range(2):
        ref = _liblinear(X, Y[:, j], 1.0, loss)
        assert np.abs(scores[:, j] - ref.decision_function(X)).max() <= 1e-3 * np.abs(scores[:, j]).max()
    assert np.allclose(scores[:, 2], 1.0)  # scikit-learn's one-vs-rest gives a single-sign label this score
    assert ours.predict(X).shape == Y.shape and np.array_equal(ours.classes_, np.arange(3))


def test_solve_restores_the_gram_matrix_and_reports_libsvm_steps():
    X, y = _wide(k=2)
    aug = augmented_gram(X @ X.T)
    before = aug.copy()
    [target], _ = ovr_targets(y)
    steps = []
    beta, converged = solve(aug, target, 1.0, "squared_hinge", 10_000, steps)
    assert converged and steps and steps[0] >= 1 and beta.shape == (X.shape[0],)
    assert np.array_equal(aug[:-2, :-2], before[:-2, :-2])


def test_a_large_max_iter_is_clamped_to_libsvms_c_int():
    """max_iter x rows would overflow libsvm's C int: the cap is clamped (it never binds at that size)."""
    assert smo_pass_cap(10, 100) == 1000
    assert smo_pass_cap(10**9, 100) == C_INT_MAX == 2**31 - 1
    X, y = _wide(k=2)
    big = DualLinearSVC(C=1.0, max_iter=10**12).fit(X, y)
    assert big.converged_
    assert np.allclose(big.decision_function(X), DualLinearSVC(C=1.0).fit(X, y).decision_function(X))


def test_unsupported_settings_and_single_class_are_user_errors_and_value_errors():
    X, y = _wide(k=2)
    for params in ({"class_weight": "balanced"}, {"penalty": "l1", "loss": "squared_hinge", "dual": False},
                   {"fit_intercept": False}, {"multi_class": "crammer_singer"}):
        with pytest.raises(SolverInputError, match="supports only LinearSVC's default"):
            DualLinearSVC(**params).fit(X, y)
    with pytest.raises(SolverInputError, match="only one class") as info:
        DualLinearSVC().fit(X, np.zeros_like(y))
    assert isinstance(info.value, MedsearchError) and isinstance(info.value, ValueError)
    with pytest.raises(MedsearchError, match="at least two classes"):
        ovr_targets(np.zeros(5))
