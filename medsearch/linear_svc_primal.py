"""LinearSVC's squared-hinge problem solved in the primal by Newton's method with exact line search.

scikit-learn's LinearSVC(loss='squared_hinge') solves, per one-vs-rest problem with labels y in {-1, +1},
    min_w f(w) = 1/2 |w|^2 + C sum_i max(0, 1 - y_i w.x~_i)^2,   x~ = [x, s] (the bias is a regularised weight).
On dense embeddings with more images than dimensions liblinear runs out of its iteration budget here
(1000 passes of either of its solvers on 6.4k x 1280 standardised embeddings: about 30 s per problem, and
still short of the optimum). f is piecewise quadratic, so Newton's method with an exact line search ends
in a few steps (Keerthi & DeCoste 2005, "A modified finite Newton method for fast solution of large scale
linear SVMs"): with A = {i : y_i w.x~_i < 1}, the step solves (I + 2C X~_A'X~_A) p = -grad f(w). With at
most a few thousand dimensions that matrix is formed (in float32; the gradient, which decides convergence,
stays float64) and Cholesky-factored directly; between steps only the rows that enter or leave A change
it, so it is updated by those rows; the first step from w = 0, where every row is in A, uses X~'X~, which
is computed once for all problems and all C. Solutions at one C warm-start the next. The result is
liblinear's optimum to the gradient tolerance (tests compare the two).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from sklearn.svm import LinearSVC

from .errors import MedsearchError
from .linear_svc_dual import DualLinearSVC, constant_score

GRAD_TOL = 1e-6  # stop when |grad f(w)| <= GRAD_TOL * |grad f(0)|


def augmented(X, intercept_scaling: float = 1.0) -> np.ndarray:
    """X~ = [X, s] as float64: the bias as one more (regularised) weight, as liblinear treats it."""
    Xa = np.empty((X.shape[0], X.shape[1] + 1))
    Xa[:, :-1] = X
    Xa[:, -1] = intercept_scaling
    return Xa


def _step_length(w, p, z, dz, y, C) -> float:
    """The exact minimiser t >= 0 of f(w + t p): f' along the line is piecewise linear and increasing.

    z = X~w, dz = X~p. Safeguarded Newton on f'(t) inside a bracket, each step O(n).
    """
    wp, pp = float(w @ p), float(p @ p)
    yz, ydz = y * z, y * dz

    def slope(t):
        gap = 1.0 - (yz + t * ydz)
        on = gap > 0
        return wp + t * pp - 2.0 * C * float(ydz[on] @ gap[on]), pp + 2.0 * C * float(ydz[on] @ ydz[on])

    lo, hi = 0.0, 1.0
    while slope(hi)[0] < 0:  # still descending at t = hi: widen the bracket
        lo, hi = hi, 2.0 * hi
    t = hi if lo > 0 else 1.0
    for _ in range(100):
        d1, d2 = slope(t)
        if d1 == 0:
            return t
        lo, hi = (t, hi) if d1 < 0 else (lo, t)
        if hi - lo <= 1e-13 * hi:
            break
        step = t - d1 / d2
        t = step if lo < step < hi else 0.5 * (lo + hi)
    return t


def _outer(rows32: np.ndarray, sign=None) -> np.ndarray:
    weighted = rows32 if sign is None else rows32 * sign[:, None]
    return (rows32.T @ weighted).astype(np.float64)


def solve_squared_hinge(Xa: np.ndarray, y: np.ndarray, C: float, *, w0: np.ndarray | None = None,
                        gram: np.ndarray | None = None, Xa32: np.ndarray | None = None,
                        tol: float = GRAD_TOL, max_newton: int = 200) -> tuple[np.ndarray, bool]:
    """Minimise f for labels y in {-1, +1} on X~ = ``Xa`` (see augmented). Returns (w, converged).

    ``w0`` warm-starts (e.g. the solution at a smaller C); the optimum does not depend on it. ``gram``
    (X~'X~) and ``Xa32`` (X~ as float32) may be passed in when several problems share the data.
    """
    n, dim = Xa.shape
    y = np.asarray(y, dtype=np.float64)
    Xa32 = Xa.astype(np.float32) if Xa32 is None else Xa32
    w = np.zeros(dim) if w0 is None else np.array(w0, dtype=np.float64)
    g0 = np.linalg.norm(2.0 * C * (Xa.T @ y))  # |grad f(0)|
    H, previous = None, None
    eye = np.eye(dim)
    for _ in range(max_newton):
        z = Xa @ w
        active = y * z < 1.0
        g = w + 2.0 * C * (Xa[active].T @ (z[active] - y[active]))
        if np.linalg.norm(g) <= tol * g0:
            return w, True
        changed = np.flatnonzero(active != previous) if previous is not None else None
        if changed is None or changed.size >= active.sum():
            H = gram.copy() if gram is not None and active.all() else _outer(Xa32[active])
        elif changed.size:
            H += _outer(Xa32[changed], np.where(active[changed], 1.0, -1.0).astype(np.float32))
        previous = active
        p = -cho_solve(cho_factor(eye + 2.0 * C * H, check_finite=False), g, check_finite=False)
        w = w + _step_length(w, p, z, Xa @ p, y, C) * p
    return w, False


def squared_hinge_path(Xa: np.ndarray, targets, Cs, *, max_newton: int = 200) -> list[tuple[np.ndarray, int]]:
    """Solve every one-vs-rest problem (``targets``: {-1, +1} vectors) at each C of ``Cs`` (ascending order
    is fastest: each C warm-starts the next). Returns [(W (d+1, K), problems not converged)] in Cs order.

    A target with a single sign has no SVM: its column is the constant score scikit-learn's one-vs-rest gives.
    """
    Xa32 = Xa.astype(np.float32)
    gram = Xa.T @ Xa
    start = [None] * len(targets)
    out = []
    for C in Cs:
        columns, failed = [], 0
        for k, target in enumerate(targets):
            if (target > 0).all() or (target < 0).all():
                column = np.zeros(Xa.shape[1])
                column[-1] = constant_score(target) / Xa[0, -1]
            else:
                column, converged = solve_squared_hinge(Xa, target, C, w0=start[k], gram=gram, Xa32=Xa32,
                                                        max_newton=max_newton)
                failed += not converged
                start[k] = column
            columns.append(column)
        out.append((np.column_stack(columns), failed))
    return out


class PrimalLinearSVC(DualLinearSVC):
    """A LinearSVC whose squared-hinge problems go through ``squared_hinge_path`` (same problem, parameters
    and attributes as liblinear's); with loss='hinge' it is scikit-learn's LinearSVC (liblinear) unchanged.
    ``max_iter`` caps the Newton steps. With the squared hinge it takes 2-D 0/1 labels (multilabel) like
    DualLinearSVC; with the hinge, as LinearSVC itself, it does not (wrap it in OneVsRestClassifier).
    """

    def _weights(self, X: np.ndarray, targets) -> tuple[np.ndarray, bool]:
        Xa = augmented(X, self.intercept_scaling)
        [(W, failed)] = squared_hinge_path(Xa, targets, [float(self.C)], max_newton=int(self.max_iter))
        return W.T, failed == 0

    def fit(self, X, y, sample_weight=None):
        if self.loss == "squared_hinge":
            return super().fit(X, y, sample_weight)
        if np.asarray(y).ndim == 2:
            raise MedsearchError("PrimalLinearSVC with loss='hinge' is liblinear's LinearSVC: wrap it in "
                                 "OneVsRestClassifier for 2-D (multilabel) labels")
        estimator = LinearSVC(**self.get_params()).fit(X, y, sample_weight)
        self.__dict__.update({k: v for k, v in vars(estimator).items() if k.endswith("_")})
        self.multilabel_ = False
        self.converged_ = bool(np.all(np.asarray(estimator.n_iter_) < self.max_iter))
        return self
