"""k-nearest-neighbour voting over a FAISS inner-product index (cosine similarity when normalised).

Vote shares
- uniform: the fraction of the k neighbours in each class.
- similarity: each neighbour weighs max(cosine, 0) + 1e-6; the epsilon keeps the vote defined (and
  uniform) when every neighbour has similarity <= 0. Shares are normalised to sum to 1.
- multilabel: for each label, the (weighted) share of neighbours positive for it; each in [0, 1],
  rows do not sum to 1.
If k exceeds the number of training vectors, all training vectors are used.

Input checks: KNNVoter validates X and y with scikit-learn's own helpers (validate_data,
check_classification_targets, check_is_fitted), with sklearn's usual messages; tests/search/test_knn.py runs
sklearn's estimator checks on it and declares the one that cannot apply. A validation error is re-raised as
KNNInputError (a MedsearchError and a ValueError) or KNNInputTypeError (a MedsearchError and a TypeError,
e.g. sparse X), so the CLI reports it as a user error and sklearn code that catches ValueError/TypeError
still does.

Memory: single-label votes are summed from class codes (one bincount over (query, class) cells), never
from one-hot rows, so a vote needs O(q * k + q * C) memory for q queries, k neighbours and C classes;
multilabel votes add one (q, L) slice per neighbour rank and never gather a (q, k, L) block.
"""

from __future__ import annotations

import contextlib
import warnings

import faiss
import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from medsearch.errors import MedsearchError
from medsearch.storage.faiss_index import normalize as normalize_rows
from medsearch.evaluation.metrics import auc_aligned
from medsearch.search.vote import WEIGHTS, KNNInputError, check_weights as _check_weights, vote_shares

__all__ = ["WEIGHTS", "KNNInputError", "KNNInputTypeError", "KNNVoter", "vote_shares", "cv_select_k", "KNN_K_GRID"]

KNN_K_GRID = (1, 3, 5, 7, 9, 11, 15, 21, 31, 41, 51)




class KNNInputTypeError(MedsearchError, TypeError):
    """Input of an unsupported kind (e.g. a sparse matrix): a user error for the CLI, a TypeError for sklearn."""


@contextlib.contextmanager
def _as_user_errors():
    """Re-raise scikit-learn's validation errors as KNNInputError / KNNInputTypeError, message unchanged."""
    try:
        yield
    except MedsearchError:
        raise
    except ValueError as exc:
        raise KNNInputError(str(exc)) from exc
    except TypeError as exc:
        raise KNNInputTypeError(str(exc)) from exc


