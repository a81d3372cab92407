import json

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from medsearch.errors import MedsearchError
from medsearch.evaluation.head_checks import ENCODER_FIELDS
from medsearch.evaluation.heads import (HEADS, SAVE_FORMAT, LinearHead, fit_head, grid_search_cv,
                                        gridsearch_params, head_scores, load_head, save_head, short_params)
from medsearch.evaluation.metrics import auc
from medsearch.evaluation.splits import cv_splits
from medsearch.storage.schema import TASKS

ENCODER = {"encoder": "resnet50", "family": "torchvision", "weights_source": "file:/w/resnet50.pth",
           "weights_sha256": "ab" * 32, "preprocess": {"resize": 256, "crop": 224, "norm": "imagenet"}, "dim": 6,
           "versions": {"torch": "2.4"}}


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _toy(task, n=90, d=6, seed=0):
    """Separable blobs: 2 or 3 well-separated classes; multilabel labels read off the blob id."""
    rng = np.random.default_rng(seed)
    classes = 2 if task == "binary" else 3
    blob = np.arange(n) % classes
    centres = np.eye(classes, d) * 3.0
    X = centres[blob] + rng.normal(0, 1.0, (n, d))
    if task == "multilabel":
        return X, np.column_stack([blob == 0, blob == 1, blob != 1]).astype(int)
    return X, blob


def _fit(name, task, scale=True):
    X, y = _toy(task)
    X_test, y_test = _toy(task, n=60, seed=1)
    folds = cv_splits(y, task, n_splits=3, seed=0)
    estimator, params, cv_auc = fit_head(name, X, y, task, folds=folds, scale=scale)
    return estimator, params, cv_auc, X_test, y_test


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # hinge loss at C=100
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_separates_a_toy_problem(name, task):
    estimator, params, cv_auc, X_test, y_test = _fit(name, task)
    scores = head_scores(estimator, X_test, task)
    expected_shape = {"binary": (60,), "multiclass": (60, 3), "multilabel": (60, 3)}[task]
    assert scores.shape == expected_shape
    assert cv_auc > 0.95 and auc(y_test, scores, task) > 0.95
    assert params["C"] in (0.1, 1.0, 10.0, 100.0)


def test_convergence_warnings_are_folded_into_one():
    X, y = _toy("multiclass")
    folds = cv_splits(y, "multiclass", n_splits=3, seed=0)
    grid = {"clf__C": [100.0], "clf__loss": ["hinge"]}
    with pytest.warns(ConvergenceWarning) as record:
        fit_head("linear-svc", X * 1000, y, "multiclass", folds=folds, grid=grid, scale=False)
    messages = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1 and "grid-search fit(s) stopped" in messages[0]


def test_grids_follow_the_paper():
    assert HEADS["lr"].grid("binary") == {"clf__C": [0.1, 1.0, 10.0, 100.0]}
    assert HEADS["linear-svc"].grid("multiclass")["clf__loss"] == ["hinge", "squared_hinge"]
    assert HEADS["svc-rbf"].grid("multilabel")["clf__estimator__gamma"] == ["scale", "auto"]
    assert set(HEADS["svc-linear"].grid("multilabel")) == {"clf__estimator__C"}


def test_short_names_are_the_one_grid_form_converted_at_the_gridsearchcv_boundary():
    assert HEADS["linear-svc"].paper_grid() == {"C": [0.1, 1.0, 10.0, 100.0], "loss": ["hinge", "squared_hinge"]}
    assert gridsearch_params({"C": [1.0], "gamma": ["scale"]}, "binary") == {"clf__C": [1.0], "clf__gamma": ["scale"]}
    assert gridsearch_params({"C": 1.0}, "multilabel") == {"clf__estimator__C": 1.0}
    assert gridsearch_params({"clf__C": [1.0]}, "multilabel") == {"clf__C": [1.0]}  # already a Pipeline key
    assert short_params({"clf__estimator__C": 1.0, "clf__loss": "hinge"}) == {"C": 1.0, "loss": "hinge"}
    for name, spec in HEADS.items():
        assert spec.grid("multiclass") == gridsearch_params(spec.paper_grid(), "multiclass"), name


