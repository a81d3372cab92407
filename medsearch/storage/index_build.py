"""Building an index from stored vectors that need not fit in memory: ``vectors`` is anything indexed by
position (``.shape``, ``vectors[a:b]``, ``vectors[increasing int array]`` -> float32), e.g. a lazy reader of the
store. A training sample is read once, the rows are added a slice at a time, and the same pass computes the
exact neighbours of the held-out rows that tune an approximate index (index_tuning).

Sharded (``bounds``, index_shards): one index type is resolved for the whole store, as unsharded, and an
IVF/PQ index is trained once on the store-wide sample; each shard is a copy of that trained, empty index
filled with its row range. Shared training rather than a build_tuned_index per shard because then every
shard has the same centroids and codebooks (one nprobe means the same in each; one k-means, not N), a
small shard needs no training rows of its own, and one tuning of the merged answer on the same held-out
rows gives the search parameters and the recall@10 that `query` actually gets. HNSW needs no training: each
shard grows its own graph.
"""
from __future__ import annotations

import faiss
import numpy as np

from ..errors import MedsearchError
from .index_specs import (DEFAULT_MAX_INDEX_MEMORY, RECALL_K, RECALL_TARGET, IndexQuality, check_recall_target,
                          normalize, resolve_index_type)
from .index_shards import add_routed, combine
from .index_tuning import READ_ROWS, tune

TUNING_QUERIES = 2000         # held-out stored vectors: half choose the parameters, half measure the recall
ADD_CHUNK_ROWS = 65_536       # rows added to an index at a time
EXACT_BLOCK_ELEMENTS = 8_000_000  # (held-out queries x rows) similarities in memory at once while tuning
TRAIN_ROWS_MAX = 1 << 17      # k-means and PQ codebooks learn from a sample, not from every row
TRAIN_ROWS_PER_LIST = 64
KMEANS_ITERATIONS = 10
KMEANS_MIN_ROWS_PER_LIST = 32  # below this FAISS warns; the sample is sized at 32-64 rows per list


def build_tuned_index(vectors, row_ids, index_type: str = "Flat", *, recall_target: float = RECALL_TARGET,
                      max_memory: int = DEFAULT_MAX_INDEX_MEMORY, seed: int = 0,
                      bounds=None) -> tuple[faiss.Index, IndexQuality]:
    """An index of ``vectors`` (normalised here) with ids ``row_ids`` (store row numbers), and how exact it is.
    ``index_type``: 'flat', 'auto' (chosen by size and ``max_memory`` bytes) or a FAISS factory string.
    Approximate ones get the cheapest search parameters reaching ``recall_target`` on held-out rows.
    ``bounds`` (index_shards.shard_bounds): a faiss.IndexShards of one shard per row range instead."""
    target = check_recall_target(recall_target)
    n, dim = vectors.shape
    ids = np.asarray(row_ids, dtype=np.int64).reshape(-1)
    if ids.size != n or np.unique(ids).size != n or (n and ids.min() < 0):
        raise MedsearchError(f"{ids.size} row ids for {n} vectors (they must be distinct and >= 0): run `medsearch index` again")
    spec = resolve_index_type(index_type, n, dim, max_memory)
    try:
        inner = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise MedsearchError(f"FAISS does not understand index type '{index_type}' ({first_line(exc)}): "
                             "use flat, auto, or a factory string like HNSW32 or IVF256,Flat") from None
    trained_rows = 0 if inner.is_trained else _train(inner, vectors, spec, seed)
    index = wrap_ids(inner) if bounds is None else \
        combine([wrap_ids(faiss.clone_index(inner)) for _ in range(len(bounds) - 1)])
    exact = isinstance(faiss.downcast_index(inner), faiss.IndexFlat)
    held = np.empty(0, dtype=np.int64) if exact else _held_out(n, seed)
    quality = IndexQuality(exact=exact, recall_at_10=1.0 if exact else float("nan"))
    if held.size:
        queries = read_positions(vectors, held, normalized=True)
        truth = ids[_fill(index, vectors, ids, held, queries, bounds)]
        quality = tune(index, queries, truth, target, _id_reader(vectors, ids))
        add_routed(index, queries, ids[held], bounds)
    else:
        _fill(index, vectors, ids, held, None, bounds)
    quality.spec, quality.recall_target, quality.trained_rows = spec, target, trained_rows
    return index, quality


def wrap_ids(inner: faiss.Index) -> faiss.Index:
    """IVF indexes keep store row ids in their lists (so they can remove and renumber rows in place); others
    get an IndexIDMap2 (FAISS's IVF under an id map cannot remove rows: it would renumber them wrongly)."""
    try:
        faiss.extract_index_ivf(inner)
        return inner
    except RuntimeError:
        return faiss.IndexIDMap2(inner)


