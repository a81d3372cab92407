import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsearch.errors import MedsearchError
from medsearch.evaluation.splits import cv_splits, holdout_split, official_split, stratification_labels


def _labels(n, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % classes)


@st.composite
def grouped_problem(draw):
    n_groups = draw(st.integers(min_value=10, max_value=40))
    n = draw(st.integers(min_value=60, max_value=200))
    seed = draw(st.integers(min_value=0, max_value=10_000))
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    groups[:n_groups] = np.arange(n_groups)  # every group id used
    y = rng.permutation(np.arange(n) % 2)
    return y, groups, seed


@settings(max_examples=25, deadline=None)
@given(grouped_problem())
def test_grouped_splits_never_share_a_group(problem):
    y, groups, seed = problem
    train, test = holdout_split(y, "binary", groups=groups, seed=seed)
    assert not set(groups[train]) & set(groups[test])
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(y.size))
    for train, test in cv_splits(y, "binary", groups=groups, n_splits=5, seed=seed):
        assert not set(groups[train]) & set(groups[test])
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_cv_folds_partition_the_rows():
    y = _labels(100)
    folds = cv_splits(y, "multiclass", n_splits=5)
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(100))
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0 and train.size + test.size == 100


def test_paper_mode_holdout_is_stratified_80_20():
    y = np.r_[np.zeros(700, int), np.ones(200, int), np.full(100, 2)]
    train, test = holdout_split(y, "multiclass", seed=1, mode="paper")
    assert test.size == 200
    assert np.allclose(np.bincount(y[test]) / test.size, [0.7, 0.2, 0.1], atol=0.01)


def test_grouped_splits_are_close_to_stratified():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), 3)  # 400 patients with 3 images each
    y = np.repeat(rng.choice(3, size=400, p=[0.6, 0.3, 0.1]), 3)
    overall = np.bincount(y) / y.size
    train, test = holdout_split(y, "multiclass", groups=groups, seed=0)
    assert abs(test.size / y.size - 0.2) < 0.03
    assert np.allclose(np.bincount(y[test], minlength=3) / test.size, overall, atol=0.03)
    for _, te in cv_splits(y, "multiclass", groups=groups, seed=0):
        assert np.allclose(np.bincount(y[te], minlength=3) / te.size, overall, atol=0.03)


def test_paper_mode_ignores_groups():
    y = _labels(200, classes=2)
    groups = np.arange(200) // 2
    with_groups = holdout_split(y, "binary", groups=groups, seed=3, mode="paper")
    without = holdout_split(y, "binary", seed=3, mode="paper")
    assert all(np.array_equal(a, b) for a, b in zip(with_groups, without))


def test_reproducible_by_seed():
    y = _labels(300)
    groups = np.arange(300) // 3
    a = cv_splits(y, "multiclass", groups=groups, seed=7)
    b = cv_splits(y, "multiclass", groups=groups, seed=7)
    c = cv_splits(y, "multiclass", groups=groups, seed=8)
    assert all(np.array_equal(x[1], z[1]) for x, z in zip(a, b))
    assert not all(np.array_equal(x[1], z[1]) for x, z in zip(a, c))
    assert np.array_equal(holdout_split(y, "multiclass", seed=2)[1], holdout_split(y, "multiclass", seed=2)[1])


def test_multilabel_surrogate_merges_rare_combinations():
    y = np.array([[1, 0]] * 10 + [[0, 1]] * 10 + [[1, 1]] * 3 + [[0, 0]] * 3)
    strata = stratification_labels(y, "multilabel", min_count=5)
    assert np.unique(strata[:10]).size == 1 and np.unique(strata[10:20]).size == 1
    assert np.unique(strata[20:]).size == 1  # the two rare combinations share one stratum
    assert np.unique(strata).size == 3


def test_multilabel_rare_stratum_too_small_joins_the_largest():
    y = np.array([[1, 0]] * 12 + [[0, 1]] * 10 + [[1, 1]])
    strata = stratification_labels(y, "multilabel", min_count=5)
    assert strata[-1] == strata[0]


def test_multilabel_cv_keeps_label_rates():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 4)) < [0.5, 0.3, 0.1, 0.05]).astype(int)
    for _, te in cv_splits(y, "multilabel", n_splits=5, seed=0):
        assert np.allclose(y[te].mean(axis=0), y.mean(axis=0), atol=0.04)


def test_too_few_members_or_groups_raise():
    y = np.array([0] * 10 + [1] * 10 + [2])
    with pytest.raises(MedsearchError, match="class 2 has only 1"):
        cv_splits(y, "multiclass", n_splits=5)
    with pytest.raises(MedsearchError, match="class 'normal' has only 1"):  # named when the names are given
        cv_splits(y, "multiclass", n_splits=5, names=["benign", "malignant", "normal"])
    with pytest.raises(MedsearchError, match="class 'normal' has only 1"):
        holdout_split(y, "multiclass", names=["benign", "malignant", "normal"])
    with pytest.raises(MedsearchError):
        holdout_split(y, "multiclass")
    with pytest.raises(MedsearchError, match="groups"):
        cv_splits(_labels(20, 2), "binary", groups=np.arange(20) % 3, n_splits=5)
    with pytest.raises(MedsearchError):
        holdout_split(_labels(20, 2), "binary", mode="patient")
    with pytest.raises(MedsearchError):
        holdout_split(np.zeros(20, int), "binary")


def test_official_split_puts_val_in_training():
    names = np.array(["train", "val", "test", "train", "test", "VAL "])
    train, test = official_split(names)
    assert train.tolist() == [0, 1, 3, 5] and test.tolist() == [2, 4]
    with pytest.raises(MedsearchError, match="unknown split"):
        official_split(["train", "dev", "test"])
    with pytest.raises(MedsearchError):
        official_split(["train", "train"])
