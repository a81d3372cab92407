"""grid_search and its parts: the routing table, the two backends, gamma sharing and C-path reuse."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from medsearch.errors import MedsearchError
from medsearch.evaluation.heads import HEADS, fit_head, head_scores, load_head, save_head
from medsearch.evaluation.metrics import auc_aligned
from medsearch.evaluation.splits import cv_splits
from medsearch.solvers import fast, kernels
from medsearch.solvers.dual import DualLinearSVC
from medsearch.solvers.grid_search import BACKENDS, head_grid, search_heads
from medsearch.solvers.headfit import grid_settings
from medsearch.solvers.kernels import KernelSVC, precomputed_svc, same_gammas
from medsearch.solvers.primal import PrimalLinearSVC
from medsearch.solvers.routing import (DUAL, KERNEL, MAX_KERNEL_ROWS, PRIMAL, SKLEARN, refit_estimator, route,
                                       route_note)
from medsearch.solvers.units import Fold, kernel_unit

from ..conftest import raises_one_line


pytestmark = pytest.mark.usefixtures("one_blas_thread")


BIG = MAX_KERNEL_ROWS + 1
ROUTES = [  # (head, task, n_train, n_rows, n_features, solver)
    ("lr", "binary", 50, 60, 10, SKLEARN),
    ("lr", "multilabel", 50, 60, 100, SKLEARN),
    ("linear-svc", "binary", 50, 60, 100, DUAL),        # no more images than dimensions
    ("linear-svc", "multiclass", 100, 120, 100, DUAL),
    ("linear-svc", "multiclass", 101, 120, 100, PRIMAL),  # more images than dimensions
    ("linear-svc", "binary", BIG, BIG, 10 * BIG, PRIMAL),  # too many rows for a Gram matrix
    ("svc-linear", "binary", 101, 120, 100, PRIMAL),
    ("svc-linear", "multilabel", 101, 120, 100, PRIMAL),
    ("svc-linear", "multiclass", 101, 120, 100, KERNEL),  # one-vs-one inside libsvm
    ("svc-linear", "binary", 50, 60, 100, KERNEL),
    ("svc-linear", "multiclass", BIG, BIG, 100, SKLEARN),
    ("svc-rbf", "binary", 101, 120, 100, KERNEL),
    ("svc-rbf", "binary", 50, BIG, 100, SKLEARN),
]


@pytest.mark.parametrize("name, task, n_train, n_rows, n_features, solver", ROUTES)
def test_routing_table(name, task, n_train, n_rows, n_features, solver):
    assert route(name, task, n_train, n_rows, n_features) == solver
    setting = {"C": 1.0, **({"loss": "hinge"} if name == "linear-svc" else {})}
    estimator = refit_estimator(name, task, solver, setting, scale=True, max_iter=7)[-1]
    expected = {DUAL: DualLinearSVC, PRIMAL: PrimalLinearSVC, KERNEL: KernelSVC}.get(solver)
    if expected is None:
        inner = estimator.estimator if isinstance(estimator, OneVsRestClassifier) else estimator
        expected = type(HEADS[name].build())
        assert type(inner) is expected and inner.C == 1.0
    else:
        assert type(estimator) is expected and estimator.C == 1.0
    if solver in (DUAL, PRIMAL):
        assert estimator.max_iter == 7
    note = route_note(name, solver, n_train, n_rows, n_features)
    assert (note is not None) == ((name == "svc-linear" and solver == PRIMAL) or (name != "lr" and solver == SKLEARN))


def _small(task, n=90, d=10, seed=1):
    rng = np.random.default_rng(seed)
    k = 2 if task == "binary" else 3
    blob = rng.integers(0, k, n)
    X = (np.eye(k, d)[blob] * 1.3 + rng.normal(size=(n, d))).astype(np.float32)  # overlapping: AUC < 1
    if task == "multilabel":
        return X, np.column_stack([blob == 0, blob == 1, (blob != 1) ^ (rng.random(n) < 0.2)]).astype(int)
    return X, blob


def _search(task, backend, X=None, y=None):
    X, y = _small(task) if X is None else (X, y)
    folds = cv_splits(y, task, n_splits=3, seed=0)
    grids = {name: head_grid(name, (0.1, 1.0)) for name in HEADS}
    return search_heads(list(HEADS), X, y, task, folds=folds, grids=grids, n_jobs=1, backend=backend)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_both_backends_make_the_same_choice(task):
    fast_fits, reference = _search(task, "fast"), _search(task, "reference")
    for name in HEADS:
        primal = type(fast_fits[name].estimator[-1]) is PrimalLinearSVC  # solved to optimality: tolerance
        assert fast_fits[name].params == reference[name].params, name
        assert fast_fits[name].cv_auc == pytest.approx(reference[name].cv_auc, abs=2e-3 if primal else 1e-9), name
        assert [r["params"] for r in fast_fits[name].cv_results] == [r["params"] for r in reference[name].cv_results]
        assert reference[name].n_fits == len(reference[name].cv_results) * 3 + 1


def test_the_route_decides_cross_validation_and_refit_alike(monkeypatch):
    """Routed to scikit-learn, every head is fitted as GridSearchCV fits it, in the folds and the refit:
    the fast backend's numbers are then the reference's exactly."""
    monkeypatch.setattr(fast, "route", lambda *args: SKLEARN)
    X, y = _small("multiclass")
    fast_fits, reference = _search("multiclass", "fast", X, y), _search("multiclass", "reference", X, y)
    for name in HEADS:
        assert type(fast_fits[name].estimator[-1]) is type(reference[name].estimator[-1])
        assert fast_fits[name].params == reference[name].params
        assert fast_fits[name].cv_auc == pytest.approx(reference[name].cv_auc, abs=1e-12)
        assert np.allclose(head_scores(fast_fits[name].estimator, X, "multiclass"),
                           head_scores(reference[name].estimator, X, "multiclass"), atol=1e-9)
    assert {type(f.estimator[-1]) for f in fast_fits.values()} == {LogisticRegression, LinearSVC, SVC}


def test_unknown_backend_is_refused():
    assert set(BACKENDS) == {"fast", "reference"}
    with pytest.raises(MedsearchError, match="unknown search backend 'gpu'"):
        _search("binary", "gpu")


def test_grids_have_one_short_form():
    assert head_grid("lr") == {"C": [0.1, 1.0, 10.0, 100.0]}
    assert head_grid("linear-svc", C=2, linear_svc_loss="hinge") == {"C": [2.0], "loss": ["hinge"]}
    assert head_grid("svc-rbf", C=[1]) == {"C": [1.0], "gamma": ["scale", "auto"]}


def _fold(task="binary", n=80, d=6, scale=True, seed=3):
    X, y = _small(task, n=n, d=d, seed=seed)
    X = X.astype(np.float64) * 3.0 + 1.0
    train, test = np.arange(n) % 4 != 0, np.arange(n) % 4 == 0
    if scale:
        scaler = StandardScaler().fit(X[train])
        return Fold(scaler.transform(X[train]), y[train], scaler.transform(X[test]), y[test])
    return Fold(X[train], y[train], X[test], y[test])


@pytest.mark.parametrize("scale", [True, False])
def test_gammas_that_are_the_same_number_share_one_kernel_and_one_set_of_fits(scale):
    """On standardised data 'scale' and 'auto' are the same gamma: one fit per C serves both; otherwise
    each gamma is fitted."""
    grid = {"C": [0.1, 1.0], "gamma": ["scale", "auto"]}
    (scores, _, fits, _), = kernel_unit({"svc-rbf": KERNEL}, "binary", {"svc-rbf": grid}, _fold(scale=scale)).values()
    settings = grid_settings(grid)
    by_gamma = {g: [score for score, s in zip(scores, settings) if s["gamma"] == g] for g in grid["gamma"]}
    if scale:
        assert fits <= 2 and by_gamma["scale"] == by_gamma["auto"]
    else:
        assert fits > 2


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_c_path_reuse_gives_the_scores_of_fresh_fits(task):
    """Once no dual coefficient reaches C, the solution and its score hold for every larger C: the unit
    then skips those fits, and its scores equal those of a fresh fit at each C."""
    fold = _fold(task, n=60, d=40)  # fewer images than dimensions: separable, the box goes inactive
    Cs = [0.01, 1.0, 100.0, 10_000.0]
    (scores, _, fits, _), = kernel_unit({"svc-linear": KERNEL}, task, {"svc-linear": {"C": Cs}}, fold).values()
    assert fits < len(Cs)
    gram_train, gram_test = fold.X_train @ fold.X_train.T, fold.X_test @ fold.X_train.T
    for C, score in zip(Cs, scores):
        fresh = precomputed_svc("svc-linear", task, C).fit(gram_train, fold.y_train)
        expected = auc_aligned(fold.y_test, head_scores(fresh, gram_test, task), task, getattr(fresh, "classes_", None))
        assert score == pytest.approx(expected, abs=1e-9), C


# ---- the fast search against scikit-learn's own (moved from tests/evaluation/test_evaluate.py) ----


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_fast_search_equals_plain_gridsearchcv(task):
    """Same chosen settings, same CV AUCs and the same refitted scores as heads.fit_head's GridSearchCV."""
    X, y = _small(task)
    folds = cv_splits(y, task, n_splits=5, seed=0)
    C = (0.1, 1.0)  # larger C only adds liblinear iteration-limit fits; the search logic is the same
    fast = search_heads(list(HEADS), X, y, task, folds=folds, grids={h: head_grid(h, C) for h in HEADS}, n_jobs=2)
    X_new, _ = _small(task, n=40, seed=2)
    for name in HEADS:
        grid = {key: ([c for c in values if c in C] if key.endswith("__C") else values)
                for key, values in HEADS[name].grid(task).items()}
        estimator, params, cv_auc = fit_head(name, X, y, task, folds=folds, grid=grid)
        # LinearSVC (and binary / multilabel SVC-linear, more images than dimensions) is solved to optimality
        # by Newton's method; liblinear and libsvm stop at their tol=1e-4 / 1e-3 short of it, which can swap
        # the order of a few close scores in a fold
        primal = name == "linear-svc" or (name == "svc-linear" and task != "multiclass")
        assert (type(fast[name].estimator[-1]).__name__ == "PrimalLinearSVC") == primal, name
        assert fast[name].params == params, name
        assert fast[name].cv_auc == pytest.approx(cv_auc, abs=2e-3 if primal else 1e-9), name
        atol = (5e-3 if name == "svc-linear" else 1e-3) if primal else 1e-6  # libsvm's tol bounds the KKT gap
        assert np.allclose(head_scores(fast[name].estimator, X_new, task), head_scores(estimator, X_new, task), atol=atol)
        assert len(fast[name].cv_results) == len(C) * (2 if name in ("linear-svc", "svc-rbf") else 1)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_linear_svc_through_libsvm_matches_liblinear_when_wide(task, tmp_path):
    """Fewer images than dimensions: LinearSVC's problem is solved by libsvm (linear_svc_dual), to tolerance."""
    X, y = _small(task, n=80, d=120)
    folds = cv_splits(y, task, n_splits=5, seed=0)
    fast = search_heads(["linear-svc"], X, y, task, folds=folds, n_jobs=2)["linear-svc"]
    assert type(fast.estimator[-1]).__name__ == "DualLinearSVC" and fast.not_converged == 0
    estimator, params, cv_auc = fit_head("linear-svc", X, y, task, folds=folds)
    assert fast.params == params and fast.cv_auc == pytest.approx(cv_auc, abs=1e-3)
    X_new, _ = _small(task, n=30, d=120, seed=2)
    assert np.allclose(head_scores(fast.estimator, X_new, task), head_scores(estimator, X_new, task), atol=2e-3)
    classes = ["a", "b"] if task == "binary" else ["a", "b", "c"]
    save_head(tmp_path / "h.npz", fast.estimator, name="linear-svc", task=task, classes=classes, model_key="m",
              encoder={})
    assert np.allclose(load_head(tmp_path / "h.npz").scores(X_new), head_scores(fast.estimator, X_new, task), atol=1e-8)


def test_rbf_gammas_that_agree_share_one_kernel():
    """'scale' and 'auto' are the same number on standardised data without constant columns (then one set
    of fits serves both), and different once a column is constant."""
    settings = grid_settings(head_grid("svc-rbf"))
    X = np.random.default_rng(0).normal(size=(50, 8))
    X = (X - X.mean(0)) / X.std(0)
    shared = same_gammas(settings, X)
    assert shared["scale"] == shared["auto"] == pytest.approx(1 / 8)
    X[:, 0] = 0.0  # a dead column: the overall variance drops to 7/8
    split = same_gammas(settings, X)
    assert split == {"scale": kernels._gamma("scale", X), "auto": 1 / 8} and split["scale"] != split["auto"]


def test_search_heads_checks_the_grids_and_the_iteration_cap():
    X, y = _small("binary")
    folds = cv_splits(y, "binary", n_splits=3, seed=0)
    assert "--C" in raises_one_line(lambda: search_heads(["lr"], X, y, "binary", folds=folds,
                                                         grids={"lr": {"C": [1.0, float("nan")]}}))
    assert "--max-iter" in raises_one_line(lambda: search_heads(["linear-svc"], X, y, "binary", folds=folds,
                                                                linear_svc_max_iter=10**6))
