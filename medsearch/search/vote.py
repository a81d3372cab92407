"""The neighbours' vote, on its own: plain numpy, so that `query` (which votes on every search) does not import
scikit-learn, which the KNNVoter estimator in knn.py needs. See knn.py for the vote's definition."""
from __future__ import annotations

import numpy as np

from ..errors import MedsearchError

WEIGHTS = ("uniform", "similarity")
_EPS = 1e-6


class KNNInputError(MedsearchError, ValueError):
    """Bad k-NN parameters or input values: a user error for the CLI, a ValueError for scikit-learn."""


def check_weights(weights) -> None:
    if weights not in WEIGHTS:
        raise KNNInputError(f"unknown k-NN weighting {weights!r}; use one of {', '.join(WEIGHTS)}")


def vote_shares(similarities: np.ndarray, indices: np.ndarray, labels: np.ndarray, weights: str,
                n_classes: int | None = None) -> np.ndarray:
    """(q, C) vote shares from neighbour lists (q, k).

    ``labels`` holds one entry per training row: class codes 0..C-1 (1-D; ``n_classes`` = C, default the
    largest code + 1) or a multi-hot (n_train, L) matrix (multilabel; a one-hot matrix gives the same shares
    as its codes).
    """
    check_weights(weights)
    similarities = np.asarray(similarities)
    indices = np.asarray(indices)
    labels = np.asarray(labels)
    if weights == "uniform":
        w = np.ones(similarities.shape, dtype=np.float64)
    else:
        w = np.maximum(similarities.astype(np.float64), 0.0) + _EPS
    total = w.sum(axis=1, keepdims=True)
    q = indices.shape[0]
    if labels.ndim == 2:
        votes = np.zeros((q, labels.shape[1]), dtype=np.float64)
        for j in range(indices.shape[1]):  # rank by rank: the same sums, in the same order, as one (q, k, L) block
            votes += w[:, j, None] * labels[indices[:, j]]
        return votes / total
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise MedsearchError(f"labels must be 1-D class codes or a 2-D 0/1 matrix, got {labels.dtype} "
                             f"of shape {labels.shape}")
    C = int(labels.max(initial=-1)) + 1 if n_classes is None else int(n_classes)
    codes = labels[indices]
    if codes.size and (codes.min() < 0 or codes.max() >= C):
        raise MedsearchError(f"class codes must lie in 0..{C - 1} (n_classes={C}), got {codes.min()}..{codes.max()}")
    cells = (np.arange(q, dtype=np.int64)[:, None] * C + codes).ravel()
    votes = np.bincount(cells, weights=w.ravel(), minlength=q * C).reshape(q, C)
    return votes / total
