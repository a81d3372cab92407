"""Subsets of a training part for label-efficiency curves: stratified, grouped by patient, nested, seeded.

A subset is drawn in units: a patient's rows where the store has groups (so a patient is all in or all out),
else single rows. For one seed the units are put in one order and the subset at fraction f is the shortest
prefix of that order holding about f of the training rows. Prefixes of one order are nested: the subset at 5%
holds the one at 1%, so along one seed's curve the only change between two points is the labels added, as
when a hospital labels more of the same pool; the noise of a fresh draw per point would otherwise blur the
curve's shape. The order is stratified systematically: each unit gets a stratum (its rows' most common
class; multilabel: the label-powerset surrogate of splits.stratification_labels, rare combinations merged),
and within its stratum a random rank; sorting units by (rank + jitter) / stratum size interleaves the strata,
so every prefix holds each stratum's units in proportion, to within one unit.

A tiny fraction can leave a class with no row, and the head's tuning folds need more than one: every subset
is therefore raised to hold at least MIN_UNITS units (patients, or rows) of every class (multilabel: of every
label's positives and of its negatives) that the training part has that many of. These floor units are the
first such units in the same order, the same for every fraction, so nesting holds. How many rows the floor
added is recorded with each subset, and the x axis of a curve is the subset's real number of labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .splits import stratification_labels

MIN_UNITS = 2  # per class: the fewest with which the tuning folds can hold a class on both sides


@dataclass(frozen=True)
class Subset:
    """Positions into the training part (sorted), the units (patients or rows) it holds, the rows the class
    floor added beyond the prefix, and the fewest units any class (label side) has in it."""

    positions: np.ndarray
    n_units: int
    floor_rows: int
    fewest_per_class: int


class SubsetDrawer:
    """Nested stratified subsets of one training part: ``y`` (its labels), ``task``, ``groups`` (one per
    row, or None: rows are the units)."""

    def __init__(self, y, task: str, groups=None):
        self.y, self.task = np.asarray(y), task
        n = self.y.shape[0]
        if groups is None:
            self.unit_of = np.arange(n)
        else:
            _, self.unit_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        self.n_units = int(self.unit_of.max()) + 1 if n else 0
        self.unit_rows = np.bincount(self.unit_of, minlength=self.n_units)
        self.columns = _class_columns(self.y, task)  # (n, C) bool: row belongs to class (label side) c
        # (units, C): unit holds class c
        self.unit_has = np.zeros((self.n_units, self.columns.shape[1]), dtype=bool)
        np.logical_or.at(self.unit_has, self.unit_of, self.columns)
        self.strata = self._unit_strata()

    def _unit_strata(self) -> np.ndarray:
        """Each unit's stratum: the most common stratum of its rows (ties: the lowest code)."""
        row = stratification_labels(self.y, self.task, min_count=2)
        _, codes = np.unique(row, return_inverse=True)
        counts = np.zeros((self.n_units, codes.max() + 1), dtype=np.int64)
        np.add.at(counts, (self.unit_of, codes), 1)
        return counts.argmax(axis=1)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """Units in a seeded, systematically stratified order (see the module docstring)."""
        key = np.empty(self.n_units)
        for s in np.unique(self.strata):
            members = rng.permutation(np.flatnonzero(self.strata == s))
            key[members] = (np.arange(members.size) + rng.uniform(size=members.size)) / members.size
        return np.argsort(key, kind="stable")

    def subsets(self, fractions, seed) -> list[Subset]:
        """One nested subset per fraction (ascending), from the order drawn with ``seed`` (an int or a
        sequence of ints for np.random.default_rng)."""
        order = self.order(np.random.default_rng(seed))
        floor = self._floor(order)
        cumulative = np.cumsum(self.unit_rows[order])
        n = int(cumulative[-1])
        out = []
        for f in fractions:
            target = max(1, round(f * n))
            # the prefix whose rows come nearest the target (the first on ties): monotone in f, so nested
            length = int(np.argmin(np.abs(cumulative - target))) + 1
            chosen = np.zeros(self.n_units, dtype=bool)
            chosen[order[:length]] = True
            prefix_rows = int(cumulative[length - 1])
            chosen[floor] = True
            positions = np.flatnonzero(chosen[self.unit_of])
            present = self.unit_has[chosen].sum(axis=0)
            needed = self.unit_has.any(axis=0)
            out.append(Subset(positions=positions.astype(np.int64), n_units=int(chosen.sum()),
                              floor_rows=int(positions.size - prefix_rows),
                              fewest_per_class=int(present[needed].min()) if needed.any() else 0))
        return out

    def _floor(self, order: np.ndarray) -> np.ndarray:
        """The first MIN_UNITS units of each class (label side) in ``order``."""
        picked = []
        has = self.unit_has[order]
        for c in range(has.shape[1]):
            picked.append(order[np.flatnonzero(has[:, c])[:MIN_UNITS]])
        return np.unique(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _class_columns(y: np.ndarray, task: str) -> np.ndarray:
    """(n, C) bool: one column per class (binary, multiclass), or per label's positives and per label's
    negatives (multilabel), so that the floor keeps every label learnable."""
    if task == "multilabel":
        positive = y.astype(bool)
        return np.concatenate([positive, ~positive], axis=1)
    classes = np.unique(y)
    return y[:, None] == classes[None, :]