def test_grid_search_cv_takes_short_names_and_fixed_parameters():
    X, y = _toy("multilabel")
    folds = cv_splits(y, "multilabel", n_splits=3, seed=0)
    search, not_converged = grid_search_cv("linear-svc", X, y, "multilabel", folds=folds,
                                           grid={"C": [1.0], "loss": ["squared_hinge"]}, fixed={"max_iter": 1})
    assert short_params(search.best_params_) == {"C": 1.0, "loss": "squared_hinge"}
    assert not_converged > 0  # counted, not shown
    assert search.best_estimator_[-1].estimator.max_iter == 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # unscaled linear-svc
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", ["lr", "linear-svc"])
def test_saved_head_round_trip_matches_sklearn(tmp_path, name, task, scale):
    estimator, _, _, X_test, _ = _fit(name, task, scale=scale)
    classes = ["a", "b"] if task == "binary" else [0, 1, 2]
    path = tmp_path / "head.npz"
    save_head(path, estimator, name=name, task=task, classes=classes, model_key="resnet50", encoder=ENCODER)
    head = load_head(path)
    assert (head.name, head.task, head.model_key, head.classes) == (name, task, "resnet50", classes)
    assert head.encoder == {key: ENCODER[key] for key in ENCODER_FIELDS} and head.dim == 6
    assert np.allclose(head.scores(X_test), head_scores(estimator, X_test, task), atol=1e-8)
    if name == "lr":
        assert np.allclose(head.predict_proba(X_test), estimator.predict_proba(X_test), atol=1e-8)
    else:
        with pytest.raises(MedsearchError):
            head.predict_proba(X_test)
    if task == "multiclass":
        assert np.array_equal(head.predict(X_test), estimator.predict(X_test))


def test_only_linear_heads_can_be_saved(tmp_path):
    estimator, *_ = _fit("svc-rbf", "binary")
    with pytest.raises(MedsearchError, match="lr and linear-svc"):
        save_head(tmp_path / "h.npz", estimator, name="svc-rbf", task="binary", classes=[0, 1], model_key="m",
                  encoder=ENCODER)


def _saved(tmp_path):
    estimator, *_ = _fit("lr", "multiclass")
    path = tmp_path / "head.npz"
    save_head(path, estimator, name="lr", task="multiclass", classes=["a", "b", "c"], model_key="clip", encoder=ENCODER)
    with np.load(path) as data:
        return path, {key: data[key] for key in data.files}


