"""Units of the fast search: every setting of one head (or of the kernel heads together) on one fold.

Each fold is standardised once and shared by every head and setting (GridSearchCV refits the scaler per
setting; the result is identical). Units are plain functions of picklable arguments, so that they can run
in worker processes.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from ..evaluation.heads import convergence_warnings, get_head, gridsearch_params, head_scores
from ..evaluation.metrics import auc_aligned
from .headfit import grid_settings
from .dual import augmented_gram, constant_score, ovr_targets, smo_pass_cap, solve
from .kernels import KERNELS, precomputed_svc, rbf, same_gammas, saturated, sq_distances, sq_norms
from .primal import FREE_BIAS_SCALING, augmented, linear_svc_path
from .routing import DUAL


@dataclass
class Fold:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def make_folds(X, y, folds, scale: bool) -> list[Fold]:
    out = []
    for train, test in folds:
        X_train, X_test = X[train], X[test]
        if scale:  # exactly what the Pipeline's StandardScaler does inside GridSearchCV
            scaler = StandardScaler().fit(X_train)
            X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        out.append(Fold(X_train, y[train], X_test, y[test]))
    return out


def _score(estimator, X_test, y_test, task: str) -> float:
    return auc_aligned(y_test, head_scores(estimator, X_test, task), task, getattr(estimator, "classes_", None))


def _decision_auc(fold: Fold, columns, task: str, classes) -> float:
    """AUC of one-vs-rest decision columns (n_test, K) on a fold's test rows."""
    decision = columns[:, 0] if task == "binary" else columns
    return auc_aligned(fold.y_test, decision, task, None if task == "multilabel" else classes)


def counting_fit(estimator, X, y) -> int:
    """Fit; return how many ConvergenceWarnings it raised (they are summarised later, not shown)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y)
    return convergence_warnings(caught)


def plain_unit(name, task, setting, fold: Fold):
    """One setting of a head on one fold, fitted by scikit-learn as GridSearchCV fits it.
    Returns (AUC, seconds, warnings)."""
    estimator = get_head(name).make(task, scale=False)  # already scaled
    estimator.set_params(**gridsearch_params(setting, task))
    t0 = time.perf_counter()
    n_warn = counting_fit(estimator, fold.X_train, fold.y_train)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    score = _score(estimator, fold.X_test, fold.y_test, task)
    return score, seconds + time.perf_counter() - t1, n_warn


def dual_unit(gram_train, gram_test, settings, task, fold: Fold, max_iter) -> tuple[list, int, int]:
    """LinearSVC's settings on one fold through dual.solve; returns (AUCs, fits, fits not converged)."""
    spec = get_head("linear-svc").build()
    s2 = spec.intercept_scaling ** 2
    aug = augmented_gram(gram_train, spec.intercept_scaling)
    targets, classes = ovr_targets(fold.y_train)
    cap = smo_pass_cap(max_iter or spec.max_iter, gram_train.shape[0])
    scores, fits, not_converged = [np.nan] * len(settings), 0, 0
    # hinge: a solution with every a_i < C is also optimal for any larger C (see kernels.saturated)
    order = sorted(range(len(settings)), key=lambda i: (settings[i]["loss"], settings[i]["C"]))
    reused = {}
    for i in order:
        C, loss = settings[i]["C"], settings[i]["loss"]
        if loss in reused:
            scores[i] = reused[loss]
            continue
        columns, below_bound = [], True
        for target in targets:
            beta, converged = solve(aug, target, C, loss, cap)
            not_converged += not converged
            below_bound &= bool(np.abs(beta).max(initial=0.0) < C)
            constant = (target > 0).all() or (target < 0).all()
            columns.append(np.full(gram_test.shape[0], constant_score(target)) if constant else (gram_test + s2) @ beta)
        fits += 1
        scores[i] = _decision_auc(fold, np.column_stack(columns), task, classes)
        if loss == "hinge" and below_bound:
            reused[loss] = scores[i]
    return scores, fits, not_converged


