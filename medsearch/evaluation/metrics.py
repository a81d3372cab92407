"""Test-set metrics for classification heads: AUC, per-class AUC, a small report, bootstrap CIs.

Conventions (shared with splits, knn, heads): ``task`` is 'binary' | 'multiclass' | 'multilabel'.
``y`` is an int array (n,) of class indices 0..C-1, or a 0/1 array (n, L) for multilabel. ``scores``
are floats: binary (n,) score of class 1 (an (n, 2) array is accepted and its column 1 used),
multiclass (n, C), multilabel (n, L).

AUC definitions
- binary: ROC AUC of the class-1 score.
- multiclass: macro one-vs-rest, the unweighted mean over all C classes of the binary AUC of
  "class c vs the rest" scored by column c. This is exactly what
  ``roc_auc_score(multi_class='ovr', average='macro')`` computes, but sklearn only accepts
  probabilities summing to 1; computing it class by class also works for SVM decision scores
  (AUC only depends on the ranking within each column). It is undefined (NaN) when any of the C
  classes is absent from ``y``, as sklearn refuses that case too.
- multilabel: macro over the labels that have both positives and negatives in ``y``; NaN if none.
Undefined AUCs are returned as NaN, never raised.

Bootstrap: percentile bootstrap over test rows (rows resampled with replacement, seeded with
``numpy.random.default_rng(seed)``). Resamples in which the AUC is undefined (a class drawn zero
times) are skipped. scipy.stats.bootstrap is not used because it cannot skip those resamples.
Resampled AUCs use the Mann-Whitney form of the AUC with each row weighted by how often it was drawn,
vectorised over resamples; the value equals sklearn's roc_auc_score on the resampled rows.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

from medsearch.errors import MedsearchError
from medsearch.storage.schema import TASKS

_BOOT_BATCH_ELEMENTS = 4_000_000  # (resamples x rows) held in memory at once


def check_task(task: str) -> None:
    if task not in TASKS:
        raise MedsearchError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")


def check_labels_scores(y, scores, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise (y, scores); binary (n, 2) scores become (n,)."""
    check_task(task)
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=float)
    if task == "binary" and scores.ndim == 2 and scores.shape[1] == 2:
        scores = scores[:, 1]
    if y.shape[0] != scores.shape[0]:
        raise MedsearchError(f"labels have {y.shape[0]} rows but scores have {scores.shape[0]}; pass one score row per label row")
    if task == "binary" and (y.ndim != 1 or scores.ndim != 1):
        raise MedsearchError("binary task needs labels of shape (n,) and scores of shape (n,) or (n, 2)")
    if task == "multiclass" and (y.ndim != 1 or scores.ndim != 2):
        raise MedsearchError("multiclass task needs labels of shape (n,) and scores of shape (n, C)")
    if task == "multilabel" and (y.ndim != 2 or y.shape != scores.shape):
        raise MedsearchError("multilabel task needs labels and scores of the same shape (n, L)")
    if y.shape[0] == 0:
        raise MedsearchError("no rows to score; the test set is empty")
    if not np.all(np.isfinite(scores)):
        raise MedsearchError("scores contain NaN or infinite values; check the head's output")
    if task == "multiclass" and y.size and (y.min() < 0 or y.max() >= scores.shape[1]):
        raise MedsearchError(f"class indices must lie in 0..{scores.shape[1] - 1} to match {scores.shape[1]} score columns")
    if task == "binary" and not np.isin(y, (0, 1)).all():
        raise MedsearchError("binary labels must be 0 or 1")
    return y, scores


