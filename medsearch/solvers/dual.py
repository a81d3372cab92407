"""LinearSVC's optimisation problem solved by libsvm on a precomputed Gram matrix.

scikit-learn's LinearSVC (liblinear, fit_intercept with intercept_scaling s) solves, per one-vs-rest
problem with labels y in {-1, +1},
    min_w 1/2 |w|^2 + C sum_i loss(1 - y_i w.x~_i),   x~ = [x, s] (the bias is a regularised weight),
whose dual is  min_a 1/2 a'Qa - sum(a),  Q_ij = y_i y_j x~_i.x~_j,  with 0 <= a_i <= C for the hinge loss,
and a_i >= 0 with 1/(2C) added to Q's diagonal for the squared hinge. With fewer images than dimensions
(the classes then (nearly) separable) liblinear's coordinate descent needs many passes over the wide
rows, while libsvm's SMO on a precomputed kernel takes each step as a table look-up of an n x n matrix
and converges quickly. libsvm adds a free bias with the constraint sum(y a) = 0; two extra points
whose kernel against the data is 0 remove it: their variables a+, a- (labels +1, -1) enter the dual only as
1/2 k (a+ + a-)^2 - (a+ + a-), which settles a+ + a- at 1/k however a+ - a- = -sum(y a) is set, so the
constraint no longer binds and libsvm's own bias comes out 0. With 1/k = 4nC > sum(a) (sum(a) <= 2nC at
the optimum for either loss) the box never binds them, and 2nC is a safe upper bound on each a_i for
the squared hinge. The result is the same optimum liblinear approaches, to libsvm's tolerance.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.validation import validate_data

from .inputs import SolverInputError, check_two_classes, dense_multilabel_tags, label_targets

SMO_TOL = 1e-4  # libsvm's KKT-gap tolerance (its own default is 1e-3)
C_INT_MAX = 2**31 - 1  # libsvm reads its iteration cap as a C int


def smo_pass_cap(max_iter: int, n_rows: int) -> int:
    """libsvm's iteration cap for ``max_iter`` passes over ``n_rows`` rows, clamped to what a C int holds
    (beyond it the product would overflow; a cap that large never binds anyway)."""
    return min(int(max_iter) * int(n_rows), C_INT_MAX)


def augmented_gram(gram: np.ndarray, intercept_scaling: float = 1.0) -> np.ndarray:
    """(n+2, n+2) kernel: the data's x~.x~ = x.x + s^2 and two zero-kernel rows for the extra points."""
    n = gram.shape[0]
    out = np.zeros((n + 2, n + 2))
    out[:n, :n] = gram
    out[:n, :n] += intercept_scaling ** 2
    return out


def ovr_targets(y) -> tuple[list[np.ndarray], np.ndarray]:
    """One {-1, +1} target per one-vs-rest problem, as liblinear orders them, and ``classes_``.

    1-D labels: one problem (positive = classes_[1]) for two classes, else one per class. 2-D 0/1 labels
    (multilabel): one per column, classes_ = arange(L).
    """
    y = np.asarray(y)
    if y.ndim == 2:
        return [np.where(col != 0, 1.0, -1.0) for col in y.T], np.arange(y.shape[1])
    classes = np.unique(y)
    if classes.size < 2:
        raise SolverInputError("LinearSVC needs at least two classes in its training rows")
    positives = classes[1:] if classes.size == 2 else classes
    return [np.where(y == c, 1.0, -1.0) for c in positives], classes