def primal_unit(name, settings, task, fold: Fold, max_iter) -> dict[int, tuple]:
    """LinearSVC's settings (both losses) or SVC-linear's (the hinge with a free bias) on one fold by
    primal.linear_svc_path: {setting index: (AUC, seconds, not converged)}. The squared hinge's path comes
    first and its solution at the smallest C starts the hinge's."""
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
        path_C = [settings[i]["C"] for i in members]
        first = squared_first[1] if squared_first and squared_first[0] == path_C[0] else None
        path = linear_svc_path(train, targets, path_C, loss, max_newton=max_iter or spec.max_iter, squared_first=first)
        if loss == "squared_hinge":
            squared_first = (path_C[0], path[0][0])
        for i, (W, failed) in zip(members, path):
            out[i] = (_decision_auc(fold, test @ W, task, classes), failed)
    seconds = (time.perf_counter() - t0) / max(1, len(out))
    return {i: (score, seconds, failed) for i, (score, failed) in out.items()}


def _kernels(name, settings, A, B, gram_train, gram_test):
    """({key: (train kernel, test kernel)}, {gamma setting: key}): one linear kernel, or one RBF kernel per
    distinct gamma value (settings whose gammas are the same number share it, see same_gammas)."""
    if KERNELS[name] == "linear":
        return {None: (gram_train, gram_test)}, {None: None}
    sq_a, sq_b = sq_norms(A), sq_norms(B)
    d_train, d_test = sq_distances(gram_train, sq_a, sq_a), sq_distances(gram_test, sq_b, sq_a)
    kernel_of = same_gammas(settings, A)
    return {gamma: (rbf(d_train, gamma), rbf(d_test, gamma)) for gamma in dict.fromkeys(kernel_of.values())}, kernel_of


def _svc_scores(name, task, settings, fold: Fold, kernels, kernel_of) -> tuple[list, int]:
    """An SVC head's settings on one fold's precomputed kernels: (AUC per setting, fits). Along C, once a
    fit leaves every dual coefficient below C (kernels.saturated) its score holds for every larger C."""
    scores, fits = [np.nan] * len(settings), 0
    for key, (k_train, k_test) in kernels.items():
        members = [i for i, s in enumerate(settings) if kernel_of[s.get("gamma")] == key]
        done = False
        for C in sorted({settings[i]["C"] for i in members}):
            at_C = [i for i in members if settings[i]["C"] == C]
            if not done:
                estimator = precomputed_svc(name, task, settings[at_C[0]]["C"])
                counting_fit(estimator, k_train, fold.y_train)
                fits += 1
                score = _score(estimator, k_test, fold.y_test, task)
                done = saturated(estimator, C)
            for i in at_C:
                scores[i] = score
    return scores, fits


def kernel_unit(solvers: dict, task, grids, fold: Fold, max_iter=None):
    """Every setting of the heads in ``solvers`` ({name: KERNEL or DUAL}) on one fold from one Gram matrix.

    Returns {name: ([auc per setting], seconds, n_fits, n_not_converged)}.
    """
    t0 = time.perf_counter()
    A, B = fold.X_train.astype(np.float64), fold.X_test.astype(np.float64)
    gram_train, gram_test = A @ A.T, B @ A.T
    shared = (time.perf_counter() - t0) / len(solvers)  # charged in equal parts to the heads that use it
    results = {}
    for name, solver in solvers.items():
        t1 = time.perf_counter()
        settings = grid_settings(grids[name])
        if solver == DUAL:
            scores, fits, n_warn = dual_unit(gram_train, gram_test, settings, task, fold, max_iter)
        else:
            kernels, kernel_of = _kernels(name, settings, A, B, gram_train, gram_test)
            (scores, fits), n_warn = _svc_scores(name, task, settings, fold, kernels, kernel_of), 0
            del kernels
        results[name] = (scores, time.perf_counter() - t1 + shared, fits, n_warn)
    return results
