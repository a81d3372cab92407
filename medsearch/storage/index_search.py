"""Searching an index as it was tuned: its recorded search parameters (efSearch, nprobe), exact re-ranking of
a lossy (PQ) index's candidates from the stored vectors, and rows that must not come back (removed rows still
inside an HNSW graph) left out inside FAISS, so that k answers still come back.

A sharded index (faiss.IndexShards, index_shards) is searched the same way, its shards in parallel. One FAISS
limit is worked around: IndexIDMap's search swaps the selector inside the SearchParameters it is given for
its own translated one while it runs, so shards under an id map that share one parameters object in
IndexShards's threads race on it (a crash, or another shard's id map). Such a search with excluded rows gives
each shard its own parameters, runs the shards in a thread pool, and merges with FAISS's merge_knn_results,
the merge IndexShards uses.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import faiss
import numpy as np

from ..errors import MedsearchError
from .index_shards import is_sharded, shards_of, structure_of
from .index_specs import RECALL_K, normalize

RERANK_ROWS_PER_READ = 16_384     # candidate rows read (and held) at once while re-ranking
MISSING_SIM = np.float32(-np.finfo(np.float32).max)  # what FAISS pads inner-product results with

ReadRows = Callable[[np.ndarray], np.ndarray]


def search(index: faiss.Index, queries, k: int, *, params: dict | None = None, read_rows: ReadRows | None = None,
           exclude_rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and store row ids of the ``k`` nearest neighbours of each query (-1 pads).

    ``params``: the search parameters recorded at build time (IndexQuality.search_params), e.g. {'efSearch': 48}
    or {'nprobe': 32, 'rerank': 100}; without them the index searches with the settings saved in it. With
    'rerank' R, about R * k / 10 candidates are fetched and ``read_rows(row_ids)`` (sorted unique store row ids
    -> their stored float32 vectors, normalised here) gives their exact cosine, which orders the answer.
    ``exclude_rows``: store row ids never to return."""
    params = dict(params or {})
    depth = params.pop("rerank", 0)
    k = max(1, min(int(k), index.ntotal))
    q = normalize(queries)
    fetch = min(index.ntotal, max(k, math.ceil(depth * k / RECALL_K))) if depth else k
    if depth and read_rows is None:
        raise MedsearchError("this index re-ranks its candidates with the stored vectors, but none were given "
                             "(read_rows): search with them, or rebuild with `medsearch index --index-type HNSW32`")
    sims, ids = _search_with(index, q, fetch, params, exclude_rows)
    sims, ids = _probe_until_full(index, q, fetch, params, exclude_rows, sims, ids)
    if depth:
        sims, ids = rerank(q, ids, k, read_rows)
    return sims, ids


def _probe_until_full(index, q, fetch, params, exclude_rows, sims, ids):
    """An IVF index probing few lists can find fewer than ``fetch`` rows (a large k, many excluded rows): probe
    twice as many lists until every query has its answers or every list is probed."""
    inner = structure_of(index)
    if not isinstance(inner, faiss.IndexIVF):
        return sims, ids
    nprobe = int(params.get("nprobe", inner.nprobe))
    while (ids[:, -1] < 0).any() and nprobe < inner.nlist:
        nprobe = min(inner.nlist, 2 * nprobe)
        sims, ids = _search_with(index, q, fetch, params | {"nprobe": nprobe}, exclude_rows)
    return sims, ids