def _tampered(path, arrays, **changes):
    arrays = {**arrays, **changes}
    with open(path, "wb") as fh:
        np.savez(fh, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_tampered_files_raise_medsearch_error(tmp_path):
    path, arrays = _saved(tmp_path)
    meta = json.loads(str(arrays["metadata"]))
    bad_versions = [
        {"coef": arrays["coef"][:2]},  # one class row missing
        {"intercept": None},  # array removed
        {"scaler_scale": np.zeros_like(arrays["scaler_scale"])},
        {"coef": arrays["coef"].astype(str)},
        {"metadata": np.array(json.dumps({**meta, "format": "other/9"}))},
        {"metadata": np.array(json.dumps({**meta, "name": "svc-rbf"}))},
        {"metadata": np.array(json.dumps({k: v for k, v in meta.items() if k != "encoder"}))},
        {"metadata": np.array(json.dumps({**meta, "encoder": {"encoder": "resnet50"}}))},
        {"metadata": np.array(json.dumps({**meta, "label_names": "abc"}))},
        {"metadata": np.array("{not json")},
        {"coef": np.array([object()], dtype=object)},  # would need pickle to load
    ]
    for change in bad_versions:
        _tampered(path, arrays, **change)
        with pytest.raises(MedsearchError):
            load_head(path)
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(MedsearchError):
        load_head(path)
    with pytest.raises(MedsearchError):
        load_head(tmp_path / "missing.npz")


def test_loaded_head_rejects_wrong_dimension(tmp_path):
    path, _ = _saved(tmp_path)
    with pytest.raises(MedsearchError, match="dimensions"):
        load_head(path).scores(np.zeros((2, 5)))


def test_unknown_head_raises():
    with pytest.raises(MedsearchError, match="unknown head"):
        fit_head("random-forest", np.zeros((10, 2)), np.zeros(10), "binary", folds=[])


def test_head_records_what_it_was_trained_on_and_names_every_difference(tmp_path):
    """Issue 12, defect 1: a head is compared by class name and order, task, model key, dimension and encoder."""
    path, _ = _saved(tmp_path)
    head = load_head(path)
    meta = json.loads(str(np.load(path)["metadata"]))
    assert meta["format"] == SAVE_FORMAT and meta["label_names"] == ["a", "b", "c"] and meta["embedding_dim"] == 6
    assert meta["task"] == "multiclass" and meta["model_key"] == "clip" and "versions" not in meta["encoder"]
    same = dict(task="multiclass", label_names=["a", "b", "c"], model_key="clip", dim=6,
                provenance={**ENCODER, "versions": {"torch": "2.5"}})  # library versions do not matter
    assert head.mismatches(**same) == []
    cases = [
        ({"label_names": ["0", "1"]}, "classes a, b, c; this store has classes 0, 1"),
        ({"label_names": ["b", "a", "c"]}, "classes a, b, c; this store has classes b, a, c"),
        ({"task": "multilabel"}, "multiclass task, this store's is multilabel"),
        ({"model_key": "clip-2"}, "'clip' embeddings, not 'clip-2'"),
        ({"dim": 512}, "6-dimensional embeddings, this model's are 512"),
        ({"provenance": {**ENCODER, "weights_sha256": "cd" * 32}}, "another weights sha256"),
        ({"provenance": {**ENCODER, "weights_source": "random-init", "weights_sha256": None}}, "another weights source"),
        ({"provenance": {**ENCODER, "preprocess": {**ENCODER["preprocess"], "norm": "median-mad"}}}, "another preprocess"),
        ({"provenance": {**ENCODER, "encoder": "resnet18"}}, "another encoder"),
        ({"provenance": {}}, "another encoder"),
    ]
    for change, phrase in cases:
        found = head.mismatches(**{**same, **change})
        assert any(phrase in d for d in found), (change, found)
        assert all("\n" not in d for d in found)
    many = [f"c{i}" for i in range(15_000)]
    big = LinearHead("lr", "multiclass", "clip", many, np.zeros((15_000, 6)), np.zeros(15_000), np.zeros(6), np.ones(6),
                     head.encoder)
    phrase, = big.mismatches(**{**same, "label_names": many[:11] + ["x\ny"] + many[12:]})
    assert phrase.startswith("it was trained on 15000 classes c0, c1, c2") and len(phrase) < 300
    assert phrase.endswith("(first difference at class 12: c11 vs x\\ny)")


def test_head_of_the_old_format_is_refused_with_a_re_save_message(tmp_path):
    path, arrays = _saved(tmp_path)
    old = {"format": "medsearch-linear-head/1", "name": "lr", "task": "multiclass", "model_key": "clip",
           "classes": ["a", "b", "c"], "n_features": 6}
    _tampered(path, arrays, metadata=np.array(json.dumps(old)))
    with pytest.raises(MedsearchError, match="old format medsearch-linear-head/1.*re-save it") as info:
        load_head(path)
    assert "\n" not in str(info.value)


def test_save_head_needs_the_encoder(tmp_path):
    estimator, *_ = _fit("lr", "binary")
    with pytest.raises(TypeError):
        save_head(tmp_path / "h.npz", estimator, name="lr", task="binary", classes=["a", "b"], model_key="m")
