"""The DVME and MLP heads as estimators: attention learns the informative encoder, seeds repeat, every task fits,
scikit-learn's estimator checks pass."""
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from medsearch.errors import MedsearchError
from medsearch.evaluation.dvme import DVMEClassifier, MLPHead
from medsearch.evaluation.metrics import auc

pytestmark = pytest.mark.usefixtures("one_blas_thread")
QUICK_NET = dict(lr=1e-2, max_epochs=40)  # small problems: a larger step reaches the optimum in few epochs


def _two_encoders(n=400, d=12, task="binary", seed=0):
    """Block 0 carries the classes (a shift along 3 of its columns), block 1 is noise."""
    rng = np.random.default_rng(seed)
    k = 2 if task == "binary" else 3
    cluster = np.arange(n) % k
    informative = rng.normal(size=(n, d))
    informative[:, :k] += 1.5 * np.eye(k)[cluster]
    noise = rng.normal(size=(n, d))
    y = np.column_stack([cluster == 0, cluster != 1]).astype(int) if task == "multilabel" else cluster
    return np.hstack([informative, noise]), y


def _scores(model, X, task):
    p = model.predict_proba(X)
    return p[:, 1] if task == "binary" else p


def test_attention_goes_to_the_informative_encoder_and_beats_the_noise_encoder():
    X, y = _two_encoders()
    X_test, y_test = _two_encoders(seed=1)
    dvme = DVMEClassifier(block_dims=(12, 12), **QUICK_NET).fit(X, y)
    weights = dvme.attention(X_test)
    assert weights.shape == (400, 2) and np.allclose(weights.sum(axis=1), 1.0)
    assert weights[:, 0].mean() > 0.8
    noise_only = MLPHead(**QUICK_NET).fit(X[:, 12:], y)
    dvme_auc = auc(y_test, _scores(dvme, X_test, "binary"), "binary")
    assert dvme_auc > 0.9 and dvme_auc > auc(y_test, _scores(noise_only, X_test[:, 12:], "binary"), "binary") + 0.2


def test_same_seed_same_auc_and_another_seed_other_weights():
    X, y = _two_encoders(n=200)
    X_test, y_test = _two_encoders(n=200, seed=1)
    runs = [DVMEClassifier(block_dims=(12, 12), random_state=s, **QUICK_NET).fit(X, y) for s in (3, 3, 4)]
    aucs = [auc(y_test, _scores(m, X_test, "binary"), "binary") for m in runs]
    assert abs(aucs[0] - aucs[1]) <= 1e-6
    assert np.array_equal(runs[0].predict_proba(X_test), runs[1].predict_proba(X_test))
    assert not np.array_equal(runs[0].arrays_["out_weight"], runs[2].arrays_["out_weight"])


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("make", [lambda: DVMEClassifier(block_dims=(12, 12), **QUICK_NET), lambda: MLPHead(**QUICK_NET)])
def test_every_task_fits_and_scores(make, task):
    X, y = _two_encoders(n=300, task=task)
    X_test, y_test = _two_encoders(n=150, task=task, seed=1)
    model = make().fit(X, y)
    shape = {"binary": (150, 2), "multiclass": (150, 3), "multilabel": (150, 2)}[task]
    assert model.predict_proba(X_test).shape == shape
    assert model.decision_function(X_test).shape == ((150,) if task == "binary" else shape)
    assert model.predict(X_test).shape == y_test.shape
    assert auc(y_test, _scores(model, X_test, task), task) > 0.85


def test_early_stopping_restores_the_best_epoch_and_grid_search_takes_it():
    X, y = _two_encoders(n=300)
    model = DVMEClassifier(block_dims=(12, 12), lr=5e-2, patience=2).fit(X, y)
    assert model.stopped_early_ and model.n_epochs_ < 200
    search = GridSearchCV(DVMEClassifier(block_dims=(12, 12), **QUICK_NET), {"shared_dim": [8, 16]}, cv=2,
                          scoring="roc_auc").fit(X, y)
    assert search.best_params_["shared_dim"] in (8, 16) and search.best_score_ > 0.9


def test_wrong_blocks_and_parameters_are_refused_as_value_errors():
    X, y = _two_encoders(n=60)
    for model, message in [(DVMEClassifier(block_dims=(12, 11)), "add up to 23 columns, but X has 24"),
                           (DVMEClassifier(block_dims=(12, 0, 12)), "positive whole numbers"),
                           (MLPHead(hidden_dim=0), "hidden size"), (MLPHead(dropout=1.0), "dropout")]:
        with pytest.raises(ValueError, match=message) as info:
            model.fit(X, y)
        assert isinstance(info.value, MedsearchError)


@parametrize_with_checks([DVMEClassifier(**QUICK_NET), MLPHead(**QUICK_NET)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
