"""Retrieval metrics: test images query the training images (the gallery).

Inputs: the query labels, and for each query the labels of its ranked neighbours, nearest first:
(n_q, k_max) for binary/multiclass, (n_q, k_max, L) for multilabel.

Definitions (averaged over queries):
- relevant: a neighbour with the query's class; multilabel: sharing at least one positive label.
- precision@k = (relevant items in the top k) / k.
- AP@k = (1 / min(k, R)) * sum_{i<=k} P@i * rel_i, where rel_i is 1 if the item at rank i is relevant,
  P@i is precision@i and R is the number of relevant items in the whole gallery (TREC-style AP cut at
  k; ``n_relevant`` gives R per query, see ``count_relevant``). map@k is its mean over queries.
  Without ``n_relevant`` the sum is divided by the number of relevant items retrieved in the top k
  instead. That non-standard variant appears in some published medical retrieval code; it ignores the
  relevant items that were missed, so it is never lower than the standard value and often much
  higher (a single relevant hit at rank 1 already gives AP = 1).
  AP is 0 for a query with nothing relevant (R = 0, or no relevant hit for the variant).
- acc@k (majority vote): the most common class among the top k equals the query's class. Ties
  between classes go to the tied class that occurs nearest (earliest) in the ranking.
  Multilabel: each label is predicted positive when more than half of the k neighbours have it
  (a tie at exactly half takes the nearest neighbour's value); the query counts as correct only if
  the whole predicted label vector equals its own (exact match).
"""

from __future__ import annotations

import numpy as np

from medsearch.errors import MedsearchError
from medsearch.evaluation.metrics import check_task


def _relevance(y_query: np.ndarray, y_neighbors: np.ndarray, task: str) -> np.ndarray:
    if task == "multilabel":
        return ((y_neighbors != 0) & (y_query[:, None, :] != 0)).any(axis=2)
    return y_neighbors == y_query[:, None]


def _check_shapes(y_query: np.ndarray, y_neighbors: np.ndarray, task: str) -> None:
    ok = (
        y_query.ndim == 2 and y_neighbors.ndim == 3 and y_neighbors.shape[::2] == y_query.shape
        if task == "multilabel"
        else y_query.ndim == 1 and y_neighbors.ndim == 2 and y_neighbors.shape[0] == y_query.shape[0]
    )
    if not ok:
        want = "(n_q, L) and (n_q, k, L)" if task == "multilabel" else "(n_q,) and (n_q, k)"
        raise MedsearchError(
            f"{task} retrieval needs query and neighbour labels of shapes {want}, "
            f"got {y_query.shape} and {y_neighbors.shape}"
        )


def average_precision_at_k(relevance: np.ndarray, k: int, n_relevant=None) -> np.ndarray:
    """AP@k per query from a (n_q, >=k) 0/1 relevance matrix; see the module docstring."""
    rel = relevance[:, :k].astype(np.float64)
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    gained = (precision_at_i * rel).sum(axis=1)
    if n_relevant is None:
        denominator = rel.sum(axis=1)
    else:
        denominator = np.minimum(k, np.asarray(n_relevant, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, gained / denominator, 0.0)


def _majority_correct(y_query: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Top-k majority class (ties -> nearest tied class) equals the query's class; top is (n_q, k)."""
    classes, encoded = np.unique(np.concatenate([top.ravel(), y_query]), return_inverse=True)
    top_codes = encoded[: top.size].reshape(top.shape)
    query_codes = encoded[top.size :]
    counts = np.zeros((top.shape[0], classes.size), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(top.shape[0]), top.shape[1]), top_codes.ravel()), 1)
    tied = counts == counts.max(axis=1, keepdims=True)
    neighbour_is_tied = np.take_along_axis(tied, top_codes, axis=1)
    winner = top_codes[np.arange(top.shape[0]), neighbour_is_tied.argmax(axis=1)]
    return winner == query_codes


def _multilabel_majority_correct(y_query: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Per-label majority over (n_q, k, L) neighbours, ties -> nearest neighbour; exact match with the query."""
    k = top.shape[1]
    positives = (top != 0).sum(axis=1) * 2
    predicted = np.where(positives == k, top[:, 0, :] != 0, positives > k)
    return (predicted == (y_query != 0)).all(axis=1)


def retrieval_metrics(y_query, y_neighbors, task: str, ks=(1, 5, 10), n_relevant=None) -> dict[str, float]:
    """precision@k, map@k and acc@k for each k, averaged over queries; keys like 'precision@5'."""
    check_task(task)
    y_query = np.asarray(y_query)
    y_neighbors = np.asarray(y_neighbors)
    _check_shapes(y_query, y_neighbors, task)
    k_max = y_neighbors.shape[1]
    if y_query.shape[0] == 0:
        raise MedsearchError("no queries to evaluate")
    if n_relevant is not None and np.shape(n_relevant) != (y_query.shape[0],):
        raise MedsearchError(f"n_relevant needs one count per query ({y_query.shape[0]}), got shape {np.shape(n_relevant)}")
    relevance = _relevance(y_query, y_neighbors, task)
    result: dict[str, float] = {"n_queries": int(y_query.shape[0])}
    for k in sorted(set(int(k) for k in ks)):
        if not 1 <= k <= k_max:
            raise MedsearchError(f"cannot score @{k}: each query has {k_max} neighbours; retrieve at least {k}")
        top = y_neighbors[:, :k]
        correct = _multilabel_majority_correct(y_query, top) if task == "multilabel" else _majority_correct(y_query, top)
        result[f"precision@{k}"] = float(relevance[:, :k].mean())
        result[f"map@{k}"] = float(average_precision_at_k(relevance, k, n_relevant).mean())
        result[f"acc@{k}"] = float(correct.mean())
    return result


def count_relevant(y_query, y_gallery, task: str, *, chunk: int = 1024) -> np.ndarray:
    """R per query: gallery items relevant to it (same class; multilabel: a shared positive label)."""
    check_task(task)
    y_query = np.asarray(y_query)
    y_gallery = np.asarray(y_gallery)
    if task != "multilabel":
        classes, counts = np.unique(y_gallery, return_counts=True)
        lookup = dict(zip(classes.tolist(), counts.tolist()))
        return np.array([lookup.get(c, 0) for c in y_query.tolist()], dtype=np.int64)
    gallery = (y_gallery != 0).astype(np.float32)
    if y_query.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    counts = [
        ((y_query[i : i + chunk] != 0).astype(np.float32) @ gallery.T > 0).sum(axis=1)
        for i in range(0, y_query.shape[0], chunk)
    ]
    return np.concatenate(counts).astype(np.int64)
