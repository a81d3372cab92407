"""The rows every model of one evaluation is scored on, and their train/test rounds.

One split is drawn for all models and methods: the store's official split, a seeded holdout (grouped by
patient where the store has groups; by image under --split paper) or, with --cv K, K outer folds. The
options that the training parts must be large enough for are checked here, before anything is fitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import MedsearchError
from ..storage.store import StoreData
from .eval_options import EvalOptions
from .progress import EvalLog
from .eval_results import Round, SplitInfo
from .splits import cv_splits, holdout_split, official_split, stratification_labels


@dataclass
class Problem:
    """What every model is scored on: the store, the labels and patient groups (None without) of the
    evaluated rows, the rounds as (train, test) positions into those rows, the split mode used, the
    checked options, each head's grid and the log."""

    data: StoreData
    y: np.ndarray
    groups: np.ndarray | None
    rounds: list[tuple[np.ndarray, np.ndarray]]
    split_mode: str
    options: EvalOptions
    grids: dict[str, dict]
    log: EvalLog

    def groups_of(self, positions) -> np.ndarray | None:
        return self.groups[positions] if self.groups is not None else None


def make_problem(data: StoreData, rows: np.ndarray, options: EvalOptions, grids: dict,
                 log: EvalLog) -> tuple[Problem, SplitInfo]:
    """Split the evaluated ``rows`` and check the options against the training parts."""
    y = data.labels[rows]
    groups = np.asarray(data.groups, dtype=object)[rows] if data.groups is not None else None
    split, rounds = _split(data, rows, y, groups, options, log)
    check_against_rounds(rounds, options)
    return Problem(data, y, groups, rounds, split.mode, options, grids, log), split


def check_against_rounds(rounds, options: EvalOptions) -> None:
    """Options that the training parts must be large enough for, checked before anything is fitted."""
    folds, ks = options.folds, options.ks if options.retrieval else ()
    knn_k = options.knn_k if options.knn else None
    n_train = min(train.size for train, _ in rounds)
    where = " in the smallest --cv round" if len(rounds) > 1 else ""
    if n_train < 2 * folds:
        raise MedsearchError(f"--folds {folds}: only {n_train} training rows{where}; {folds}-fold tuning needs at "
                             f"least {2 * folds}: lower --folds or index more images")
    if ks and max(ks) > n_train:
        raise MedsearchError(f"--ks {max(ks)}: retrieval at {max(ks)} needs that many training images, the training "
                             f"part has {n_train}{where}: lower the cut-offs")
    if knn_k is not None and knn_k > n_train:
        raise MedsearchError(f"--knn-k {knn_k}: more neighbours than the {n_train} training rows{where}; "
                             f"use at most {n_train}")


def _split(data, rows, y, groups, options: EvalOptions, log) -> tuple[SplitInfo, list]:
    """(the split for the report, [(train positions, test positions)] into ``rows``)."""
    mode = options.split
    if mode == "auto":
        mode = "official" if data.splits is not None and not options.cv else "grouped"
    if mode == "official":
        if data.splits is None:
            raise MedsearchError("--split official: this store has no official train/val/test split; "
                                 "use --split auto or grouped")
        rounds = [official_split(np.asarray(data.splits, dtype=object)[rows].astype(str))]
        description = "official split (train+val for training and tuning, test for testing)"
    else:
        rounds, description, mode = _drawn_rounds(y, data, groups, mode, options, log)
    described = _described_rounds(data, rows, groups, rounds, log)
    info = SplitInfo(mode=mode, requested=options.split, description=description, cv=options.cv, seed=options.seed,
                     grouped=mode == "grouped", rounds=described,
                     n_train=int(np.mean([r.n_train for r in described])),
                     n_test=int(sum(r.n_test for r in described)))
    return info, rounds


