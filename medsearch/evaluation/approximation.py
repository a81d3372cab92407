"""Stated approximations that keep `eval` bounded on large stores, and the subsamples they use.

Two costs grow faster than the store. Tuning a head fits every setting on every fold, so a grid search on
n training rows costs (settings x folds) fits of n rows and one standardised float64 copy of every fold;
and a kernel SVC (svc-rbf, multiclass svc-linear) needs an n x n kernel (O(n^2) memory and time). Above
a limit, each is replaced by the same computation on a seeded, stratified subsample of the training part:
- tuning (every head but the kernel SVCs, and the k-NN's k): the grid search and the choice of k run on
  at most ``max_tuning_rows`` rows (k-NN: that many tuning queries, searched against every training row);
  the chosen setting is then refitted on every training row;
- kernel SVC: tuned and fitted on at most ``max_kernel_rows`` rows.
Below the limits nothing changes. Each approximation is recorded in the method's result (``approximation``)
and warned about; ``exact`` turns them all off.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from .splits import stratification_labels

KERNEL_HEADS_ALWAYS = ("svc-rbf",)
KERNEL_ON_MULTICLASS = ("svc-linear",)  # one-vs-one inside libsvm on multiclass; a primal solver otherwise


def is_kernel_head(name: str, task: str) -> bool:
    """Whether head ``name`` needs a kernel SVC on ``task`` (see solvers.routing)."""
    return name in KERNEL_HEADS_ALWAYS or (name in KERNEL_ON_MULTICLASS and task == "multiclass")


def stratified_subsample(y, task: str, size: int, seed: int) -> np.ndarray:
    """Sorted positions of ``size`` rows of ``y`` drawn with every class (label combination) in proportion."""
    n = y.shape[0]
    if size >= n:
        return np.arange(n)
    strata = stratification_labels(y, task, min_count=2)
    try:
        kept, _ = train_test_split(np.arange(n), train_size=size, stratify=strata, random_state=seed)
    except ValueError:  # a stratum too small to split: draw uniformly
        kept = np.random.default_rng(seed).choice(n, size=size, replace=False)
    return np.sort(kept).astype(np.int64)


def record(kind: str, rows: int, of: int, limit_flag: str) -> dict:
    """The ``approximation`` entry of a method's result: what was done, on how many rows, and why."""
    why = {
        "tuning": (f"the grid search fits every setting on every fold: on {of:,} training rows that costs "
                   f"(settings x folds) fits of that size and a float64 copy of every fold"),
        "kernel": (f"a kernel SVC on {of:,} training rows needs an {of:,} x {of:,} kernel: O(n^2) memory "
                   "and time"),
        "knn": (f"choosing k searches every tuning fold's held-out rows against its training rows: "
                f"{of:,} queries x training rows"),
    }[kind]
    what = {
        "tuning": "tuned on a stratified subsample, then refitted on every training row",
        "kernel": "tuned and fitted on a stratified subsample of the training rows",
        "knn": "k chosen on a stratified subsample of the tuning queries (against every training row)",
    }[kind]
    return {"method": "stratified-subsample", "applies_to": kind, "what": what, "rows": int(rows), "of": int(of),
            "why": why, "change_with": f"{limit_flag} N, or --exact"}


def warning_text(method: str, entry: dict) -> str:
    """The one-line warning (and report line) stating an approximation."""
    return (f"{method}: {entry['what']} ({entry['rows']:,} of {entry['of']:,} rows), because {entry['why']}; "
            f"change with {entry['change_with']}")