def read_positions(vectors, positions: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """float32 rows at increasing ``positions``, READ_ROWS at a time (each part normalised as it is read, so
    that a large sample is never held twice)."""
    read = normalize if normalized else (lambda part: np.asarray(part, dtype=np.float32))
    parts = [read(vectors[positions[i:i + READ_ROWS]]) for i in range(0, positions.size, READ_ROWS)]
    return np.concatenate(parts) if parts else np.empty((0, vectors.shape[1]), dtype=np.float32)


def _train(inner, vectors, spec: str, seed: int) -> int:
    """Train on an evenly drawn sample of at most TRAIN_ROWS_MAX rows; returns the rows the index has."""
    n = vectors.shape[0]
    needed = training_points(spec)
    if n < needed:
        raise MedsearchError(f"index type '{spec}' needs at least {needed} vectors to train, the store has {n}: "
                             "use --index-type flat (or auto) for a store this size")
    try:
        ivf = faiss.extract_index_ivf(inner)
        ivf.cp.niter, ivf.cp.min_points_per_centroid = KMEANS_ITERATIONS, KMEANS_MIN_ROWS_PER_LIST
        nlist = ivf.nlist
    except RuntimeError:
        nlist = 0
    structure = faiss.downcast_index(faiss.extract_index_ivf(inner) if nlist else inner)
    if hasattr(structure, "do_polysemous_training"):   # FAISS's factory turns it on; searches never use it
        structure.do_polysemous_training = False
    if hasattr(structure, "pq"):
        structure.pq.cp.niter = KMEANS_ITERATIONS
    size = min(n, TRAIN_ROWS_MAX, max(TRAIN_ROWS_PER_LIST * nlist, 1 << 16))
    sample = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    inner.train(read_positions(vectors, sample, normalized=True))
    return int(n)


def training_points(spec: str) -> int:
    """The fewest vectors a factory string can be trained on (one per IVF list, 256 for 8-bit PQ codes)."""
    needed = 1
    for part in spec.split(","):
        if part.startswith("IVF"):
            digits = "".join(ch for ch in part[3:].split("_")[0] if ch.isdigit())
            needed = max(needed, int(digits or 1))
        if part.startswith("PQ"):
            needed = max(needed, 256)
    return needed


def _held_out(n: int, seed: int) -> np.ndarray:
    """Rows held out to tune and measure recall: a tenth of the rows, at most TUNING_QUERIES; none when that is
    under 2 (one to choose, one to measure) or leaves fewer than 2 * RECALL_K rows."""
    size = min(TUNING_QUERIES, n // 10)
    if size < 2 or n - size < 2 * RECALL_K:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _fill(index, vectors, ids, held: np.ndarray, queries, bounds) -> np.ndarray | None:
    """Add every row not in ``held``, a slice at a time; with ``queries`` (the held rows), also return the
    positions of each one's exact RECALL_K nearest rows among those added, found in the same pass."""
    n = vectors.shape[0]
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    top = TopK(queries, min(RECALL_K, n - held.size)) if queries is not None else None
    step = ADD_CHUNK_ROWS if top is None else max(1024, min(ADD_CHUNK_ROWS, EXACT_BLOCK_ELEMENTS // held.size))
    for start in range(0, n, step):
        x = normalize(vectors[start:start + step])
        keep = ~is_held[start:start + x.shape[0]]
        add_routed(index, x[keep], ids[start:start + x.shape[0]][keep], bounds)
        if top is not None:
            top.update(x, start, ~keep)
    return None if top is None else top.rows


class TopK:
    """Each query's exact top ``k`` rows by inner product, fed a slice of rows at a time."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, k
        self.sims = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        self.rows = np.zeros((queries.shape[0], k), dtype=np.int64)

    def update(self, x: np.ndarray, start: int, skip: np.ndarray) -> None:
        """Consider the rows ``x`` (positions start.., normalised), except those where ``skip`` is set."""
        sims = self.queries @ x.T
        sims[:, skip] = -np.inf
        sims = np.concatenate([self.sims, sims], axis=1)
        rows = np.concatenate([self.rows, np.broadcast_to(np.arange(start, start + x.shape[0]),
                                                          (self.queries.shape[0], x.shape[0]))], axis=1)
        top = np.argpartition(-sims, self.k - 1, axis=1)[:, :self.k]
        self.sims, self.rows = np.take_along_axis(sims, top, 1), np.take_along_axis(rows, top, 1)


def _id_reader(vectors, ids: np.ndarray):
    """read_ids(sorted unique row ids) -> their vectors, read at increasing positions."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    def read_ids(want: np.ndarray) -> np.ndarray:
        positions = order[np.searchsorted(sorted_ids, want)]
        increasing = np.argsort(positions, kind="stable")
        out = np.empty((positions.size, vectors.shape[1]), dtype=np.float32)
        out[increasing] = read_positions(vectors, positions[increasing])
        return out
    return read_ids


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]
