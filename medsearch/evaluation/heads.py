"""The paper's classification heads on frozen embeddings, their grids, CV fitting and npz saving.

Heads (C grid {0.1, 1, 10, 100} for all, as in the paper):
- lr: LogisticRegression (lbfgs; multinomial for multiclass), scored by predict_proba.
- linear-svc: LinearSVC, grid also over loss {hinge, squared_hinge} (dual=True, which hinge needs).
- svc-linear: SVC(kernel='linear'); svc-rbf: SVC(kernel='rbf'), grid also over gamma {scale, auto}.
SVMs are scored by decision_function (no Platt scaling); multiclass SVC uses
decision_function_shape='ovr' so scores are (n, C). Multilabel wraps the classifier in
OneVsRestClassifier.

Grids and settings have one form in the library: short parameter names, e.g. {'C': [0.1, 1.0], 'loss':
[...]} (HeadSpec.paper_grid). gridsearch_params turns them into the Pipeline's keys ('clf__C', or
'clf__estimator__C' for multilabel) at the GridSearchCV boundary, and short_params turns them back.

Every head is a Pipeline([('scale', StandardScaler() or 'passthrough'), ('clf', ...)]).
The paper fed raw embeddings to the heads; we standardise by default (scale=True) because lbfgs and
liblinear converge far more reliably on standardised 512-2048-d embeddings, and pass scale=False to
reproduce the raw-embedding setting exactly.

Saved heads (save_head/load_head) are plain arrays + JSON metadata in an .npz, read without pickle. The
metadata records what the head was trained on: the task, the class names in score order, the store's model
key, the embedding dimension and the encoder's provenance (ENCODER_FIELDS); ``mismatches`` lists how a
store's model differs from that, so a head is never applied to other classes or other embeddings.
Only lr and linear-svc can be saved: svc-rbf is not linear, and multiclass svc-linear is one-vs-one
inside libsvm, so its coefficients do not give the one-vs-rest scores that head_scores reports.

The network heads (NETWORK_HEADS: mlp, and dvme over a fused model's encoders; see dvme) are registered
beside the paper's four: their own grids instead of C, and multilabel fitted by one network with a sigmoid
per label (NativeMultilabel keeps the 'clf__estimator__' parameter names of the one-vs-rest heads). They
are saved as arrays too (network_head).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from medsearch.display import printable
from medsearch.errors import MedsearchError
from medsearch.evaluation.dvme import DVMEClassifier, MLPHead
from medsearch.evaluation.head_checks import encoder_fields, encoder_mismatches, head_mismatches, \
    is_encoder_record
from medsearch.evaluation.metrics import auc_aligned, check_task

C_GRID = (0.1, 1.0, 10.0, 100.0)
SAVE_FORMAT = "medsearch-linear-head/2"
OLD_FORMATS = ("medsearch-linear-head/1",)  # did not record the encoder: cannot prove what they fit
LINEAR_SAVABLE = ("lr", "linear-svc")
# what `eval --save-head` offers (cli/eval.py writes them out); save_head also saves mlp and dvme (network_head)
SAVABLE_HEADS = (*LINEAR_SAVABLE, "mlp", "dvme")


def scaled(clf, scale: bool = True) -> Pipeline:
    """A head's pipeline: standardisation (or passthrough) then ``clf``."""
    return Pipeline([("scale", StandardScaler() if scale else "passthrough"), ("clf", clf)])


@dataclass(frozen=True)
class HeadSpec:
    name: str
    description: str
    build: Callable[[], BaseEstimator]
    extra_grid: dict = field(default_factory=dict)
    threshold: float = 0.0  # on head_scores: 0.5 for probabilities, 0 for decision functions
    own_grid: dict | None = None  # a grid replacing the paper's C grid (network heads)
    native_multilabel: bool = False  # fits a 0/1 label matrix itself (no one-vs-rest)
    blocks: bool = False  # needs the block widths of a fused model ('block_dims', see fused_grid)

    def make(self, task: str, *, scale: bool = True) -> Pipeline:
        check_task(task)
        clf = self.build()
        if task == "multilabel":
            clf = NativeMultilabel(clf) if self.native_multilabel else OneVsRestClassifier(clf)
        return scaled(clf, scale)

    def paper_grid(self) -> dict:
        """The paper's grid of this head, short names: {'C': [...], **extra_grid} (own_grid instead of C)."""
        base = {"C": C_GRID} if self.own_grid is None else self.own_grid
        return {key: list(values) for key, values in {**base, **self.extra_grid}.items()}

    def grid(self, task: str) -> dict:
        """The paper's grid as GridSearchCV keys of the head's Pipeline for ``task``."""
        return gridsearch_params(self.paper_grid(), task)