def solve(aug: np.ndarray, target: np.ndarray, C: float, loss: str, max_iter: int,
          steps: list | None = None) -> tuple[np.ndarray, bool]:
    """beta = a * y over the n data points for one problem; ``aug`` from augmented_gram, modified and restored.

    A target with a single sign has no SVM: beta is 0 (the caller gives that problem a constant score).
    ``max_iter``: libsvm's iteration cap (see smo_pass_cap). Returns (beta, converged); ``steps``, when
    given, gets libsvm's iteration count appended.
    """
    n = target.size
    if (target > 0).all() or (target < 0).all():
        return np.zeros(n), True
    kappa = 1.0 / (4.0 * n * C)
    aug[n:, n:] = [[kappa, -kappa], [-kappa, kappa]]
    diagonal = aug.diagonal()[:n].copy()
    if loss == "squared_hinge":
        aug[np.arange(n), np.arange(n)] += 1.0 / (2.0 * C)
    upper = 1.0 if loss == "hinge" else 2.0 * n  # in units of C (libsvm bounds a_i by C * sample_weight_i)
    weights = np.r_[np.full(n, upper), 4.0 * n, 4.0 * n]
    svc = SVC(C=C, kernel="precomputed", tol=SMO_TOL, max_iter=max_iter)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svc.fit(aug, np.r_[target, 1.0, -1.0], sample_weight=weights)
    finally:
        aug[np.arange(n), np.arange(n)] = diagonal
    beta = np.zeros(n + 2)
    beta[svc.support_] = svc.dual_coef_[0]
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if steps is not None:
        steps.append(int(svc.n_iter_[0]))
    return beta[:n], converged


def constant_score(target: np.ndarray) -> float:
    """Score of a problem whose training target has one sign (scikit-learn's one-vs-rest predicts it)."""
    return 1.0 if (target > 0).all() else -1.0


class DualLinearSVC(LinearSVC):
    """A LinearSVC fitted through ``solve`` (same problem and parameters; coef_/intercept_ as liblinear's).

    Also takes 2-D 0/1 labels (one problem per column, multilabel); only the default penalty='l2',
    fit_intercept=True, multi_class='ovr' and class_weight=None are supported, and no sample weights (the
    rows are weighed alike). Input is checked by scikit-learn's own helpers, with their messages.
    """

    # The dtypes fit takes X in without a copy; others are converted to the first. The dual solver needs
    # float64 for its Gram matrix.
    input_dtypes = (np.float64,)

    def __sklearn_tags__(self):
        return dense_multilabel_tags(super().__sklearn_tags__())

    def _weights(self, X: np.ndarray, targets) -> tuple[np.ndarray, bool, int]:
        """(W (K, d+1) over [x, intercept_scaling], whether every problem converged, most iterations)."""
        aug = augmented_gram(X @ X.T, self.intercept_scaling)
        cap, steps = smo_pass_cap(self.max_iter, X.shape[0]), [0]
        solved = [solve(aug, t, float(self.C), self.loss, cap, steps) for t in targets]
        features = np.c_[X, np.full(X.shape[0], self.intercept_scaling)]
        W = np.stack([beta for beta, _ in solved]) @ features
        for k, t in enumerate(targets):
            if (t > 0).all() or (t < 0).all():
                W[k] = 0.0
                W[k, -1] = constant_score(t) / self.intercept_scaling
        return W, all(ok for _, ok in solved), max(steps)

    def fit(self, X, y):
        self._validate_params()  # scikit-learn's checks of LinearSVC's parameters
        if (self.penalty, self.fit_intercept, self.multi_class, self.class_weight) != ("l2", True, "ovr", None):
            raise SolverInputError(f"{type(self).__name__} supports only LinearSVC's default penalty, intercept "
                                   "and class weights")
        X, y = validate_data(self, X, y, multi_output=True, dtype=list(self.input_dtypes))
        y = label_targets(y)
        check_two_classes(y)
        targets, self.classes_ = ovr_targets(y)
        W, self.converged_, self.n_iter_ = self._weights(X, targets)
        self.coef_ = W[:, :-1]
        self.intercept_ = W[:, -1] * self.intercept_scaling
        self.multilabel_ = y.ndim == 2
        return self

    def predict(self, X):
        if getattr(self, "multilabel_", False):
            return (self.decision_function(X) > 0).astype(int)
        return super().predict(X)
