"""scikit-learn's own estimator checks on the solvers' estimators, and their input errors."""
import numpy as np
import pytest
from scipy import sparse
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from medsearch.errors import MedsearchError
from medsearch.solvers.dual import DualLinearSVC
from medsearch.solvers.kernels import KernelSVC
from medsearch.solvers.primal import PrimalLinearSVC, primal_linear_kernel_svc


pytestmark = pytest.mark.usefixtures("one_blas_thread")


# The expected failures, declared with their reasons (xfail, strict: the run fails if a check starts
# passing). Sparse X is refused by design (tags.input_tags.sparse=False, which sklearn's sparse checks
# verify); no fit takes sample_weight, so the sample-weight checks do not apply.
CLASS_WEIGHTS = "the solvers weigh every row alike: class_weight other than None is refused with a ValueError"
LINEAR_SVC_EXPECTED_FAILURES = {
    "check_class_weight_classifiers": CLASS_WEIGHTS,
    "check_class_weight_balanced_linear_classifier": CLASS_WEIGHTS,
}


def _expected_failures(estimator) -> dict:
    return LINEAR_SVC_EXPECTED_FAILURES if isinstance(estimator, DualLinearSVC) else {}


ESTIMATORS = [PrimalLinearSVC(), primal_linear_kernel_svc(), DualLinearSVC(), KernelSVC(), KernelSVC(name="svc-linear")]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _data(n=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.normal(size=(n, d)) + np.eye(3, d)[y] * 2, y


@pytest.mark.parametrize("make", [PrimalLinearSVC, DualLinearSVC, KernelSVC])
def test_invalid_input_gets_scikit_learns_usual_errors(make):
    X, y = _data()
    cases = [
        (lambda: make().fit(X, y[:-1]), ValueError, "inconsistent numbers of samples"),
        (lambda: make().fit(X, y + 0.5), ValueError, "Unknown label type"),
        (lambda: make().fit(X, np.where(y == 0, np.inf, y)), ValueError, "infinity"),
        (lambda: make().fit(np.where(X > 2, np.nan, X), y), ValueError, "NaN"),
        (lambda: make().fit(X[:0], y[:0]), ValueError, "0 sample"),
        (lambda: make().fit(X[:, 0], y), ValueError, "Expected 2D array"),
        (lambda: make().fit(X, None), ValueError, "requires y to be passed"),
        (lambda: make().fit(X, np.column_stack([y, y])), MedsearchError, "multioutput"),
        (lambda: make().fit(sparse.csr_matrix(X), y), TypeError, "[Ss]parse"),
        (lambda: make().fit(X, y).predict(X[:, :3]), ValueError, "expecting 5 features"),
        (lambda: make().predict(X), NotFittedError, "not fitted"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind, match=message):
            call()


@pytest.mark.parametrize("make", [PrimalLinearSVC, DualLinearSVC, KernelSVC])
def test_column_of_classes_is_flattened_and_a_0_1_matrix_is_multilabel(make):
    X, y = _data()
    with pytest.warns(DataConversionWarning):
        column = make().fit(X, y[:, None])
    assert np.array_equal(column.predict(X), make().fit(X, y).predict(X))
    Y = np.column_stack([y == 0, y != 1]).astype(int)
    multilabel = make().fit(X, Y)
    assert multilabel.predict(X).shape == Y.shape and multilabel.decision_function(X).shape == Y.shape