def _drawn_rounds(y, data, groups, mode, options: EvalOptions, log) -> tuple[list, str, str]:
    """Seeded rounds (holdout or --cv folds) for mode 'grouped' or 'paper': (rounds, description, mode used)."""
    task, names = data.task, data.label_names
    use_groups = groups is not None and mode == "grouped"
    if groups is not None and mode == "paper":
        log.warn("--split paper ignores the store's patient groups: images of one patient can be on both "
                 "sides, which inflates every score; use --split grouped for an honest estimate")
    splitter_mode = "grouped" if mode == "grouped" else "paper"
    by = groups if use_groups else None
    cv, test_size = options.cv, options.test_size
    if cv:
        try:
            rounds = cv_splits(y, task, groups=by, n_splits=cv, seed=options.seed, mode=splitter_mode, names=names)
        except MedsearchError as exc:
            raise MedsearchError(f"--cv {cv}: {exc}") from None
        kind = f"{cv}-fold cross-validation (every row tested once, out-of-fold scores pooled)"
    else:
        _check_test_size(y, task, by, test_size)
        rounds = [holdout_split(y, task, groups=by, test_size=test_size, seed=options.seed, mode=splitter_mode,
                                names=names)]
        kind = f"seeded stratified {round((1 - test_size) * 100)}/{round(test_size * 100)} holdout"
    if use_groups:
        description = f"{kind}, grouped by patient (no group on both sides)"
    elif mode == "paper":
        description = f"{kind} by image, as in the paper" + (" (groups ignored: leaks)" if groups is not None else "")
    else:
        description = f"{kind} by image (the store has no patient groups)"
    return rounds, description, "grouped" if use_groups else ("paper" if mode == "paper" else "stratified")


def _described_rounds(data, rows, groups, rounds, log) -> list[Round]:
    """Each round for the report; warns when test images have a byte-identical copy among the training images."""
    described = []
    for train, test in rounds:
        both = len(set(groups[train]) & set(groups[test])) if groups is not None else None
        described.append(Round(n_train=int(train.size), n_test=int(test.size), groups_in_both=both,
                               test_rows_with_a_training_copy=_test_rows_with_a_training_copy(data, rows[train],
                                                                                               rows[test]),
                               train_rows=rows[train].tolist(), test_rows=rows[test].tolist()))
    copies = sum(r.test_rows_with_a_training_copy for r in described)
    if copies:
        log.warn(f"{copies} test image(s) have a byte-identical copy among the training images (see the duplicates "
                 "in the store's index_report.json): their scores are inflated; remove the copies from the dataset, "
                 "or give each copy the same patient id (--group-col) so they fall on one side")
    return described


def _test_rows_with_a_training_copy(data, train_rows, test_rows) -> int:
    """Test rows whose image bytes (sha256 recorded by `index`) are also a training row's: leakage by duplicate."""
    if data.sha256 is None:
        return 0
    seen = {data.sha256[r] for r in train_rows} - {""}
    return sum(1 for r in test_rows if data.sha256[r] in seen)


def _check_test_size(y, task, groups, test_size) -> None:
    """A holdout of ``test_size`` must leave every class (stratum) room on both sides, or, grouped by patient,
    take 1/round(1/test_size) of at least two groups; else a one-line error naming --test-size."""
    n = y.shape[0]
    if groups is not None:
        n_splits, n_groups = round(1.0 / test_size), len(set(groups))
        if n_splits < 2:
            raise MedsearchError(f"--test-size {test_size}: a split grouped by patient tests 1/round(1/test-size) of "
                                 "the patients, at most half: use a --test-size of at most 0.5")
        if n_splits > n_groups:
            raise MedsearchError(f"--test-size {test_size}: a split grouped by patient would test 1/{n_splits} of "
                                 f"the {n_groups} patients: use a --test-size of at least {1 / n_groups:.3g}")
        return
    n_test = math.ceil(test_size * n)
    n_strata = np.unique(stratification_labels(y, task, min_count=2)).size
    if min(n_test, n - n_test) < n_strata:
        raise MedsearchError(f"--test-size {test_size} leaves {n - n_test} training and {n_test} test rows of {n}; a "
                             f"stratified split needs at least {n_strata} on each side (one per class): use a "
                             f"--test-size between {n_strata / n:.3g} and {1 - n_strata / n:.3g}")


def check_training_part(y_train, task, label_names) -> None:
    """A training part must hold two classes (multilabel: one label that is not constant)."""
    if task == "multilabel":
        if not ((y_train != 0).any(axis=0) & (y_train == 0).any(axis=0)).any():
            raise MedsearchError("every label is constant in the training part; nothing can be learnt")
        return
    present = np.unique(y_train)
    if present.size < 2:
        raise MedsearchError(f"the training part holds only class {label_names[int(present[0])]!r}; "
                             "evaluation needs at least two classes: index images of another class")


def inner_folds(problem: Problem, train) -> list:
    """Tuning folds on a training part (its size against --folds is checked up front: check_against_rounds)."""
    grouped = problem.split_mode == "grouped"
    folds = problem.options.folds
    try:
        return cv_splits(problem.y[train], problem.data.task, groups=problem.groups_of(train) if grouped else None,
                         n_splits=folds, seed=problem.options.seed, mode="grouped" if grouped else "paper",
                         names=problem.data.label_names)
    except MedsearchError as exc:
        raise MedsearchError(f"--folds {folds}: {exc}") from None
