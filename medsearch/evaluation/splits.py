"""Train/test and cross-validation splits: seeded, stratified, optionally grouped (e.g. by patient).

mode='grouped' (default): when ``groups`` is given no group appears on both sides of any split
(StratifiedGroupKFold). mode='paper': the paper's image-level stratified split, ignoring groups;
images of one patient can then land on both sides, which inflates scores (the caller warns).

Multilabel stratification uses a 1-D surrogate: the label-powerset code (each distinct 0/1 label
vector is one stratum). Combinations with fewer members than the split needs are merged into one
shared "rare" stratum; if that stratum is itself too small it joins the most common one. Common label
combinations are therefore balanced exactly and rare ones approximately.

All index arrays are sorted int64.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from medsearch.errors import MedsearchError
from medsearch.evaluation.metrics import check_task

MODES = ("grouped", "paper")


def stratification_labels(y, task: str, *, min_count: int = 2) -> np.ndarray:
    """1-D stratum per row: the class (binary/multiclass) or the merged label-powerset code (multilabel)."""
    check_task(task)
    y = np.asarray(y)
    if task != "multilabel":
        if y.ndim != 1:
            raise MedsearchError(f"{task} labels must be a 1-D array of class indices")
        return y
    if y.ndim != 2:
        raise MedsearchError("multilabel labels must be a 2-D 0/1 array (n, L)")
    _, codes, counts = np.unique(y.astype(np.int8), axis=0, return_inverse=True, return_counts=True)
    codes = codes.ravel()
    rare = counts[codes] < min_count
    rare_code = counts.size  # a new stratum id
    codes = np.where(rare, rare_code, codes)
    if 0 < rare.sum() < min_count:
        values, merged_counts = np.unique(codes[~rare], return_counts=True)
        codes = np.where(rare, values[merged_counts.argmax()], codes)
    return codes


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise MedsearchError(f"unknown split mode {mode!r}; use one of {', '.join(MODES)}")


def _check_strata(strata: np.ndarray, task: str, needed: int, what: str, names=None) -> None:
    """Each class needs ``needed`` rows; a class too small is named by ``names[class]`` when given, else its code."""
    values, counts = np.unique(strata, return_counts=True)
    if task != "multilabel" and values.size < 2:
        raise MedsearchError(f"only one class present; {what} needs at least two classes")
    if task == "multilabel":
        if strata.size < needed:
            raise MedsearchError(f"only {strata.size} images; {what} needs at least {needed}")
        return
    small = counts < needed
    if small.any():
        code = values[small][0].item()
        raise MedsearchError(
            f"class {names[code] if names is not None else code!r} has only {counts[small][0]} image(s); {what} needs at least {needed} "
            "per class - drop or merge that class, or use fewer folds"
        )


def _check_groups(groups, n: int, n_splits: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise MedsearchError(f"groups must have one entry per image ({n}), got shape {groups.shape}")
    n_groups = np.unique(groups).size
    if n_groups < n_splits:
        raise MedsearchError(f"only {n_groups} distinct groups (patients); grouped splitting needs at least {n_splits}")
    return groups


def _sorted_pairs(pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64)) for tr, te in pairs]


def cv_splits(
    y, task: str, *, groups=None, n_splits: int = 5, seed: int = 0, mode: str = "grouped", names=None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (group-aware in 'grouped' mode) K-fold splits as a list of (train_idx, test_idx).

    ``names``: the class names, for an error about a class too small to split (default: its code)."""
    _check_mode(mode)
    if n_splits < 2:
        raise MedsearchError("cross-validation needs at least 2 folds")
    strata = stratification_labels(y, task, min_count=n_splits)
    _check_strata(strata, task, n_splits, f"{n_splits}-fold cross-validation", names)
    n = strata.shape[0]
    if groups is not None and mode == "grouped":
        groups = _check_groups(groups, n, n_splits)
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        pairs = list(splitter.split(np.zeros(n), strata, groups))
    else:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        pairs = list(splitter.split(np.zeros(n), strata))
    if any(te.size == 0 or tr.size == 0 for tr, te in pairs):
        raise MedsearchError(f"could not form {n_splits} non-empty folds; use fewer folds")
    return _sorted_pairs(pairs)


def holdout_split(
    y, task: str, *, groups=None, test_size: float = 0.2, seed: int = 0, mode: str = "grouped", names=None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split (80/20 by default, as in the paper).

    Grouped mode with groups takes the first fold of StratifiedGroupKFold with
    n_splits = round(1 / test_size), so the test share is only approximately ``test_size``. ``names``: as
    for cv_splits.
    """
    _check_mode(mode)
    if not 0.0 < test_size < 1.0:
        raise MedsearchError(f"test_size must be between 0 and 1, got {test_size}")
    if groups is not None and mode == "grouped":
        n_splits = round(1.0 / test_size)
        if n_splits < 2:
            raise MedsearchError(f"test_size {test_size} is too large for a grouped split; use at most 0.5")
        return cv_splits(y, task, groups=groups, n_splits=n_splits, seed=seed, mode=mode, names=names)[0]
    strata = stratification_labels(y, task, min_count=2)
    _check_strata(strata, task, 2, "a stratified train/test split", names)
    n = strata.shape[0]
    try:
        train, test = train_test_split(np.arange(n), test_size=test_size, stratify=strata, random_state=seed)
    except ValueError as exc:  # e.g. test set smaller than the number of classes
        raise MedsearchError(f"cannot make a stratified split of {n} images: {exc}") from None
    return _sorted_pairs([(train, test)])[0]


def official_split(split_names) -> tuple[np.ndarray, np.ndarray]:
    """Use a dataset's own split column ('train' / 'val' / 'test').

    'val' rows go to training: heads are tuned by cross-validation on train+val instead of on the
    fixed validation set that MedMNIST papers select on; 'test' stays the test set.
    """
    names = np.char.lower(np.char.strip(np.asarray(split_names, dtype=str)))
    unknown = sorted(set(np.unique(names)) - {"train", "val", "test"})
    if unknown:
        raise MedsearchError(f"unknown split name(s) {unknown}; each row must be 'train', 'val' or 'test'")
    train = np.flatnonzero((names == "train") | (names == "val"))
    test = np.flatnonzero(names == "test")
    if train.size == 0 or test.size == 0:
        raise MedsearchError("the official split needs both training ('train'/'val') and 'test' rows")
    return train.astype(np.int64), test.astype(np.int64)
