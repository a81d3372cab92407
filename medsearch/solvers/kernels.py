"""SVC heads on a precomputed kernel: the Gram matrix of one fold serves every setting.

libsvm on a precomputed kernel takes each SMO step as a table look-up instead of a dot product of two
embeddings. One float64 Gram matrix X X^T gives the linear kernel and, through
||x - y||^2 = |x|^2 + |y|^2 - 2 x.y (the formula libsvm itself uses), the RBF kernel for every gamma.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from ..evaluation.heads import get_head
from .inputs import dense_multilabel_tags, label_targets

KERNELS = {"svc-linear": "linear", "svc-rbf": "rbf"}
# KernelSVC builds the kernel of new rows in blocks of at most this size (float64). A block boundary can change
# the last bits of a matrix product (BLAS kernels differ at the edges), so one block holds the test part of
# every store that eval scores without approximation by default (up to 15,000 rows: 3,000 test rows x 12,000
# training rows); their scores stay exactly what one product gives.
KERNEL_BLOCK_BYTES = 2**30


def _gamma(setting, X64: np.ndarray) -> float:
    """SVC's gamma rule: 'scale' = 1 / (n_features * X.var()), 'auto' = 1 / n_features."""
    if setting == "scale":
        var = X64.var()
        return 1.0 / (X64.shape[1] * var) if var != 0 else 1.0
    if setting == "auto":
        return 1.0 / X64.shape[1]
    return float(setting)


def same_gammas(settings, X64: np.ndarray) -> dict:
    """{gamma setting: value} for the RBF settings, values that agree to 1e-9 made equal. On standardised
    data without constant columns X.var() is 1, so 'scale' and 'auto' are the same number up to rounding
    and one kernel and one set of fits serve both (their AUCs are then equal, as GridSearchCV's would be
    to libsvm's tolerance)."""
    values = {}
    for g in dict.fromkeys(s["gamma"] for s in settings):
        gamma = _gamma(g, X64)
        values[g] = next((v for v in values.values() if abs(v - gamma) <= 1e-9 * abs(v)), gamma)
    return values


def sq_distances(gram: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray, overwrite: bool = False
                 ) -> np.ndarray:
    """Squared distances from a Gram matrix and the rows' squared norms; ``overwrite``: in ``gram``'s place."""
    d2 = np.multiply(gram, -2.0, out=gram if overwrite else None)  # in place from here: these are n x n matrices
    d2 += sq_rows[:, None]
    d2 += sq_cols[None, :]
    return np.maximum(d2, 0.0, out=d2)


def rbf(d2: np.ndarray, gamma: float, overwrite: bool = False) -> np.ndarray:
    """exp(-gamma d2); ``overwrite``: in ``d2``'s place."""
    k = np.multiply(d2, -gamma, out=d2 if overwrite else None)
    return np.exp(k, out=k)


def sq_norms(A: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", A, A)


def precomputed_svc(name: str, task: str, C: float):
    """The head's SVC with its own settings, a precomputed kernel and the grid setting's C."""
    base = get_head(name).build().get_params()
    base.update(kernel="precomputed", C=float(C))
    clf = SVC(**base)
    return OneVsRestClassifier(clf) if task == "multilabel" else clf


def saturated(estimator, C: float) -> bool:
    """True when no dual coefficient reached C: the box constraint is inactive, so the same solution is
    optimal for any larger C."""
    members = estimator.estimators_ if isinstance(estimator, OneVsRestClassifier) else [estimator]
    coefs = [np.abs(m.dual_coef_).max(initial=0.0) for m in members if isinstance(m, SVC)]
    return bool(coefs) and max(coefs) < C


class KernelSVC(ClassifierMixin, BaseEstimator):
    """A head's SVC fitted on a precomputed linear or RBF kernel of its (already scaled) input.

    Gives the same decision function as the native-kernel SVC (one-vs-rest wrapped for 2-D 0/1 labels);
    keeps its training rows to build the kernel of new rows, a block of KERNEL_BLOCK_BYTES at a time (the
    kernel of a large test part against every training row would otherwise be built whole, in one matrix). Input is checked by scikit-learn's own helpers, with their messages; sparse X is refused (the
    kernel is built dense).
    """

    def __init__(self, name: str = "svc-rbf", C: float = 1.0, gamma="scale"):
        self.name = name
        self.C = C
        self.gamma = gamma

    def __sklearn_tags__(self):
        return dense_multilabel_tags(super().__sklearn_tags__())

    def _kernel(self, A: np.ndarray, sq_a: np.ndarray) -> np.ndarray:
        gram = A @ self.X_fit_.T
        if KERNELS[self.name] == "linear":
            return gram
        return rbf(sq_distances(gram, sq_a, self.sq_fit_, overwrite=True), self.gamma_, overwrite=True)

    def _by_blocks(self, X, method: str):
        """``svc_.<method>`` of the kernel of new rows against the training rows, computed a block of rows at
        a time (every row's result depends on its own kernel row only), after scikit-learn's checks of X."""
        check_is_fitted(self)
        A = validate_data(self, X, reset=False, dtype=np.float64)
        rows = max(1, KERNEL_BLOCK_BYTES // (8 * max(1, self.X_fit_.shape[0])))
        parts = [getattr(self.svc_, method)(self._kernel(A[i:i + rows], sq_norms(A[i:i + rows])))
                 for i in range(0, max(1, A.shape[0]), rows)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def fit(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        y = label_targets(y)
        self.X_fit_ = X
        self.sq_fit_ = sq_norms(X)
        self.gamma_ = _gamma(self.gamma, X)
        self.svc_ = precomputed_svc(self.name, "multilabel" if y.ndim == 2 else "binary", self.C)
        self.svc_.fit(self._kernel(X, self.sq_fit_), y)
        self.classes_ = self.svc_.classes_
        return self

    def decision_function(self, X):
        return self._by_blocks(X, "decision_function")

    def predict(self, X):
        return self._by_blocks(X, "predict")