def _as_vectors(X, normalize: bool) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise MedsearchError(f"expected a non-empty 2-D array of vectors, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise MedsearchError("vectors contain NaN or infinite values; re-embed the affected images")
    return normalize_rows(X) if normalize else np.ascontiguousarray(X)


def _flat_index(X, normalize: bool = True) -> faiss.IndexFlatIP:
    vectors = _as_vectors(X, normalize)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def _search(index: faiss.Index, X, k: int, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices), each (n, min(k, index size)), nearest first."""
    queries = _as_vectors(X, normalize)
    if queries.shape[1] != index.d:
        raise MedsearchError(f"query vectors have {queries.shape[1]} dimensions but the index has {index.d}")
    return index.search(queries, min(int(k), index.ntotal))


def _check_params(k, weights) -> None:
    _check_weights(weights)
    if int(k) < 1:
        raise KNNInputError(f"k must be at least 1, got {k}")


class KNNVoter(ClassifierMixin, BaseEstimator):
    """Cosine k-NN classifier with a FAISS IndexFlatIP; sklearn-compatible (clone, GridSearchCV, deepcopy).

    ``y`` is 1-D class values (any values; ``classes_`` = np.unique(y)) or a 2-D 0/1 matrix for
    multilabel (``classes_`` = arange(L)); a single column that is not 0/1 is taken as a column vector of
    classes (with sklearn's DataConversionWarning), and other 2-D y is refused. ``labels_`` keeps, per
    training row, the code of its class in ``classes_`` (1-D) or its 0/1 label row (multilabel), the form
    vote_shares takes. The FAISS index is
    serialised to bytes when pickled or deep-copied, since FAISS objects are not picklable themselves.
    """

    def __init__(self, k: int = 10, weights: str = "similarity", normalize: bool = True):
        self.k = k
        self.weights = weights
        self.normalize = normalize

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False  # FAISS needs dense vectors; sparse X is refused with a TypeError
        tags.target_tags.multi_output = True  # a 2-D 0/1 y is multilabel ...
        tags.classifier_tags.multi_label = True  # ... and only multilabel: other 2-D y is refused
        return tags

    def fit(self, X, y):
        _check_params(self.k, self.weights)
        with _as_user_errors():
            X, y = validate_data(self, X, y, multi_output=True, dtype=np.float32)
            y = _targets(y)
        if y.ndim == 2:
            self.multilabel_ = True
            self.classes_ = np.arange(y.shape[1])
            self.labels_ = (y != 0).astype(np.float32)
        else:
            self.multilabel_ = False
            self.classes_, encoded = np.unique(y, return_inverse=True)
            self.labels_ = encoded.astype(np.int64)
        self.index_ = _flat_index(X, self.normalize)
        return self

    def kneighbors(self, X, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "index_")
        with _as_user_errors():
            X = validate_data(self, X, reset=False, dtype=np.float32)
        return _search(self.index_, X, self.k if k is None else k, self.normalize)

    def predict_proba(self, X) -> np.ndarray:
        similarities, indices = self.kneighbors(X)
        return vote_shares(similarities, indices, self.labels_, self.weights, self.classes_.size)

    def predict(self, X) -> np.ndarray:
        shares = self.predict_proba(X)
        if self.multilabel_:
            return (shares >= 0.5).astype(int)
        return self.classes_[shares.argmax(axis=1)]

    def __getstate__(self):
        state = self.__dict__.copy()
        if isinstance(state.get("index_"), faiss.Index):
            state["index_"] = faiss.serialize_index(state["index_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("index_"), np.ndarray):
            state["index_"] = faiss.deserialize_index(state["index_"])
        self.__dict__.update(state)


def _targets(y) -> np.ndarray:
    """y as validated class values (1-D) or a 0/1 label matrix (2-D, multilabel).

    A single column that is not 0/1 is a column vector of classes: it is flattened with sklearn's
    DataConversionWarning. A single 0/1 column stays a one-label multilabel matrix.
    """
    if sparse.issparse(y):
        y = y.toarray()
    y = np.asarray(y)
    if y.ndim == 2:
        binary = y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all()
        if y.shape[1] == 1 and not binary:
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape "
                          "of y to (n_samples,), for example using ravel().", DataConversionWarning, stacklevel=3)
            y = y[:, 0]
        elif not binary:
            raise ValueError("2-D y must be a 0/1 label matrix (multilabel); multiclass-multioutput targets "
                             "are not supported")
    check_classification_targets(y)
    return y


def cv_select_k(
    X, y, task: str, folds, ks=KNN_K_GRID, weights: str = "similarity", normalize: bool = True
) -> tuple[int, dict[int, float]]:
    """Choose k by cross-validated AUC with one FAISS search per fold (max(ks) neighbours).

    Gives the same fold scores as GridSearchCV over KNNVoter(k) with the AUC scorer, but each fold is
    searched once and every k is scored from the prefix of the neighbour list. Returns
    (best_k, {k: mean AUC over folds}); ties go to the smallest k.
    """
    ks = sorted(int(k) for k in ks)
    if not ks:
        raise MedsearchError("no k values to try; pass at least one k")
    _check_params(ks[-1], weights)
    X = np.asarray(X)
    y = np.asarray(y)
    fold_scores = {k: [] for k in ks}
    for train_idx, test_idx in folds:
        voter = KNNVoter(k=ks[-1], weights=weights, normalize=normalize).fit(X[train_idx], y[train_idx])
        similarities, indices = voter.kneighbors(X[test_idx], ks[-1])
        for k in ks:
            shares = vote_shares(similarities[:, :k], indices[:, :k], voter.labels_, weights, voter.classes_.size)
            fold_scores[k].append(auc_aligned(y[test_idx], shares, task, voter.classes_))
    mean_scores = {k: float(np.mean(v)) for k, v in fold_scores.items()}
    finite = {k: s for k, s in mean_scores.items() if np.isfinite(s)}
    if not finite:
        raise MedsearchError("k-NN AUC is undefined in every fold; each fold needs every class in its test part")
    best_k = max(finite, key=lambda k: (finite[k], -k))
    return best_k, mean_scores

