"""Cross-validated grid search of the paper's heads: what ``heads.fit_head`` (GridSearchCV) computes, faster.

Same heads, grids, folds, AUC scorer and refit rule (best mean fold AUC, first in grid order on ties, NaN
folds make a setting's mean NaN). The speed comes from:
- each fold is standardised once and shared by every head and setting (GridSearchCV refits the scaler
  per setting; the result is identical);
- SVC heads run libsvm on a precomputed kernel: per fold one float64 Gram matrix X X^T serves the linear
  kernel and, via ||x - y||^2 = |x|^2 + |y|^2 - 2 x.y (the formula libsvm itself uses), the RBF kernel for
  every gamma; each SMO step is then a table look-up instead of a 1280-d dot product; gamma settings that
  are the same number ('scale' and 'auto' on standardised data without constant columns) share one kernel
  and one set of fits;
- C path: when a fit at C leaves every dual coefficient strictly below C, the same solution is optimal
  for every larger C (the box constraint is inactive), so those settings reuse its scores;
- LinearSVC, when a fold has no more images than dimensions, is solved by libsvm on the same Gram
  matrix (linear_svc_dual: same problem, same optimum to solver tolerance) instead of liblinear's
  coordinate descent, which needs hundreds of passes there; with more images than dimensions by Newton's
  method in the primal (linear_svc_primal: every C and one-vs-rest problem of a fold and loss in one unit,
  each C warm-starting the next), where liblinear stops at its pass cap short of the optimum;
- binary and multilabel SVC-linear with more images than dimensions is the hinge problem with a free bias
  (one-vs-rest), solved by the same primal solver (primal_svc_linear), where libsvm's SMO crawls at large C;
- (fold, setting) units run in parallel with BLAS held to one thread, since small matrix products slow
  down badly when oversubscribed: in worker processes (joblib) when there are primal units, whose LAPACK
  calls the GIL would serialise between threads, else in threads; the final refits run in threads.
LR is fitted by scikit-learn exactly as in the plain search.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed, parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ParameterGrid
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from ..errors import MedsearchError
from ..evaluation.heads import C_GRID, get_head, head_scores, scaled
from .dual import DualLinearSVC, augmented_gram, constant_score, ovr_targets, solve
from .primal import FREE_BIAS_SCALING, PrimalLinearSVC, augmented, linear_svc_path, primal_linear_kernel_svc
from ..evaluation.metrics import auc_aligned, check_task

KERNELS = {"svc-linear": "linear", "svc-rbf": "rbf"}
MAX_KERNEL_ROWS = 12_000  # a 12k x 12k float64 matrix is 1.2 GB; beyond that use the native-kernel search
# cap of linear_svc_max_iter: libsvm takes max_iter x rows passes as a C int (at most 2**31 - 1); LinearSVC goes
# through libsvm with at most MAX_KERNEL_ROWS rows per fold, so at most 2 x MAX_KERNEL_ROWS in the final refit
# (2 folds), and 50,000 x 24,000 stays below that
MAX_ITER_LIMIT = 50_000


@dataclass
class HeadFit:
    name: str
    estimator: object               # fitted on all training rows, like GridSearchCV.best_estimator_
    params: dict                    # short names, e.g. {'C': 10.0, 'gamma': 'scale'}
    cv_auc: float
    cv_results: list[dict]          # grid order: {'params', 'mean_auc', 'fold_aucs'}
    seconds: float                  # fitting + scoring time summed over folds, settings and refit
    not_converged: int = 0          # fits that stopped at the iteration limit
    n_fits: int = 0
    notes: list[str] = field(default_factory=list)


def check_C(C) -> list[float] | None:
    """The C values as floats (None: the paper's grid); each must be a finite positive number."""
    if C is None:
        return None
    values = [C] if isinstance(C, (str, bytes)) or not hasattr(C, "__iter__") else list(C)
    out = []
    for c in values:
        try:
            number = float(c) if not isinstance(c, (bool, str, bytes)) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise MedsearchError(f"--C values must be finite positive numbers, got {c!r}")
        out.append(number)
    if not out:
        raise MedsearchError("--C needs at least one value (finite positive numbers, e.g. 0.1,1,10,100)")
    return out


def check_losses(linear_svc_loss) -> list[str] | None:
    """LinearSVC's losses to search, unique, in the order given (None or empty: both)."""
    if not linear_svc_loss:
        return None
    losses = [linear_svc_loss] if isinstance(linear_svc_loss, str) else list(linear_svc_loss)
    known = get_head("linear-svc").extra_grid["loss"]
    unknown = [loss for loss in losses if loss not in known]
    if unknown:
        raise MedsearchError(f"unknown --linear-svc-loss {unknown[0]!r}; use hinge and/or squared_hinge")
    return list(dict.fromkeys(losses))


def head_grid(name: str, C=None, linear_svc_loss=None) -> dict:
    """Short-name grid of a head (the paper's), with the C values (and LinearSVC's losses) replaced when given."""
    spec = get_head(name)
    C = check_C(C)
    grid = {"C": list(C_GRID) if C is None else C, **spec.extra_grid}
    losses = check_losses(linear_svc_loss)
    if name == "linear-svc" and losses:
        grid["loss"] = losses
    return {key: list(values) for key, values in grid.items()}


def _settings(grid: dict) -> list[dict]:
    return list(ParameterGrid(grid))  # the order GridSearchCV uses (sorted keys, then product)


# ---- kernels ------------------------------------------------------------------------------------


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


def _sq_distances(gram: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray) -> np.ndarray:
    d2 = gram * -2.0  # in place from here: these are n x n matrices
    d2 += sq_rows[:, None]
    d2 += sq_cols[None, :]
    return np.maximum(d2, 0.0, out=d2)


def _rbf(d2: np.ndarray, gamma: float) -> np.ndarray:
    k = np.multiply(d2, -gamma)
    return np.exp(k, out=k)


def _svc(name: str, task: str, params: dict):
    """The head's SVC with its own settings, a precomputed kernel and the grid setting's C."""
    base = get_head(name).build().get_params()
    base.update(kernel="precomputed", C=float(params["C"]))
    clf = SVC(**base)
    return OneVsRestClassifier(clf) if task == "multilabel" else clf


def _saturated(estimator, C: float) -> bool:
    """True when no dual coefficient reached C: the same solution is then optimal for any larger C."""
    members = estimator.estimators_ if isinstance(estimator, OneVsRestClassifier) else [estimator]
    coefs = [np.abs(m.dual_coef_).max(initial=0.0) for m in members if isinstance(m, SVC)]
    return bool(coefs) and max(coefs) < C


class KernelSVC(ClassifierMixin, BaseEstimator):
    """A head's SVC fitted on a precomputed linear or RBF kernel of its (already scaled) input.

    Gives the same decision function as the native-kernel SVC (one-vs-rest wrapped for 2-D labels);
    keeps its training rows to build the kernel of new rows.
    """

    def __init__(self, name: str = "svc-rbf", C: float = 1.0, gamma="scale"):
        self.name = name
        self.C = C
        self.gamma = gamma

    def _kernel(self, A: np.ndarray, sq_a: np.ndarray) -> np.ndarray:
        gram = A @ self.X_fit_.T
        if KERNELS[self.name] == "linear":
            return gram
        return _rbf(_sq_distances(gram, sq_a, self.sq_fit_), self.gamma_)

    def fit(self, X, y):
        y = np.asarray(y)
        self.X_fit_ = np.asarray(X, dtype=np.float64)
        self.sq_fit_ = np.einsum("ij,ij->i", self.X_fit_, self.X_fit_)
        self.gamma_ = _gamma(self.gamma, self.X_fit_)
        self.svc_ = _svc(self.name, "multilabel" if y.ndim == 2 else "binary", {"C": self.C})
        self.svc_.fit(self._kernel(self.X_fit_, self.sq_fit_), y)
        self.classes_ = self.svc_.classes_
        self.n_features_in_ = self.X_fit_.shape[1]
        return self

    def decision_function(self, X):
        X = np.asarray(X, dtype=np.float64)
        return self.svc_.decision_function(self._kernel(X, np.einsum("ij,ij->i", X, X)))

    def predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        return self.svc_.predict(self._kernel(X, np.einsum("ij,ij->i", X, X)))


# ---- one fold ----------------------------------------------------------------------------------


@dataclass
class _Fold:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _folds(X, y, folds, scale: bool) -> list[_Fold]:
    out = []
    for train, test in folds:
        X_train, X_test = X[train], X[test]
        if scale:  # exactly what the Pipeline's StandardScaler does inside GridSearchCV
            scaler = StandardScaler().fit(X_train)
            X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        out.append(_Fold(X_train, y[train], X_test, y[test]))
    return out


def _score(estimator, X_test, y_test, task: str) -> float:
    return auc_aligned(y_test, head_scores(estimator, X_test, task), task, getattr(estimator, "classes_", None))


def _counting_fit(estimator, X, y) -> int:
    """Fit; return how many ConvergenceWarnings it raised (they are summarised later, not shown)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y)
    for item in caught:
        if not issubclass(item.category, ConvergenceWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return sum(issubclass(item.category, ConvergenceWarning) for item in caught)


def _plain_unit(name, task, setting, fold: _Fold):
    """LR on one fold and setting, as GridSearchCV fits it. Returns (AUC, seconds, warnings)."""
    estimator = get_head(name).make(task, scale=False)  # already scaled
    prefix = "clf__estimator__" if task == "multilabel" else "clf__"
    estimator.set_params(**{prefix + k: v for k, v in setting.items()})
    t0 = time.perf_counter()
    n_warn = _counting_fit(estimator, fold.X_train, fold.y_train)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    score = _score(estimator, fold.X_test, fold.y_test, task)
    return score, seconds + time.perf_counter() - t1, n_warn


def _linear_svc_unit(gram_train, gram_test, settings, task, fold: _Fold, max_iter) -> tuple[list, int, int]:
    """LinearSVC's settings on one fold through linear_svc_dual; returns (AUCs, fits, fits not converged)."""
    spec = get_head("linear-svc").build()
    s2 = spec.intercept_scaling ** 2
    aug = augmented_gram(gram_train, spec.intercept_scaling)
    targets, classes = ovr_targets(fold.y_train)
    cap = (max_iter or spec.max_iter) * gram_train.shape[0]
    scores, fits, not_converged = [np.nan] * len(settings), 0, 0
    # hinge: a solution with every a_i < C is also optimal for any larger C (see _saturated)
    order = sorted(range(len(settings)), key=lambda i: (settings[i]["loss"], settings[i]["C"]))
    saturated = {}
    for i in order:
        C, loss = settings[i]["C"], settings[i]["loss"]
        if loss in saturated:
            scores[i] = saturated[loss]
            continue
        columns, below_bound = [], True
        for target in targets:
            beta, converged = solve(aug, target, C, loss, cap)
            not_converged += not converged
            below_bound &= bool(np.abs(beta).max(initial=0.0) < C)
            constant = (target > 0).all() or (target < 0).all()
            columns.append(np.full(gram_test.shape[0], constant_score(target)) if constant else (gram_test + s2) @ beta)
        fits += 1
        decision = np.column_stack(columns)
        decision = decision[:, 0] if task == "binary" else decision
        scores[i] = auc_aligned(fold.y_test, decision, task, None if task == "multilabel" else classes)
        if loss == "hinge" and below_bound:
            saturated[loss] = scores[i]
    return scores, fits, not_converged


def _primal_unit(name, settings, task, fold: _Fold, max_iter) -> dict[int, tuple]:
    """LinearSVC's settings (both losses) or SVC-linear's (the hinge with a free bias) on one fold by
    linear_svc_primal: {setting index: (AUC, seconds, not converged)}. The squared hinge's path comes first
    and its solution at the smallest C starts the hinge's."""
    t0 = time.perf_counter()
    spec = get_head("linear-svc").build()
    scaling = FREE_BIAS_SCALING if name == "svc-linear" else spec.intercept_scaling
    targets, classes = ovr_targets(fold.y_train)
    train, test = augmented(fold.X_train, scaling), augmented(fold.X_test, scaling)
    out, squared_first = {}, None
    for loss in ("squared_hinge", "hinge"):
        members = sorted((i for i, s in enumerate(settings) if s.get("loss", "hinge") == loss),
                         key=lambda i: settings[i]["C"])
        if not members:
            continue
        Cs = [settings[i]["C"] for i in members]
        first = squared_first[1] if squared_first and squared_first[0] == Cs[0] else None
        path = linear_svc_path(train, targets, Cs, loss, max_newton=max_iter or spec.max_iter, squared_first=first)
        if loss == "squared_hinge":
            squared_first = (Cs[0], path[0][0])
        for i, (W, failed) in zip(members, path):
            decision = test @ W
            decision = decision[:, 0] if task == "binary" else decision
            out[i] = (auc_aligned(fold.y_test, decision, task, None if task == "multilabel" else classes), failed)
    seconds = (time.perf_counter() - t0) / max(1, len(out))
    return {i: (score, seconds, failed) for i, (score, failed) in out.items()}


def dual_linear_svc(n_train: int, n_features: int) -> bool:
    """Whether LinearSVC goes through libsvm (linear_svc_dual): with no more images than dimensions the
    classes are (nearly) separable and SMO converges fast; with more images than dimensions SMO slows down
    at large C and Newton's method in the primal (linear_svc_primal) is the better solver."""
    return n_train <= min(n_features, MAX_KERNEL_ROWS)


def primal_svc_linear(task: str, n_train: int, n_features: int) -> bool:
    """Whether SVC-linear goes through linear_svc_primal (hinge loss, free bias): with more images than
    dimensions libsvm's SMO crawls at large C (real ODIR, 3.3k x 1280, 8 labels: still in the first fold's
    C = 10 after 75 minutes). Binary and multilabel SVCs are one-vs-rest SVMs, which the primal solver
    solves to the same optimum; multiclass SVC is one-vs-one and stays on libsvm."""
    return task != "multiclass" and not dual_linear_svc(n_train, n_features)


def _kernel_unit(names, task, grids, fold: _Fold, max_iter=None):
    """Every setting of the kernel heads ``names`` (SVCs, and LinearSVC when wide) on one fold from one Gram matrix.

    Returns {name: ([auc per setting], seconds, n_fits, n_not_converged)}.
    """
    t0 = time.perf_counter()
    A, B = fold.X_train.astype(np.float64), fold.X_test.astype(np.float64)
    gram_train, gram_test = A @ A.T, B @ A.T
    shared = time.perf_counter() - t0
    results = {}
    for name in names:
        t1 = time.perf_counter()
        settings = _settings(grids[name])
        scores, fits = [np.nan] * len(settings), 0
        if name == "linear-svc":
            values, fits, n_warn = _linear_svc_unit(gram_train, gram_test, settings, task, fold, max_iter)
            results[name] = (values, time.perf_counter() - t1 + shared / len(names), fits, n_warn)
            continue
        if KERNELS[name] == "linear":
            kernels, kernel_of = {None: (gram_train, gram_test)}, {None: None}
        else:
            sq_a, sq_b = np.einsum("ij,ij->i", A, A), np.einsum("ij,ij->i", B, B)
            d_train, d_test = _sq_distances(gram_train, sq_a, sq_a), _sq_distances(gram_test, sq_b, sq_a)
            kernel_of = same_gammas(settings, A)  # gamma setting -> value; equal values share a kernel
            kernels = {gamma: (_rbf(d_train, gamma), _rbf(d_test, gamma)) for gamma in dict.fromkeys(kernel_of.values())}
            del d_train, d_test
        for key, (k_train, k_test) in kernels.items():
            members = [i for i, s in enumerate(settings) if kernel_of[s.get("gamma")] == key]
            saturated = False  # once saturated, the last score holds for every larger C
            for C in sorted({settings[i]["C"] for i in members}):
                at_C = [i for i in members if settings[i]["C"] == C]
                if not saturated:
                    estimator = _svc(name, task, settings[at_C[0]])
                    _counting_fit(estimator, k_train, fold.y_train)
                    fits += 1
                    score = _score(estimator, k_test, fold.y_test, task)
                    saturated = _saturated(estimator, C)
                for i in at_C:
                    scores[i] = score
        # the shared Gram matrix is charged in equal parts to the heads that use it
        results[name] = (scores, time.perf_counter() - t1 + shared / len(names), fits, 0)
    return results


# ---- the search ----------------------------------------------------------------------------------


def _best(settings, fold_scores: np.ndarray) -> tuple[int, np.ndarray]:
    means = fold_scores.mean(axis=1)  # NaN when any fold is NaN, as in GridSearchCV
    finite = np.flatnonzero(np.isfinite(means))
    if finite.size == 0:
        return -1, means
    return int(finite[np.argmax(means[finite])]), means  # argmax takes the first of equal means


def _refit(name, task, setting, X, y, scale, max_iter, dual, primal_names):
    prefix = "clf__estimator__" if task == "multilabel" else "clf__"
    if name == "svc-linear" and name in primal_names:
        cap = max_iter or get_head("linear-svc").build().max_iter
        estimator = scaled(primal_linear_kernel_svc(C=setting["C"], max_iter=cap), scale)
    elif name == "linear-svc":
        solver = DualLinearSVC if dual else PrimalLinearSVC
        estimator = scaled(solver(**{**get_head(name).build().get_params(), **setting,
                                     **({"max_iter": max_iter} if max_iter else {})}), scale)
    elif name in KERNELS and X.shape[0] <= MAX_KERNEL_ROWS:
        estimator = scaled(KernelSVC(name=name, C=setting["C"], gamma=setting.get("gamma", "scale")), scale)
    else:
        estimator = get_head(name).make(task, scale=scale)
        estimator.set_params(**{prefix + k: v for k, v in setting.items()})
    t0 = time.perf_counter()
    n_warn = _counting_fit(estimator, X, y)
    n_warn += not getattr(estimator[-1], "converged_", True)
    return estimator, time.perf_counter() - t0, n_warn


def _record(key, f, outcome, scores, seconds, warn_counts, fit_counts) -> None:
    name, i = key
    scores[name][i, f], secs, n_warn = outcome
    seconds[name] += secs
    warn_counts[name] += n_warn
    fit_counts[name] += 1


def search_heads(names, X, y, task: str, *, folds, grids: dict | None = None, scale: bool = True,
                 n_jobs: int = 1, linear_svc_max_iter: int | None = None, on_done=None) -> dict[str, HeadFit]:
    """Grid-search each head in ``names`` by mean fold AUC and refit the best setting on all of X.

    ``grids``: {head: short-name grid} (default: the paper's, see head_grid). ``on_done(HeadFit)`` is
    called as each head finishes. Returns {name: HeadFit} in the order of ``names``.
    """
    check_task(task)
    if linear_svc_max_iter is not None and (isinstance(linear_svc_max_iter, bool)
                                            or not isinstance(linear_svc_max_iter, numbers.Integral)
                                            or not 1 <= linear_svc_max_iter <= MAX_ITER_LIMIT):
        raise MedsearchError(f"linear_svc_max_iter (--max-iter) must be a whole number between 1 and {MAX_ITER_LIMIT}, "
                             f"got {linear_svc_max_iter!r}")
    names = list(dict.fromkeys(names))
    grids = {name: (grids or {}).get(name) or head_grid(name) for name in names}
    for grid in grids.values():
        check_C(grid.get("C"))
    X, y = np.asarray(X), np.asarray(y)
    folds = list(folds)
    fold_data = _folds(X, y, folds, scale)
    n_train = max(tr.size for tr, _ in folds)
    dual = "linear-svc" in names and dual_linear_svc(n_train, X.shape[1])
    primal_names = [n for n in names if (n == "linear-svc" and not dual)
                    or (n == "svc-linear" and primal_svc_linear(task, n_train, X.shape[1]))]
    kernel_names = [n for n in names if n not in primal_names
                    and ((n in KERNELS and X.shape[0] <= MAX_KERNEL_ROWS) or n == "linear-svc")]
    settings = {name: _settings(grids[name]) for name in names}
    scores = {name: np.full((len(settings[name]), len(folds)), np.nan) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    warn_counts = dict.fromkeys(names, 0)
    fit_counts = dict.fromkeys(names, 0)

    # (key, fold, function, arguments), biggest first for an even load across workers: a primal unit solves
    # every C of its head on a fold (7-class benchmark: about 30 s against 7 s for a kernel unit)
    plain = [(name, i, f) for name in names if name not in kernel_names
             for f in range(len(folds)) for i in range(len(settings[name]))]
    primal = sorted({(name, f) for name, i, f in plain if name in primal_names})
    units = [(("primal", name), f, _primal_unit, (name, settings[name], task, fold_data[f], linear_svc_max_iter))
             for name, f in primal]
    if kernel_names:
        units += [("kernel", f, _kernel_unit, (kernel_names, task, grids, fold_data[f], linear_svc_max_iter))
                  for f in range(len(folds))]
    units += [((name, i), f, _plain_unit, (name, task, settings[name][i], fold_data[f]))
              for name, i, f in plain if name not in primal_names]
    # With primal units, worker processes: scipy's LAPACK wrappers (the primal solvers' Cholesky
    # factorisations) and numpy's many small operations hold the GIL, so two threads ran the 7-class hinge
    # path 1.5x slower each (joblib memory-maps the fold arrays for the workers). Otherwise threads (libsvm
    # and BLAS release the GIL), which spare small searches the workers' start-up. BLAS gets one thread
    # either way: in the workers through joblib, in this process (threads, refits) through threadpool_limits,
    # which is process-wide (set per thread, its exits would undo each other).
    workers = dict(backend="loky", inner_max_num_threads=1) if primal else dict(backend="threading")
    with threadpool_limits(1), ThreadPoolExecutor(max(1, int(n_jobs))) as pool:
        with parallel_config(**workers):
            outcomes = Parallel(n_jobs=max(1, int(n_jobs)), return_as="generator")(
                delayed(fn)(*args) for _, _, fn, args in units)
        for (key, f, _, _), outcome in zip(units, outcomes):
            if key == "kernel":
                for name, (values, secs, fits, n_warn) in outcome.items():
                    scores[name][:, f] = values
                    seconds[name] += secs
                    fit_counts[name] += fits
                    warn_counts[name] += n_warn
            elif key[0] == "primal":  # key = ("primal", head name)
                for i, setting_outcome in outcome.items():
                    _record((key[1], i), f, setting_outcome, scores, seconds, warn_counts, fit_counts)
            else:
                _record(key, f, outcome, scores, seconds, warn_counts, fit_counts)

        chosen = {}
        for name in names:
            best, means = _best(settings[name], scores[name])
            if best < 0:
                raise MedsearchError(f"head {name!r}: cross-validated AUC is undefined for every setting; "
                                     "check that every fold holds every class")
            chosen[name] = (best, means)
        refits = {name: pool.submit(_refit, name, task, settings[name][chosen[name][0]], X, y, scale,
                                    linear_svc_max_iter, dual, primal_names) for name in names}
        results = {}
        for name in names:
            estimator, secs, n_warn = refits[name].result()
            best, means = chosen[name]
            fit = HeadFit(
                name=name, estimator=estimator, params=dict(settings[name][best]), cv_auc=float(means[best]),
                cv_results=[{"params": dict(s), "mean_auc": float(m), "fold_aucs": [float(v) for v in scores[name][i]]}
                            for i, (s, m) in enumerate(zip(settings[name], means))],
                seconds=seconds[name] + secs, not_converged=warn_counts[name] + n_warn,
                n_fits=fit_counts[name] + 1)
            if name == "svc-linear" and name in primal_names:
                fit.notes.append(f"{n_train} training rows > {X.shape[1]} dimensions: libsvm's problem (hinge, free bias) "
                                 "solved by Newton's method in the primal")
            elif name in KERNELS and name not in kernel_names:
                fit.notes.append(f"{X.shape[0]} training rows: too many for a precomputed kernel, fitted with the native kernel")
            results[name] = fit
            if on_done:
                on_done(fit)
    return results