def _one_vs_rest(y: np.ndarray, scores: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Binary indicator matrix (n, K) and score matrix (n, K), one column per class/label."""
    if task == "binary":
        return y[:, None] == 1, scores[:, None]
    if task == "multiclass":
        return y[:, None] == np.arange(scores.shape[1])[None, :], scores
    return y.astype(bool), scores


def _binary_auc(truth: np.ndarray, score: np.ndarray) -> float:
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, score))


def per_class_auc(y, scores, task: str) -> dict[int, float]:
    """One-vs-rest AUC per class (multiclass) or label (multilabel); binary gives {1: auc}."""
    y, scores = check_labels_scores(y, scores, task)
    truth, cols = _one_vs_rest(y, scores, task)
    if task == "binary":
        return {1: _binary_auc(truth[:, 0], cols[:, 0])}
    return {c: _binary_auc(truth[:, c], cols[:, c]) for c in range(cols.shape[1])}


def auc(y, scores, task: str) -> float:
    """Macro AUC as defined in the module docstring; NaN when undefined."""
    values = np.array(list(per_class_auc(y, scores, task).values()))
    if task == "multilabel":
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else float("nan")
    return float(values.mean())  # NaN if any class is absent


def auc_aligned(y, scores, task: str, classes=None) -> float:
    """AUC when score columns follow ``classes`` (an estimator's ``classes_``) rather than 0..C-1.

    A cross-validation fold whose training part lacks a class yields fewer score columns; then the
    AUC is NaN if that class occurs in the test part (sklearn's scorer fails the same way).
    """
    if task == "multilabel" or classes is None:
        return auc(y, scores, task)
    classes = list(np.asarray(classes).tolist())
    y = np.asarray(y)
    if task == "binary":
        if len(classes) != 2:
            return float("nan")
        return auc((y == classes[1]).astype(int), scores, task)
    position = {c: i for i, c in enumerate(classes)}
    if any(c not in position for c in np.unique(y).tolist()):
        return float("nan")
    return auc(np.array([position[c] for c in y.tolist()], dtype=int), scores, task)


def predictions_from_scores(scores: np.ndarray, task: str, threshold: float) -> np.ndarray:
    if task == "multiclass":
        return scores.argmax(axis=1)
    return (scores >= threshold).astype(int)


def classification_report_dict(y, scores, task: str, *, predictions=None, threshold: float = 0.5) -> dict:
    """Accuracy and macro precision/recall/F1 (zero_division=0).

    Predictions are taken from ``predictions`` if given, else from scores: argmax (multiclass) or
    ``scores >= threshold`` (binary, multilabel). Use threshold=0.5 for probabilities and 0.0 for
    SVM decision functions. Multilabel accuracy is exact-match (subset) accuracy: a row counts only
    if every label is right; precision/recall/F1 are macro over labels.
    """
    y, scores = check_labels_scores(y, scores, task)
    pred = predictions_from_scores(scores, task, threshold) if predictions is None else np.asarray(predictions)
    if pred.shape != y.shape:
        raise MedsearchError(f"predictions have shape {pred.shape} but labels have {y.shape}")
    labels = None
    if task == "multiclass":
        labels = np.arange(scores.shape[1])
    elif task == "binary":
        labels = np.array([0, 1])
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, average="macro", zero_division=0)
    return {
        "n": int(y.shape[0]),
        "accuracy": float(accuracy_score(y, pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }


# ---- bootstrap -----------------------------------------------------------------------------


def _weighted_auc(counts: np.ndarray, truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC of each resample, given how often each row was drawn (counts, (B, n)); NaN if one class.

    Equal to roc_auc_score on the resampled rows (tied scores get half credit), computed with one
    sort of the original scores and cumulative sums instead of sorting every resample.
    """
    order = np.argsort(score, kind="stable")
    sorted_score, sorted_truth = score[order], truth[order]
    weights = counts[:, order]
    tie_starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    pos = np.add.reduceat(weights * sorted_truth, tie_starts, axis=1)
    neg = np.add.reduceat(weights * ~sorted_truth, tie_starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos == 0) | (n_neg == 0), np.nan, result)


def _resampled_aucs(truth: np.ndarray, cols: np.ndarray, task: str, counts: np.ndarray) -> np.ndarray:
    """Macro AUC for each resample described by row counts (B, n); NaN where undefined."""
    per_class = np.stack([_weighted_auc(counts, truth[:, c], cols[:, c]) for c in range(cols.shape[1])], axis=1)
    if task == "multilabel":
        defined = ~np.isnan(per_class)
        n_defined = defined.sum(axis=1)
        with np.errstate(invalid="ignore"):
            means = np.where(defined, per_class, 0.0).sum(axis=1) / n_defined
        return np.where(n_defined > 0, means, np.nan)
    return per_class.mean(axis=1)


def _bootstrap_counts(n: int, n_boot: int, seed: int):
    """Yield (batch, n) arrays: how often each row is drawn in each resample (rows drawn uniformly
    with replacement); the sequence depends only on (n, n_boot, seed)."""
    if n_boot < 1:
        raise MedsearchError("n_boot must be at least 1")
    rng = np.random.default_rng(seed)
    batch = max(1, _BOOT_BATCH_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _bootstrap_matrix(y, score_sets, task, n_boot, seed, progress=None) -> np.ndarray:
    """(n_boot, len(score_sets)) resampled AUCs, every score set scored on the same resampled rows."""
    prepared = [_one_vs_rest(*check_labels_scores(y, s, task), task) for s in score_sets]
    n = prepared[0][0].shape[0]
    batch = max(1, _BOOT_BATCH_ELEMENTS // max(n, 1))
    advance = progress(-(-n_boot // batch)) if progress else None
    out = []
    for counts in _bootstrap_counts(n, n_boot, seed):
        out.append(np.stack([_resampled_aucs(truth, cols, task, counts) for truth, cols in prepared], axis=1))
        if advance:
            advance()
    return np.concatenate(out, axis=0)


def bootstrap_aucs(y, score_sets, task: str, *, n_boot: int = 1000, seed: int = 0, progress=None) -> np.ndarray:
    """(n_boot, len(score_sets)) resampled AUCs, every score set scored on the same resampled rows (NaN
    where undefined). The draws depend only on (n, n_boot, seed), so one call serves the CIs and the
    paired deltas of several methods exactly as separate bootstrap_auc_ci / paired_bootstrap_delta calls.
    ``progress(total)``: returns a callable called once per batch of resamples."""
    return _bootstrap_matrix(y, list(score_sets), task, n_boot, seed, progress)


def ci_from_bootstrap(point: float, boots: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """(point, lower, upper) percentile interval from one column of bootstrap_aucs."""
    boots = boots[~np.isnan(boots)]
    if boots.size == 0:
        return point, float("nan"), float("nan")
    lo, hi = np.percentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, float(lo), float(hi)


def delta_from_bootstrap(point: float, boots_a: np.ndarray, boots_b: np.ndarray, alpha: float = 0.05) -> dict:
    """The paired_bootstrap_delta summary from two columns of bootstrap_aucs; ``point`` = AUC(a) - AUC(b)."""
    deltas = boots_a - boots_b
    deltas = deltas[~np.isnan(deltas)]
    if deltas.size == 0:
        nan = float("nan")
        return {"delta": point, "lo": nan, "hi": nan, "p_value": nan, "n_boot": 0}
    lo, hi = np.percentile(deltas, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    b = deltas.size
    p_le = (np.count_nonzero(deltas <= 0) + 1) / (b + 1)
    p_ge = (np.count_nonzero(deltas >= 0) + 1) / (b + 1)
    p_value = min(1.0, 2 * min(p_le, p_ge))
    return {"delta": float(point), "lo": float(lo), "hi": float(hi), "p_value": float(p_value), "n_boot": int(b)}


def bootstrap_auc_ci(
    y, scores, task: str, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(point AUC on all rows, lower, upper) percentile bootstrap interval at level 1 - alpha."""
    point = auc(y, scores, task)
    return ci_from_bootstrap(point, bootstrap_aucs(y, [scores], task, n_boot=n_boot, seed=seed)[:, 0], alpha)


def paired_bootstrap_delta(
    y, scores_a, scores_b, task: str, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """AUC(a) - AUC(b) with a paired percentile bootstrap CI and a two-sided bootstrap p-value.

    Both methods are scored on the same resampled rows. The p-value is
    ``min(1, 2 * min(P*(delta <= 0), P*(delta >= 0)))`` over the bootstrap distribution, with
    (count + 1) / (B + 1) smoothing so it is never exactly 0; it is the smallest alpha at which the
    percentile interval would exclude 0.
    """
    point = auc(y, scores_a, task) - auc(y, scores_b, task)
    boots = bootstrap_aucs(y, [scores_a, scores_b], task, n_boot=n_boot, seed=seed)
    return delta_from_bootstrap(point, boots[:, 0], boots[:, 1], alpha)
