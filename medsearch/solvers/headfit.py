"""What a head's grid search returns, and the refit rule both backends share."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import ParameterGrid


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


def grid_settings(grid: dict) -> list[dict]:
    """A short-name grid's settings in the order GridSearchCV uses (sorted keys, then product)."""
    return list(ParameterGrid(grid))


def best_setting(fold_scores: np.ndarray) -> tuple[int, np.ndarray]:
    """(index of the best setting, mean AUC per setting) from (settings, folds) AUCs, by GridSearchCV's rule:
    a NaN fold makes a setting's mean NaN, the first of equal means wins; -1 when no mean is finite."""
    means = fold_scores.mean(axis=1)
    finite = np.flatnonzero(np.isfinite(means))
    if finite.size == 0:
        return -1, means
    return int(finite[np.argmax(means[finite])]), means


def cv_table(settings: list[dict], means, fold_scores) -> list[dict]:
    """HeadFit.cv_results: one row per setting, in grid order."""
    return [{"params": dict(s), "mean_auc": float(m), "fold_aucs": [float(v) for v in scores]}
            for s, m, scores in zip(settings, means, fold_scores)]
