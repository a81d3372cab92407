"""The reference backend of search_heads: scikit-learn's plain GridSearchCV per head (heads.grid_search_cv).

Native kernels, liblinear and libsvm as the heads are built, the scaler refitted per setting: slow, and
the definition the fast backend is checked against.
"""
from __future__ import annotations

import time

import numpy as np

from ..evaluation.heads import grid_search_cv, short_params, undefined_auc
from .headfit import HeadFit, cv_table, grid_settings


def _fold_scores(search, n_folds: int) -> np.ndarray:
    results = search.cv_results_
    return np.column_stack([results[f"split{f}_test_score"] for f in range(n_folds)])


def search_reference(names, X, y, task: str, *, folds, grids: dict, scale: bool, n_jobs: int,
                     linear_svc_max_iter: int | None, on_done=None) -> dict[str, HeadFit]:
    """search_heads' reference backend; arguments as there, already checked. ``linear_svc_max_iter`` sets
    LinearSVC's max_iter."""
    results = {}
    for name in names:
        fixed = {"max_iter": linear_svc_max_iter} if name == "linear-svc" and linear_svc_max_iter else None
        t0 = time.perf_counter()
        search, not_converged = grid_search_cv(name, X, y, task, folds=folds, grid=grids[name], n_jobs=n_jobs,
                                               scale=scale, fixed=fixed)
        if not np.isfinite(search.best_score_):
            raise undefined_auc(name)
        settings = grid_settings(grids[name])
        fold_scores = _fold_scores(search, len(folds))
        results[name] = HeadFit(
            name=name, estimator=search.best_estimator_, params=short_params(search.best_params_),
            cv_auc=float(search.best_score_), cv_results=cv_table(settings, fold_scores.mean(axis=1), fold_scores),
            seconds=time.perf_counter() - t0, not_converged=not_converged,
            n_fits=len(settings) * len(folds) + 1)
        if on_done:
            on_done(results[name])
    return results