HEADS: dict[str, HeadSpec] = {spec.name: spec for spec in (
    HeadSpec("lr", "logistic regression (lbfgs, multinomial for multiclass)",
             lambda: LogisticRegression(max_iter=5000), threshold=0.5),
    HeadSpec("linear-svc", "linear SVM (liblinear), hinge or squared hinge loss",
             lambda: LinearSVC(dual=True, max_iter=5000, random_state=0), {"loss": ["hinge", "squared_hinge"]}),
    HeadSpec("svc-linear", "SVM with a linear kernel (libsvm)", lambda: SVC(kernel="linear", decision_function_shape="ovr")),
    HeadSpec("svc-rbf", "SVM with an RBF kernel (libsvm)", lambda: SVC(kernel="rbf", decision_function_shape="ovr"),
             {"gamma": ["scale", "auto"]}),
)}
NETWORK_HEADS: dict[str, HeadSpec] = {spec.name: spec for spec in (
    HeadSpec("mlp", "MLP adapter: one hidden layer, dropout, early stopping (torch)", MLPHead, threshold=0.5,
             own_grid={"hidden_dim": [32, 128], "weight_decay": [1e-4, 1e-2]}, native_multilabel=True),
    HeadSpec("dvme", "DVME: per-image attention over a fused model's encoders (torch)", DVMEClassifier, threshold=0.5,
             own_grid={"shared_dim": [32, 128], "weight_decay": [1e-4, 1e-2]}, native_multilabel=True, blocks=True),
)}
ALL_HEADS = {**HEADS, **NETWORK_HEADS}