def rerank(queries: np.ndarray, candidates: np.ndarray, k: int, read_rows: ReadRows) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of each row of ``candidates`` (store row ids, -1 for none) by exact cosine with the
    normalised ``queries``, from the stored vectors ``read_rows`` gives, a bounded batch of rows at a time."""
    nq, depth = candidates.shape
    out_sims = np.full((nq, k), MISSING_SIM, dtype=np.float32)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    batch = max(1, RERANK_ROWS_PER_READ // max(1, depth))
    for start in range(0, nq, batch):
        cand = candidates[start:start + batch]
        rows = np.unique(cand[cand >= 0])
        if rows.size == 0:
            continue
        vectors = np.asarray(read_rows(rows), dtype=np.float32)
        if vectors.shape != (rows.size, queries.shape[1]):
            raise MedsearchError(f"the stored vectors read for re-ranking have shape {vectors.shape}, not "
                                 f"{(rows.size, queries.shape[1])}: the store and its index differ; run `medsearch index`")
        gathered = normalize(vectors)[np.searchsorted(rows, np.maximum(cand, 0))]   # (queries, depth, dim)
        sims = np.einsum("qd,qrd->qr", queries[start:start + batch], gathered)
        s, i = top_by_sims(cand, sims, k)
        out_sims[start:start + batch, :s.shape[1]], out_ids[start:start + batch, :i.shape[1]] = s, i
    return out_sims, out_ids


def top_by_sims(candidates: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` candidates of highest ``sims``, best first (ties keep the index's order); -1 stays last."""
    sims = np.where(candidates >= 0, sims, -np.inf).astype(np.float32)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top_sims, top_ids = np.take_along_axis(sims, order, 1), np.take_along_axis(candidates, order, 1)
    top_sims[top_ids < 0] = MISSING_SIM
    return top_sims, top_ids


def _search_with(index, q, k, params: dict, exclude_rows) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search with ``params`` and the exclusion as per-call SearchParameters (the index is not changed);
    an index whose structure takes no typed parameters is searched deeper and filtered instead."""
    inner = structure_of(index)
    if exclude_rows is not None and not isinstance(exclude_rows, np.ndarray):
        exclude_rows = list(exclude_rows)
    exclude = np.unique(np.asarray([] if exclude_rows is None else exclude_rows, dtype=np.int64))
    keep = [faiss.IDSelectorBatch(exclude)] if exclude.size else []
    if keep:
        keep.append(faiss.IDSelectorNot(keep[0]))
    selector = keep[-1] if keep else None
    typed = _typed_params(inner, params, selector, k)
    if typed is not None and selector is not None and is_sharded(index) \
            and isinstance(shards_of(index)[0], faiss.IndexIDMap):
        return _search_each_shard(index, q, k, lambda: _typed_params(inner, params, selector, k))
    if typed is not None or not exclude.size:
        return index.search(q, k, params=typed)
    more = min(index.ntotal, k + exclude.size)
    sims, ids = index.search(q, more)
    gone = np.isin(ids, exclude)
    return top_by_sims(np.where(gone, -1, ids), np.where(gone, -np.inf, sims), k)


_pool: ThreadPoolExecutor | None = None


def _search_each_shard(index, q, k: int, make_params) -> tuple[np.ndarray, np.ndarray]:
    """Each shard searched in a thread (FAISS releases the GIL) with parameters of its own, merged as
    IndexShards merges (see the module docstring)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1), thread_name_prefix="medsearch-shard")

    def one(shard):
        params = make_params()   # held here for the whole search: FAISS does not own it
        return shard.search(q, k, params=params)

    answers = list(_pool.map(one, shards_of(index)))
    sims = np.ascontiguousarray(np.stack([a[0] for a in answers]))
    ids = np.ascontiguousarray(np.stack([a[1] for a in answers]))
    return faiss.merge_knn_results(sims, ids, keep_max=True)


def _typed_params(inner, params: dict, selector, k: int):
    """SearchParameters for this index structure, or None when it has none to give (and nothing is asked).
    HNSW returns at most efSearch rows, so a search for more than the tuned efSearch explores k deep."""
    if isinstance(inner, faiss.IndexHNSW):
        _only(params, {"efSearch"}, inner)
        ef = max(int(params.get("efSearch", inner.hnsw.efSearch)), int(k))
        return faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
    if isinstance(inner, faiss.IndexIVF):
        _only(params, {"nprobe"}, inner)
        return faiss.SearchParametersIVF(nprobe=int(params.get("nprobe", inner.nprobe)), sel=selector)
    _only(params, set(), inner)
    if isinstance(inner, (faiss.IndexFlat, faiss.IndexPQ, faiss.IndexScalarQuantizer)):
        return faiss.SearchParameters(sel=selector) if selector is not None else None
    return None


def _only(params: dict, allowed: set, inner) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise MedsearchError(f"search parameter {unknown[0]!r} does not apply to a {type(inner).__name__} index: "
                             "the store's record and its index differ; rebuild with `medsearch index`")
