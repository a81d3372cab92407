"""The k-NN vote's k, chosen by cross-validated AUC on the tuning folds, fold by fold (for progress).

search.knn.cv_select_k scores every k of a fold from one FAISS search of its held-out rows; it is called
here once per fold, and its per-fold AUCs are averaged and ranked by its own rule (best mean AUC, ties
to the smallest k), so the choice is the one cv_select_k makes on all folds at once. ``queries``
(positions into the training part) keeps only those held-out rows as queries: a stated approximation
(approximation.py) that bounds the cost on large stores; every training row stays in each fold's gallery.
"""
from __future__ import annotations

import numpy as np

from ..errors import MedsearchError
from ..search.knn import cv_select_k


def choose_k(X, y, task: str, folds, ks, weights: str, queries=None, meter=None,
             select=cv_select_k) -> tuple[int, dict[int, float]]:
    """(best k, {k: mean fold AUC}); ``meter``: a progress factory (EvalLog.meter) or None; ``select``:
    cv_select_k (the caller's, so that it can be replaced in tests)."""
    if queries is not None:
        keep = np.zeros(y.shape[0], dtype=bool)
        keep[queries] = True
        folds = [(train, test[keep[test]]) for train, test in folds]
    advance = meter(len(folds)) if meter else None
    per_fold = {int(k): [] for k in ks}
    for fold in folds:
        _, scores = select(X, y, task, [fold], ks=ks, weights=weights)
        for k, value in scores.items():
            per_fold[k].append(value)
        if advance:
            advance()
    mean_scores = {k: float(np.mean(v)) for k, v in per_fold.items()}
    finite = {k: s for k, s in mean_scores.items() if np.isfinite(s)}
    if not finite:
        raise MedsearchError("k-NN AUC is undefined in every fold; each fold needs every class in its test part")
    return max(finite, key=lambda k: (finite[k], -k)), mean_scores
