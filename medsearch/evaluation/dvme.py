"""The DVME head (Truong et al., arXiv 2108.10048) and the MLP adapter head, as scikit-learn classifiers.

DVMEClassifier takes X as the concatenation of several encoders' embeddings (block i: the i-th encoder's
columns, ``block_dims`` their widths), weighs the encoders per image by attention and classifies the weighted
combination (dvme_net). MLPHead is the single-encoder case: one block, whose projection is the hidden layer.
Both take binary and multiclass y (1-D) and multilabel y (a 0/1 matrix, one sigmoid output per label);
binary and multilabel train with binary cross-entropy, multiclass with cross-entropy. Training stops early on
a seeded validation part (stratified by class, or by label pattern) and keeps the best epoch; the same
``random_state`` and thread count give the same weights. Predictions are float64 numpy (dvme_net.forward).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import MedsearchError
from ..solvers.inputs import check_two_classes, dense_multilabel_tags, label_targets
from .dvme_net import build_net, deterministic, forward, net_arrays, train


class HeadInputError(MedsearchError, ValueError):
    """A parameter or input the DVME / MLP heads cannot take: a user error for the CLI, a ValueError for sklearn."""


def caller_threads() -> int:
    """The thread count the caller allows (the smallest threadpoolctl limit in force), for torch's own pool."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("num_threads")]
    return max(1, min(counts)) if counts else 1


