"""One model's embeddings in a format-2 store, read by rows: a query reads the few rows it re-ranks, ``eval``
the rows it scores, and nothing loads a multi-GB matrix it does not use. Rows written since the last commit
live in memory until the commit writes them to a segment (``pending_rows`` / ``settle``).

It behaves like the (n, dim) float32 array it stands for where the code uses one: ``.shape``, ``emb[rows]``
(an int, a slice, an int array or a bool mask), ``emb[rows] = values`` and ``np.asarray(emb)``. Values are
checked finite as they are read: a damaged segment is refused when it is used, with the field it is in.
"""
from __future__ import annotations

import numpy as np

from ..errors import MedsearchError
from .schema import REBUILD
from .segments import SegmentFile
from .validation import printable_key


class Embeddings:
    def __init__(self, key: str, n: int, dim: int, segments: list[SegmentFile], seg_of: np.ndarray,
                 pos_of: np.ndarray, store: str = "the store"):
        self.key, self.store = key, store
        self._n, self._dim = n, dim
        self._segments = segments
        self._seg_of = seg_of            # int32 (n,): index into segments, -1 = never written (zeros)
        self._pos_of = pos_of            # int64 (n,): position in that segment's embedding dataset
        self._written: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self._n, self._dim)

    dtype = np.dtype(np.float32)
    ndim = 2

    def __len__(self) -> int:
        return self._n

    def __array__(self, dtype=None, copy=None):
        out = self[np.arange(self._n)]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy=True):
        return np.asarray(self, dtype=dtype)

    def _rows(self, key) -> tuple[np.ndarray, bool]:
        """Row numbers meant by an index, and whether it was a single int (a 1-D result)."""
        if isinstance(key, (int, np.integer)):
            row = int(key) + (self._n if key < 0 else 0)
            if not 0 <= row < self._n:
                raise IndexError(f"row {key} out of range for {self._n} rows")
            return np.array([row]), True
        if isinstance(key, slice):
            return np.arange(*key.indices(self._n)), False
        rows = np.asarray(key)
        if rows.dtype == bool:
            if rows.shape != (self._n,):
                raise IndexError(f"boolean index of shape {rows.shape} for {self._n} rows")
            return np.flatnonzero(rows), False
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        rows = np.where(rows < 0, rows + self._n, rows)
        if rows.size and (rows.min() < 0 or rows.max() >= self._n):
            raise IndexError(f"row numbers out of range for {self._n} rows")
        return rows, False

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # emb[rows, columns]: the rows first, then numpy's own indexing
            first = self[key[0]]
            return first[key[1:]] if first.ndim == 1 else first[(slice(None),) + key[1:]]
        rows, single = self._rows(key)
        out = np.zeros((rows.size, self._dim), np.float32)
        seg = self._seg_of[rows]
        for s in np.unique(seg[seg >= 0]):
            at = np.flatnonzero(seg == s)
            order = np.argsort(self._pos_of[rows[at]], kind="stable")
            positions = self._pos_of[rows[at]][order]
            uniq, inverse = np.unique(positions, return_inverse=True)
            values = self._segments[s].embeddings(self.key, uniq)[inverse]
            self._check_finite(values, s)
            out[at[order]] = values
        if self._written:  # rows written since the last commit: looked up for the matching rows only
            for i in np.flatnonzero(np.isin(rows, np.fromiter(self._written, np.int64, len(self._written)))):
                out[i] = self._written[int(rows[i])]
        return out[0] if single else out

    def __setitem__(self, key, values) -> None:
        rows, _ = self._rows(key)
        values = np.broadcast_to(np.asarray(values, dtype=np.float32), (rows.size, self._dim))
        for r, v in zip(rows.tolist(), values):
            self._written[r] = np.array(v, copy=True)

    def _check_finite(self, values: np.ndarray, s: int) -> None:
        if values.size and not (np.isfinite(values.min()) and np.isfinite(values.max())):
            raise MedsearchError(f"'{self.store}' is damaged: {self._segments[s].name}:models/"
                                 f"{printable_key(self.key)}/embedding holds a value that is not finite; {REBUILD}")

    @classmethod
    def empty(cls, key: str, n: int, dim: int, store: str = "the store") -> "Embeddings":
        """A model with no stored embedding yet: every row reads as zeros."""
        return cls(key, n, dim, [], np.full(n, -1, np.int32), np.zeros(n, np.int64), store)

    # --- what the writer uses ------------------------------------------------------------------------------

    def grow(self, extra: int) -> None:
        """Add ``extra`` rows (zeros until written)."""
        self._n += extra
        self._seg_of = np.concatenate([self._seg_of, np.full(extra, -1, np.int32)])
        self._pos_of = np.concatenate([self._pos_of, np.zeros(extra, np.int64)])

    def pending_rows(self) -> np.ndarray:
        """Rows written in memory since the last commit, sorted."""
        return np.array(sorted(self._written), dtype=np.int64)

    def settle(self, segment: SegmentFile, rows: np.ndarray) -> None:
        """The rows ``rows`` are now in ``segment`` at positions 0..len-1: read them from there from now on."""
        self._segments.append(segment)
        self._seg_of[rows] = len(self._segments) - 1
        self._pos_of[rows] = np.arange(rows.size)
        for r in rows.tolist():
            self._written.pop(r, None)

    def renumber(self, keep: np.ndarray) -> "Embeddings":
        """The same embeddings with only the rows ``keep`` (sorted), numbered 0..len-1."""
        out = Embeddings(self.key, keep.size, self._dim, self._segments, self._seg_of[keep], self._pos_of[keep],
                         self.store)
        position = {int(r): i for i, r in enumerate(keep)}
        out._written = {position[r]: v for r, v in self._written.items() if r in position}
        return out


class RowsView:
    """The rows ``rows`` of an embedding matrix (an array or Embeddings), indexed by position 0..len-1: what
    index building and updating read a slice at a time, so that a store on disk is never loaded whole."""

    def __init__(self, embedding, rows: np.ndarray):
        self.embedding = embedding
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = (self.rows.size, embedding.shape[1])

    dtype = np.dtype(np.float32)
    ndim = 2

    def __len__(self) -> int:
        return self.rows.size

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            return self[key[0]][(slice(None),) + key[1:]]
        return np.asarray(self.embedding[self.rows[key]], dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)