class NativeMultilabel(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """The multilabel step of a head that fits a 0/1 label matrix itself: the head unchanged, under the
    name the one-vs-rest heads give theirs ('clf__estimator__...'), so every grid converts one way."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_, self.n_features_in_ = self.estimator_.classes_, self.estimator_.n_features_in_
        return self

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def decision_function(self, X):
        return self.estimator_.decision_function(X)

    def predict(self, X):
        return self.estimator_.predict(X)


def fused_grid(name: str, grid: dict, block_dims) -> dict:
    """A head's short-name grid for one model: keys the head does not take dropped (--C for a network head),
    and a block head's 'block_dims' (the fused model's part widths) added as a single setting."""
    spec = get_head(name)
    grid = {key: values for key, values in grid.items() if key in spec.paper_grid()}
    return {**grid, "block_dims": [tuple(block_dims)]} if spec.blocks else grid


def gridsearch_params(params: dict, task: str) -> dict:
    """Short-name parameters (a grid or one setting) as keys of a head's Pipeline for ``task``: 'C' ->
    'clf__C' ('clf__estimator__C' for multilabel). Keys that already name a step pass unchanged."""
    check_task(task)
    prefix = "clf__estimator__" if task == "multilabel" else "clf__"
    return {key if "__" in key else prefix + key: value for key, value in params.items()}


def short_params(params: dict) -> dict:
    """GridSearchCV keys back to short names: 'clf__estimator__C' -> 'C'."""
    return {key.rsplit("__", 1)[-1]: value for key, value in params.items()}


def get_head(name: str) -> HeadSpec:
    if name not in ALL_HEADS:
        raise MedsearchError(f"unknown head {name!r}; choose from {', '.join(ALL_HEADS)}")
    return ALL_HEADS[name]


def head_scores(estimator, X, task: str) -> np.ndarray:
    """Scores per the shared conventions: predict_proba where the estimator has it, else decision_function."""
    check_task(task)
    if hasattr(estimator, "predict_proba"):
        scores = estimator.predict_proba(X)
        return scores[:, 1] if task == "binary" else scores
    scores = estimator.decision_function(X)
    return scores.ravel() if task == "binary" else scores


def auc_scorer(task: str):
    """GridSearchCV scorer: macro AUC of head_scores (works for probabilities and SVM decision values)."""
    check_task(task)

    def score(estimator, X, y) -> float:
        return auc_aligned(y, head_scores(estimator, X, task), task, getattr(estimator, "classes_", None))

    return score


def convergence_warnings(caught) -> int:
    """How many of the caught warnings are ConvergenceWarnings (summarised by the caller, not shown); the
    others are re-emitted."""
    for item in caught:
        if not issubclass(item.category, ConvergenceWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return sum(issubclass(item.category, ConvergenceWarning) for item in caught)


def _summarise_warnings(not_converged: int, name: str, scale: bool) -> None:
    """Fold the many per-fit ConvergenceWarnings of a grid search into one."""
    if not_converged:
        warnings.warn(
            f"head {name!r}: {not_converged} grid-search fit(s) stopped at the iteration limit before converging "
            "(usually at large C); their CV scores are kept" + ("" if scale else "; scale=True converges faster"),
            ConvergenceWarning, stacklevel=3)


def grid_search_cv(name: str, X, y, task: str, *, folds, grid: dict | None = None, n_jobs: int = 1,
                   scale: bool = True, fixed: dict | None = None) -> tuple[GridSearchCV, int]:
    """scikit-learn's GridSearchCV of a head by AUC on the given folds, refitted on all of X: the reference
    the solvers' fast search reproduces. ``grid`` (default the paper's) and ``fixed`` (parameters set
    before the search, e.g. {'max_iter': 100}) take short names. Returns (the fitted search, how many
    fits raised a ConvergenceWarning)."""
    spec = get_head(name)
    estimator = spec.make(task, scale=scale).set_params(**gridsearch_params(fixed or {}, task))
    search = GridSearchCV(estimator, gridsearch_params(spec.paper_grid() if grid is None else grid, task),
                          scoring=auc_scorer(task), cv=list(folds), refit=True, n_jobs=n_jobs, error_score=np.nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(np.asarray(X), np.asarray(y))
    return search, convergence_warnings(caught)


def undefined_auc(name: str) -> MedsearchError:
    return MedsearchError(f"head {name!r}: cross-validated AUC is undefined for every setting; "
                          "check that every fold holds every class")


def fit_head(name: str, X, y, task: str, *, folds, grid: dict | None = None, n_jobs: int = 1, scale: bool = True):
    """Grid-search a head by cross-validated AUC on the given folds and refit it on all of X.

    Returns (best_estimator, best_params with short names such as {'C': 10}, mean CV AUC).
    """
    search, not_converged = grid_search_cv(name, X, y, task, folds=folds, grid=grid, n_jobs=n_jobs, scale=scale)
    _summarise_warnings(not_converged, name, scale)
    cv_auc = float(search.best_score_)
    if not np.isfinite(cv_auc):
        raise undefined_auc(name)
    return search.best_estimator_, short_params(search.best_params_), cv_auc


# ---- saving without pickle -----------------------------------------------------------------


def _linear_parts(estimator, name: str):
    """(coef (K, d), intercept (K,), mean (d,) or None, scale (d,) or None) of a fitted lr/linear-svc head."""
    if isinstance(estimator, GridSearchCV):
        estimator = estimator.best_estimator_
    if not isinstance(estimator, Pipeline):
        raise MedsearchError("save_head expects a head built by medsearch.evaluation.heads (a Pipeline); refit it with fit_head")
    scaler, clf = estimator.steps[0][1], estimator.steps[-1][1]
    mean = scale = None
    if isinstance(scaler, StandardScaler):
        mean, scale = scaler.mean_, scaler.scale_
    members = clf.estimators_ if isinstance(clf, OneVsRestClassifier) else [clf]
    expected = LogisticRegression if name == "lr" else LinearSVC
    if not all(isinstance(m, expected) for m in members):
        raise MedsearchError(f"head {name!r} does not match the fitted estimator, or a label had a single class "
                             "in training; it cannot be saved")
    coef = np.vstack([np.atleast_2d(m.coef_) for m in members]).astype(np.float64)
    intercept = np.concatenate([np.atleast_1d(m.intercept_) for m in members]).astype(np.float64)
    return coef, intercept, mean, scale


def save_head(path, estimator, *, name: str, task: str, classes, model_key: str, encoder: dict) -> None:
    """Write a fitted lr / linear-svc head (or a network head, see network_head) to ``path`` (.npz of arrays
    plus JSON metadata).

    ``classes``: the class (label) names in the order of the head's scores, i.e. the store's label_names;
    ``encoder``: the provenance of the model whose embeddings it was trained on (medsearch.storage.store.provenance;
    of a fused model for dvme, whose 'parts' name each encoder).
    """
    check_task(task)
    if name in NETWORK_HEADS:
        from .network_head import save_network_head

        return save_network_head(path, estimator, name=name, task=task, classes=classes, model_key=model_key,
                                 encoder=encoder)
    if name not in LINEAR_SAVABLE:
        raise MedsearchError(f"head {name!r} cannot be saved; only lr and linear-svc (linear one-vs-rest models) "
                             f"and the network heads ({', '.join(NETWORK_HEADS)}) can be stored as arrays")
    coef, intercept, mean, scale = _linear_parts(estimator, name)
    d = coef.shape[1]
    if not isinstance(encoder, dict):
        raise MedsearchError("save_head needs the encoder provenance of the embeddings (a dict, see store.provenance)")
    meta = {
        "format": SAVE_FORMAT,
        "name": name,
        "task": task,
        "model_key": model_key,
        "label_names": np.asarray(classes).tolist(),
        "embedding_dim": d,
        "encoder": encoder_fields(encoder),
    }
    _validate(meta, coef, intercept)
    arrays = {
        "coef": coef,
        "intercept": intercept,
        "scaler_mean": np.zeros(d) if mean is None else np.asarray(mean, dtype=np.float64),
        "scaler_scale": np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64),
        "metadata": np.array(json.dumps(meta)),
    }
    with open(path, "wb") as fh:  # a file object keeps np.savez from appending '.npz'
        np.savez(fh, **arrays)


def _validate(meta: dict, coef: np.ndarray, intercept: np.ndarray) -> None:
    n_classes = len(meta["label_names"])
    rows = {"binary": 1, "multiclass": n_classes, "multilabel": n_classes}[meta["task"]]
    if meta["task"] == "binary" and n_classes != 2:
        raise MedsearchError(f"a binary head needs 2 classes, got {n_classes}")
    if coef.ndim != 2 or coef.shape != (rows, meta["embedding_dim"]) or intercept.shape != (rows,):
        raise MedsearchError(f"head arrays have shapes coef {coef.shape}, intercept {intercept.shape}; "
                             f"expected ({rows}, {meta['embedding_dim']}) and ({rows},)")


@dataclass(frozen=True)
class LinearHead:
    """A saved lr / linear-svc head evaluated in numpy; scores match head_scores of the sklearn head."""

    name: str
    task: str
    model_key: str
    classes: list
    coef: np.ndarray
    intercept: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    encoder: dict = field(default_factory=dict)  # ENCODER_FIELDS of the embeddings it was trained on

    @property
    def label_names(self) -> list[str]:
        return [str(c) for c in self.classes]

    @property
    def dim(self) -> int:
        return self.coef.shape[1]

    def mismatches(self, *, task: str, label_names, model_key: str, dim: int, provenance: dict) -> list[str]:
        """How a store's model differs from what this head was trained on, one phrase each (empty: it fits).

        Classes are compared by name and in order (the head's scores are in its own class order)."""
        return (head_mismatches(self, task=task, label_names=label_names, model_key=model_key, dim=dim)
                + encoder_mismatches(self.encoder, provenance))

    @property
    def threshold(self) -> float:
        return HEADS[self.name].threshold

    @property
    def probabilities(self) -> bool:
        """Whether scores() are probabilities (lr) rather than decision values (linear-svc)."""
        return self.name == "lr"

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef.shape[1]:
            raise MedsearchError(f"head expects vectors of {self.coef.shape[1]} dimensions, got shape {X.shape}; "
                                 f"use embeddings from model {self.model_key!r}")
        return ((X - self.scaler_mean) / self.scaler_scale) @ self.coef.T + self.intercept

    def scores(self, X) -> np.ndarray:
        decision = self.decision_function(X)
        if self.name == "linear-svc":
            return decision[:, 0] if self.task == "binary" else decision
        if self.task == "multiclass":
            return softmax(decision, axis=1)
        return expit(decision[:, 0]) if self.task == "binary" else expit(decision)

    def predict_proba(self, X) -> np.ndarray:
        if self.name != "lr":
            raise MedsearchError(f"head {self.name!r} gives decision scores, not probabilities; use scores()")
        scores = self.scores(X)
        return np.column_stack([1.0 - scores, scores]) if self.task == "binary" else scores

    def predict(self, X) -> np.ndarray:
        scores = self.scores(X)
        if self.task == "multiclass":
            return np.asarray(self.classes)[scores.argmax(axis=1)]
        if self.task == "binary":
            return np.asarray(self.classes)[(scores >= self.threshold).astype(int)]
        return (scores >= self.threshold).astype(int)


def load_head(path):
    """Read a head written by save_head (a LinearHead, or a network_head.NetworkHead); any malformed file
    raises MedsearchError."""
    from .network_head import NETWORK_FORMAT, load_network_head

    shown = printable(str(path))
    bad = f"{shown} is not a valid medsearch head file"
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["metadata"]))
            if isinstance(meta, dict) and meta.get("format") == NETWORK_FORMAT:
                return load_network_head(data, meta, bad)
            arrays = {key: data[key] for key in ("coef", "intercept", "scaler_mean", "scaler_scale", "metadata")}
    except FileNotFoundError:
        raise MedsearchError(f"head file {shown} does not exist; check the path") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise MedsearchError(f"{bad} ({exc}); re-save it") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt in OLD_FORMATS:
        raise MedsearchError(f"head file {shown} has the old format {fmt}, which does not record the encoder its "
                             "embeddings came from, so it cannot be checked against a store: re-save it with "
                             "`medsearch eval --index DIR --save-head lr` (or linear-svc)")
    if fmt != SAVE_FORMAT:
        raise MedsearchError(f"{bad} (unknown format); re-save it with this version of medsearch")
    try:
        name, task, classes = meta["name"], meta["task"], meta["label_names"]
        n_features, model_key, encoder = int(meta["embedding_dim"]), str(meta["model_key"]), meta["encoder"]
    except (KeyError, TypeError, ValueError):
        raise MedsearchError(f"{bad} (incomplete metadata); re-save it") from None
    if (name not in LINEAR_SAVABLE or task not in ("binary", "multiclass", "multilabel") or not isinstance(classes, list)
            or not is_encoder_record(encoder)):
        raise MedsearchError(f"{bad} (head {name!r}, task {task!r}, metadata fields); re-save it")
    coef, intercept = arrays["coef"], arrays["intercept"]
    mean, scale = arrays["scaler_mean"], arrays["scaler_scale"]
    numeric = all(a.dtype.kind == "f" for a in (coef, intercept, mean, scale))
    if not numeric or mean.shape != (n_features,) or scale.shape != (n_features,):
        raise MedsearchError(f"{bad} (array types or scaler shapes are wrong); re-save it")
    try:
        _validate(meta, coef, intercept)
    except MedsearchError as exc:
        raise MedsearchError(f"{bad}: {exc}") from None
    if not all(np.isfinite(a).all() for a in (coef, intercept, mean, scale)) or (scale <= 0).any():
        raise MedsearchError(f"{bad} (non-finite values or non-positive scales); re-save it")
    return LinearHead(name, task, model_key, classes, coef, intercept, mean, scale, encoder)