def validation_mask(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows held out for early stopping: ``fraction`` of each class (1-D y) or label pattern (2-D y), rounded
    down, so a class with few rows stays in training; when that holds out nothing, a seeded random share."""
    rng = np.random.default_rng(seed)
    groups = np.unique(y, axis=0, return_inverse=True)[1].ravel() if y.ndim == 2 else y
    valid = np.zeros(y.shape[0], dtype=bool)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        valid[rng.permutation(rows)[:int(fraction * rows.size)]] = True
    if not valid.any() and int(fraction * y.shape[0]) >= 1:
        valid[rng.permutation(y.shape[0])[:int(fraction * y.shape[0])]] = True
    return valid


class _NetworkHead(ClassifierMixin, BaseEstimator):
    """What DVMEClassifier and MLPHead share: checks, targets, the training run, predictions."""

    def _blocks(self, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _hidden(self) -> int:
        raise NotImplementedError

    def _check_params(self) -> None:
        whole = {"max_epochs": (self.max_epochs, 1), "patience": (self.patience, 1),
                 "batch_size": (self.batch_size, 1), "hidden size": (self._hidden(), 1)}
        for name, (value, low) in whole.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise HeadInputError(f"{name} must be a whole number of at least {low}, got {value!r}")
        for name, value, ok in (("dropout", self.dropout, lambda v: 0 <= v < 1),
                                ("validation_fraction", self.validation_fraction, lambda v: 0 <= v < 1),
                                ("weight_decay", self.weight_decay, lambda v: v >= 0),
                                ("lr", self.lr, lambda v: v > 0)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not ok(value):
                raise HeadInputError(f"{name} is out of range: {value!r}")

    def _targets(self, y) -> tuple[np.ndarray, str, int]:
        """(training targets, loss kind, outputs), setting classes_ and task_."""
        if y.ndim == 2:
            self.task_, self.classes_ = "multilabel", np.arange(y.shape[1])
            return y.astype(np.float32), "bce", y.shape[1]
        check_two_classes(y)
        self.classes_ = np.unique(y)
        index = np.searchsorted(self.classes_, y)
        if self.classes_.size == 2:
            self.task_ = "binary"
            return index.astype(np.float32)[:, None], "bce", 1
        self.task_ = "multiclass"
        return index.astype(np.int64), "ce", self.classes_.size

    def fit(self, X, y):
        self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        y = label_targets(y)
        blocks = self._blocks(X.shape[1])
        T, kind, n_out = self._targets(y)
        seed = int(self.random_state or 0)
        valid = validation_mask(y, float(self.validation_fraction), seed)
        with deterministic(caller_threads()):
            import torch

            generator = torch.Generator().manual_seed(seed)
            net = build_net(blocks, self._hidden(), n_out, float(self.dropout), generator)
            self.n_epochs_, self.stopped_early_ = train(
                net, X.astype(np.float32), T, kind, valid, lr=float(self.lr), weight_decay=float(self.weight_decay),
                max_epochs=int(self.max_epochs), patience=int(self.patience), batch_size=int(self.batch_size),
                generator=generator)
        self.block_dims_, self.arrays_ = blocks, net_arrays(net, len(blocks))
        return self

    def _forward(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "arrays_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return forward(self.arrays_, self.block_dims_, X)

    def decision_function(self, X) -> np.ndarray:
        """Logits: (n,) for binary (> 0: classes_[1]), else (n, classes)."""
        logits = self._forward(X)[0]
        return logits[:, 0] if self.task_ == "binary" else logits

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) for binary, softmax (n, classes) for multiclass, each label's sigmoid (n, labels) for multilabel."""
        return proba_from_logits(self._forward(X)[0], self.task_)

    def predict(self, X) -> np.ndarray:
        decision = self.decision_function(X)
        if self.task_ == "multilabel":
            return (decision > 0).astype(int)
        return self.classes_[decision.argmax(axis=1) if self.task_ == "multiclass" else (decision > 0).astype(int)]

    def attention(self, X) -> np.ndarray:
        """Each image's attention weights over the encoder blocks, (n, n_blocks), rows summing to 1."""
        return self._forward(X)[1]

    def __sklearn_tags__(self):
        return dense_multilabel_tags(super().__sklearn_tags__())


def proba_from_logits(logits: np.ndarray, task: str) -> np.ndarray:
    """Probabilities of a network head's logits, as its predict_proba gives them."""
    if task == "multiclass":
        return softmax(logits, axis=1)
    p = expit(logits)
    return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if task == "binary" else p


class DVMEClassifier(_NetworkHead):
    """Dynamic visual meta-embedding over the encoder blocks of X.

    block_dims: each encoder's number of columns, in the order of X's columns (None: X is one block);
    shared_dim: the shared space's width; dropout before the classifier; AdamW's weight_decay and lr;
    training stops after ``patience`` epochs without a lower loss on the held-out ``validation_fraction``
    (0: no early stopping) or at ``max_epochs``; random_state seeds weights, dropout, batches and the split.
    """

    def __init__(self, block_dims=None, shared_dim=64, dropout=0.1, weight_decay=1e-4, lr=1e-3, max_epochs=200,
                 patience=10, validation_fraction=0.15, batch_size=256, random_state=0):
        self.block_dims, self.shared_dim, self.dropout, self.weight_decay = block_dims, shared_dim, dropout, weight_decay
        self.lr, self.max_epochs, self.patience = lr, max_epochs, patience
        self.validation_fraction, self.batch_size, self.random_state = validation_fraction, batch_size, random_state

    def _hidden(self) -> int:
        return self.shared_dim

    def _blocks(self, n_features: int) -> tuple[int, ...]:
        if self.block_dims is None:
            return (n_features,)
        dims = tuple(self.block_dims)
        if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
            raise HeadInputError(f"block_dims must be positive whole numbers, got {self.block_dims!r}")
        if sum(dims) != n_features:
            raise HeadInputError(f"block_dims {dims} add up to {sum(dims)} columns, but X has {n_features}; "
                                 "give each encoder's embedding width, in the order of X's columns")
        return tuple(int(d) for d in dims)


class MLPHead(_NetworkHead):
    """The MLP adapter: one hidden layer (Linear, LayerNorm, ReLU) of ``hidden_dim``, dropout, a linear
    classifier; the single-block DVME network, trained the same way (parameters as DVMEClassifier's)."""

    def __init__(self, hidden_dim=64, dropout=0.1, weight_decay=1e-4, lr=1e-3, max_epochs=200, patience=10,
                 validation_fraction=0.15, batch_size=256, random_state=0):
        self.hidden_dim, self.dropout, self.weight_decay, self.lr = hidden_dim, dropout, weight_decay, lr
        self.max_epochs, self.patience = max_epochs, patience
        self.validation_fraction, self.batch_size, self.random_state = validation_fraction, batch_size, random_state

    def _hidden(self) -> int:
        return self.hidden_dim

    def _blocks(self, n_features: int) -> tuple[int, ...]:
        return (n_features,)
