"""A model's index split by row range into shards, held together by FAISS's own ``faiss.IndexShards``.

Why: a store larger than one machine's memory cannot hold its index in one process; split by row range, each
shard is an ordinary index (FAISS ids = store row numbers, as unsharded) that can live in its own file, be
memory-mapped, and be searched in parallel. ``IndexShards`` (threaded, successive_ids=False: the ids are the
row numbers themselves) merges the shards' answers with the same top-k merge an index uses within itself,
so the merged answer is the one a single index over the same rows gives.

Shard j holds the rows in [bounds[j], bounds[j + 1]); rows past the last bound (rows added later have the
highest numbers) go to the last shard. This module knows only the in-memory structure; shard_files saves and
opens the files.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

from .index_specs import faiss_inner, normalize


def shard_bounds(row_ids, n_rows: int, shards: int) -> np.ndarray:
    """``shards + 1`` increasing row numbers, 0 first and ``n_rows`` last, that cut the sorted ``row_ids``
    (the rows the index holds) into ``shards`` contiguous ranges of as equal a count as row ranges allow."""
    ids = np.sort(np.asarray(row_ids, dtype=np.int64))
    cuts = [int(ids[c]) if c < ids.size else int(n_rows)
            for c in (math.ceil(j * ids.size / shards) for j in range(1, shards))]
    return np.asarray([0, *cuts, int(n_rows)], dtype=np.int64)


def shard_of(row_ids, bounds) -> np.ndarray:
    """The shard each row id belongs to (rows at or past the last bound: the last shard)."""
    return np.searchsorted(np.asarray(bounds)[1:-1], np.asarray(row_ids, dtype=np.int64), side="right")


def combine(indexes: list) -> faiss.IndexShards:
    """One searchable index over ``indexes`` (same dimension, metric and structure), one thread per shard."""
    sharded = faiss.IndexShards(indexes[0].d, True, False)
    for index in indexes:
        sharded.add_shard(index)   # faiss keeps a Python reference, so the shard lives as long as this
    return sharded


def is_sharded(index) -> bool:
    return isinstance(index, faiss.IndexShards)


def shards_of(index) -> list:
    """The shards of a sharded index, each as its own class (the index itself when it is not sharded). They
    belong to ``index``: keep it alive while using them."""
    if not is_sharded(index):
        return [index]
    return [faiss.downcast_index(index.at(j)) for j in range(index.count())]


def structure_of(index) -> faiss.Index:
    """The index structure under the id map (e.g. IndexHNSWFlat, IndexIVFPQ), of the first shard when sharded:
    every shard is built from the same factory string (and for IVF/PQ from the same trained quantizer)."""
    return faiss_inner(shards_of(index)[0])


def add_routed(index, x: np.ndarray, ids: np.ndarray, bounds=None) -> None:
    """Add normalised rows ``x`` with row ids ``ids``: to their row range's shard when sharded."""
    if not is_sharded(index):
        index.add_with_ids(x, ids)
        return
    if bounds is None:
        raise ValueError("a sharded index needs its row bounds to add rows")
    which = shard_of(ids, bounds)
    for j, shard in enumerate(shards_of(index)):
        mine = which == j
        if mine.any():
            shard.add_with_ids(np.ascontiguousarray(x[mine]), np.ascontiguousarray(ids[mine]))
    index.syncWithSubIndexes()


def add_vectors(index, vectors, ids: np.ndarray, bounds, chunk: int) -> None:
    """add_routed over ``vectors`` (anything sliceable, normalised here) ``chunk`` rows at a time."""
    for start in range(0, ids.size, chunk):
        add_routed(index, normalize(vectors[start:start + chunk]), ids[start:start + chunk], bounds)


def renumbered_bounds(bounds, old_to_new) -> np.ndarray:
    """The bounds in a compacted store's row numbers: each bound becomes the count of kept rows before it."""
    kept_before = np.concatenate([[0], np.cumsum(np.asarray(old_to_new) >= 0)])
    return kept_before[np.minimum(np.asarray(bounds, dtype=np.int64), kept_before.size - 1)]
