import time

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from medsearch.evaluation import metrics
from medsearch.errors import MedsearchError


def _binary(n, seed=0, noise=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y + rng.normal(0, noise, n)


def _multiclass(n, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0
    return y, logits


def _multilabel(n, labels=3, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(int)
    return y, y + rng.normal(0, 1.0, (n, labels))


def test_binary_auc_equals_sklearn_including_two_column_scores():
    y, s = _binary(200)
    assert metrics.auc(y, s, "binary") == pytest.approx(roc_auc_score(y, s))
    two_col = np.column_stack([1 - s, s])
    assert metrics.auc(y, two_col, "binary") == pytest.approx(roc_auc_score(y, s))


def test_multiclass_auc_equals_sklearn_ovr_macro_on_probabilities():
    y, logits = _multiclass(300)
    probs = softmax(logits, axis=1)
    expected = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert metrics.auc(y, probs, "multiclass") == pytest.approx(expected)


def test_multiclass_auc_on_decision_scores_is_mean_of_per_class_aucs():
    y, logits = _multiclass(300)  # not probabilities: sklearn's ovr path would refuse them
    expected = np.mean([roc_auc_score(y == c, logits[:, c]) for c in range(4)])
    assert metrics.auc(y, logits, "multiclass") == pytest.approx(expected)
    # ranking within each column is all that matters: softmax of the same logits changes the value,
    # but a per-column monotone transform does not
    assert metrics.auc(y, np.exp(logits), "multiclass") == pytest.approx(expected)


def test_multilabel_auc_equals_sklearn_macro():
    y, s = _multilabel(200)
    assert metrics.auc(y, s, "multilabel") == pytest.approx(roc_auc_score(y, s, average="macro"))


def test_undefined_auc_is_nan_not_an_error():
    assert np.isnan(metrics.auc(np.ones(10, int), np.arange(10.0), "binary"))
    y, logits = _multiclass(40)
    y_missing = np.where(y == 3, 0, y)  # class 3 absent
    assert np.isnan(metrics.auc(y_missing, logits, "multiclass"))
    assert np.isnan(metrics.auc(np.zeros((10, 2), int), np.zeros((10, 2)), "multilabel"))


def test_multilabel_skips_labels_with_one_class():
    y, s = _multilabel(100)
    y[:, 2] = 0
    expected = np.mean([roc_auc_score(y[:, j], s[:, j]) for j in (0, 1)])
    assert metrics.auc(y, s, "multilabel") == pytest.approx(expected)
    assert np.isnan(metrics.per_class_auc(y, s, "multilabel")[2])


def test_per_class_auc_keys():
    y, logits = _multiclass(100)
    per = metrics.per_class_auc(y, logits, "multiclass")
    assert sorted(per) == [0, 1, 2, 3]
    assert per[1] == pytest.approx(roc_auc_score(y == 1, logits[:, 1]))
    yb, sb = _binary(50)
    assert list(metrics.per_class_auc(yb, sb, "binary")) == [1]


def test_auc_aligned_maps_estimator_classes():
    y, logits = _multiclass(100, c=3)
    # an estimator that saw only classes 0 and 2 gives two columns
    keep = y != 1
    value = metrics.auc_aligned(y[keep], logits[keep][:, [0, 2]], "multiclass", [0, 2])
    assert value == pytest.approx(metrics.auc(np.where(y[keep] == 2, 1, 0), logits[keep][:, [0, 2]], "multiclass"))
    assert np.isnan(metrics.auc_aligned(y, logits[:, [0, 2]], "multiclass", [0, 2]))


def test_classification_report_by_hand():
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.2, 0.6, 0.7, 0.4])  # predictions at 0.5: 0 1 1 0
    report = metrics.classification_report_dict(y, scores, "binary")
    assert report["accuracy"] == 0.5
    assert report["precision_macro"] == 0.5 and report["recall_macro"] == 0.5 and report["f1_macro"] == 0.5
    svm = metrics.classification_report_dict(y, scores - 0.5, "binary", threshold=0.0)
    assert svm == report
    yl = np.array([[1, 0], [0, 1], [1, 1]])
    sl = np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.3]])  # last row gets label 1 wrong
    ml = metrics.classification_report_dict(yl, sl, "multilabel")
    assert ml["accuracy"] == pytest.approx(2 / 3)  # exact-match accuracy
    mc = metrics.classification_report_dict(np.array([0, 1, 2]), np.eye(3)[[0, 2, 2]], "multiclass")
    assert mc["accuracy"] == pytest.approx(2 / 3)


def test_resampled_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(y + rng.normal(0, 1, 300), 1)  # many ties
    idx = rng.integers(0, 300, 300)
    counts = np.bincount(idx, minlength=300)[None, :].astype(float)
    truth, cols = metrics._one_vs_rest(y, s, "binary")
    assert metrics._resampled_aucs(truth, cols, "binary", counts)[0] == pytest.approx(roc_auc_score(y[idx], s[idx]))


def test_bootstrap_ci_contains_point_and_shrinks_with_n():
    small = metrics.bootstrap_auc_ci(*_binary(100, seed=1), "binary", n_boot=500)
    large = metrics.bootstrap_auc_ci(*_binary(2000, seed=1), "binary", n_boot=500)
    for point, lo, hi in (small, large):
        assert lo <= point <= hi
    assert (large[2] - large[1]) < 0.5 * (small[2] - small[1])


def test_bootstrap_is_reproducible_by_seed():
    y, s = _binary(150)
    assert metrics.bootstrap_auc_ci(y, s, "binary", seed=4) == metrics.bootstrap_auc_ci(y, s, "binary", seed=4)
    assert metrics.bootstrap_auc_ci(y, s, "binary", seed=4) != metrics.bootstrap_auc_ci(y, s, "binary", seed=5)


def test_bootstrap_multiclass_and_multilabel_contain_point():
    for task, (y, s) in (("multiclass", _multiclass(300)), ("multilabel", _multilabel(300))):
        point, lo, hi = metrics.bootstrap_auc_ci(y, s, task, n_boot=200)
        assert lo <= point <= hi


def test_paired_delta_of_a_method_with_itself_is_zero():
    y, logits = _multiclass(200)
    result = metrics.paired_bootstrap_delta(y, logits, logits, "multiclass", n_boot=200)
    assert result["delta"] == 0.0 and result["lo"] == 0.0 and result["hi"] == 0.0
    assert result["p_value"] == 1.0


def test_paired_delta_detects_a_clearly_better_method():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = y + rng.normal(0, 0.5, 500)
    bad = y + rng.normal(0, 3.0, 500)
    result = metrics.paired_bootstrap_delta(y, good, bad, "binary", n_boot=500)
    assert result["lo"] > 0 and result["delta"] > 0
    assert result["p_value"] < 0.01


def test_bootstrap_speed_binary_n2000():
    y, s = _binary(2000)
    start = time.perf_counter()
    metrics.bootstrap_auc_ci(y, s, "binary", n_boot=1000)
    assert time.perf_counter() - start < 3.0


def test_bad_input_raises_medsearch_error():
    with pytest.raises(MedsearchError):
        metrics.auc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]), "binary")
    with pytest.raises(MedsearchError):
        metrics.auc(np.array([0, 1]), np.array([0.1, 0.2]), "regression")
    with pytest.raises(MedsearchError):
        metrics.auc(np.array([0, 1]), np.array([0.1, np.nan]), "binary")
    with pytest.raises(MedsearchError):
        metrics.auc(np.array([0, 5]), np.zeros((2, 3)), "multiclass")
