"""Choosing an approximate index's search parameters at build time: the cheapest setting (efSearch or nprobe,
and for a lossy PQ index the re-rank depth) at which half of the held-out stored vectors find ``recall_target``
of their exact 10 nearest neighbours; the other half measures the recall recorded at that setting (the half
that chose it would overstate it: the search stops at the first setting that happens to clear the target)."""
from __future__ import annotations

import math
from typing import Callable

import faiss
import numpy as np

from .index_search import search, top_by_sims
from .index_shards import shards_of, structure_of
from .index_specs import IndexQuality, faiss_inner, normalize

EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
RERANK_DEPTHS = (0, 40, 100, 200, 400)   # candidates re-ranked exactly per query (for k = 10); 0: none
PAIR_CHUNK = 8_192                        # (query, row) pairs whose exact similarity is computed at once
READ_ROWS = 8_192                         # stored rows read at once


def tune(index, queries: np.ndarray, truth: np.ndarray, target: float, read_ids) -> IndexQuality:
    """Search parameters for ``index`` (the held-out rows not added yet): ``queries`` are the held-out vectors
    (normalised), ``truth`` their exact neighbours' row ids. ``read_ids(sorted row ids) -> vectors`` reads
    stored vectors for re-ranking. The index keeps the chosen efSearch/nprobe; IndexQuality says what it got.
    A sharded index is tuned and measured on its merged answer, the one `query` gives."""
    k = truth.shape[1]
    choose, check = slice(0, None, 2), slice(1, None, 2)
    name, values, apply, scan_cost = search_knob(index)
    inner = structure_of(index)
    dim = queries.shape[1]
    depths = RERANK_DEPTHS if _lossy(inner) else (0,)
    exact_choose = ExactSims(queries[choose], read_ids)
    best = None                                   # (cost, knob value, depth) of the cheapest setting found
    for value in values:
        if best is not None and scan_cost(value) >= best[0]:
            break
        apply(value)
        for depth in depths:
            cost = scan_cost(value) + depth * 4 * dim
            if best is not None and cost >= best[0]:
                break
            if _recall(_answer(index, queries[choose], k, depth, exact_choose), truth[choose]) >= target:
                best = (cost, value, depth)
                break
    _, value, depth = best or (None, values[-1], depths[-1])   # unreachable: the most this index can do
    apply(value)
    found = _answer(index, queries[check], k, depth, ExactSims(queries[check], read_ids))
    params = ({name: int(value)} if name else {}) | ({"rerank": int(depth)} if depth else {})
    return IndexQuality(exact=False, recall_at_10=round(_recall(found, truth[check]), 4),
                        queries=int(queries[check].shape[0]), search_params=params)


def search_knob(index) -> tuple[str | None, tuple, Callable, Callable]:
    """The search parameter of an approximate index, the values to try (cheapest first), its setter (on every
    shard of a sharded index), and the bytes of codes one query reads at a value (comparable with the 4 * dim
    bytes of each re-ranked row; a query visits every shard's graph, and probes every shard's lists)."""
    structures = [faiss_inner(s) for s in shards_of(index)]
    inner = structures[0]
    if isinstance(inner, faiss.IndexHNSW):
        code = inner.storage.sa_code_size()
        return ("efSearch", EF_SEARCH, lambda v: [setattr(s.hnsw, "efSearch", int(v)) for s in structures],
                lambda v: len(structures) * v * inner.hnsw.nb_neighbors(0) * code)
    try:
        ivfs = [faiss.extract_index_ivf(s) for s in structures]
    except RuntimeError:
        return None, (None,), lambda v: None, lambda v: 0
    nlist = ivfs[0].nlist
    probes = tuple(2 ** i for i in range(int(math.log2(nlist)) + 1))
    probes += (nlist,) if nlist & (nlist - 1) else ()
    per_list = max(1, index.ntotal) / nlist * ivfs[0].code_size
    return "nprobe", probes, lambda v: [setattr(ivf, "nprobe", int(v)) for ivf in ivfs], lambda v: v * per_list


def _lossy(inner) -> bool:
    """Whether the index keeps less than the float32 vectors (PQ, SQ): its order is worth re-ranking."""
    try:
        return inner.sa_code_size() < 4 * inner.d
    except RuntimeError:
        return False


def _answer(index, queries, k: int, depth: int, exact) -> np.ndarray:
    """Row ids the search with re-rank ``depth`` (0: none) returns, the exact similarities taken from ``exact``."""
    if not depth:
        return search(index, queries, k)[1]
    candidates = search(index, queries, max(depth, k))[1]
    return top_by_sims(candidates, exact(candidates), k)[1]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (the exact neighbours) that ``found`` holds."""
    k = truth.shape[1]
    return float(np.mean([np.intersect1d(f, t).size / k for f, t in zip(found, truth)]))


class ExactSims:
    """Exact cosine of (query, stored row) pairs, each computed once: tuning re-ranks the same candidates at
    many settings, and reading their stored vectors again each time would cost a pass over the store."""

    def __init__(self, queries: np.ndarray, read_ids):
        self.queries, self.read_ids = queries, read_ids
        self.keys = np.empty(0, dtype=np.int64)
        self.sims = np.empty(0, dtype=np.float32)

    def __call__(self, candidates: np.ndarray) -> np.ndarray:
        """Similarities of each query (row) with its ``candidates`` (row ids; -1: none, -inf)."""
        valid = candidates >= 0
        keys = self._keys(candidates)[valid]
        missing = np.setdiff1d(keys, self.keys, assume_unique=False)
        if missing.size:
            self._add(missing)
        out = np.full(candidates.shape, -np.inf, dtype=np.float32)
        out[valid] = self.sims[np.searchsorted(self.keys, keys)]
        return out

    def _keys(self, candidates):
        return np.arange(candidates.shape[0], dtype=np.int64)[:, None] * (1 << 40) + candidates

    def _add(self, keys: np.ndarray) -> None:
        queries, rows = keys >> 40, keys & ((1 << 40) - 1)
        unique_rows, where = np.unique(rows, return_inverse=True)
        sims = np.empty(keys.size, dtype=np.float32)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(0, unique_rows.size + READ_ROWS, READ_ROWS))
        for block, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            vectors = normalize(self.read_ids(unique_rows[block * READ_ROWS:(block + 1) * READ_ROWS]))
            for start in range(lo, hi, PAIR_CHUNK):
                pairs = order[start:min(hi, start + PAIR_CHUNK)]
                sims[pairs] = np.einsum("ij,ij->i", self.queries[queries[pairs]],
                                        vectors[where[pairs] - block * READ_ROWS])
        merged = np.concatenate([self.keys, keys])
        order = np.argsort(merged, kind="stable")
        self.keys, self.sims = merged[order], np.concatenate([self.sims, sims])[order]
