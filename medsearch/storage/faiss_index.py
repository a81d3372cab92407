"""FAISS index over one model's embeddings: cosine similarity as inner product on L2-normalised vectors,
FAISS ids = store row numbers. Index files are written atomically and checked against the store before use.

An approximate index says how approximate it is: at build time a sample of stored vectors is held out, the
index is built on the rest, and its search parameter (HNSW's efSearch, IVF's nprobe) is raised until half of
the held-out queries find at least ``recall_target`` of their exact 10 nearest neighbours; the other half
measures the recall@10 at that setting; then the held-out vectors are added. The measured recall and the
parameter are recorded in the store beside the index.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from .atomic import atomic_write_with, sha256_file
from ..errors import MedsearchError

FLAT = "Flat"
RECALL_TARGET = 0.95          # recall@10 an approximate index is tuned to reach at build time
TUNING_QUERIES = 2000         # held-out stored vectors: half choose the parameter, half measure the recall
RECALL_K = 10
ADD_CHUNK_ROWS = 65_536       # rows added to an index at a time
EXACT_BLOCK_ELEMENTS = 8_000_000  # (held-out queries x rows) similarities in memory at once while tuning
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


@dataclass
class IndexQuality:
    """How exact an index's answers are: ``recall_at_10`` (1.0 for exact search) measured on ``queries``
    held-out stored vectors at build time, with the search parameter it was reached at (e.g. {'efSearch': 64})."""

    exact: bool
    recall_at_10: float = 1.0
    search_params: dict = field(default_factory=dict)
    queries: int = 0


def normalize(x: np.ndarray) -> np.ndarray:
    """Float32 copy with unit-length rows (zero rows stay zero)."""
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def auto_index_type(n: int, dim: int) -> str:
    """Exact search while it is fast enough; HNSW for mid-size stores; IVF-PQ when memory matters."""
    if n <= 100_000:
        return FLAT
    if n <= 2_000_000:
        return "HNSW32"
    nlist = int(4 * math.sqrt(n))
    m = next(m for m in (64, 48, 32, 16, 8) if dim % m == 0) if dim % 8 == 0 else None
    return f"IVF{nlist},PQ{m}" if m else f"IVF{nlist},Flat"


def build_index(embedding: np.ndarray, row_ids: np.ndarray, index_type: str = FLAT) -> faiss.Index:
    """Build an index of ``embedding`` (normalised here) with ids ``row_ids``. ``index_type``: 'flat', 'auto'
    or any FAISS index-factory string (e.g. 'HNSW32', 'IVF256,Flat', 'IVF1024,PQ32'); approximate ones are
    tuned to RECALL_TARGET (build_tuned_index)."""
    return build_tuned_index(embedding, row_ids, index_type)[0]


def resolve_index_type(index_type: str, n: int, dim: int) -> str:
    """The FAISS factory string that ``index_type`` ('flat', 'auto' or a factory string) means for n x dim."""
    if index_type.lower() == "auto":
        return auto_index_type(n, dim)
    return FLAT if index_type.lower() == "flat" else index_type


def build_tuned_index(embedding: np.ndarray, row_ids: np.ndarray, index_type: str = FLAT, *,
                      recall_target: float = RECALL_TARGET, seed: int = 0) -> tuple[faiss.Index, IndexQuality]:
    """``build_index``, and how exact the result is (IndexQuality), its search parameter tuned on held-out rows."""
    x = normalize(embedding)
    n, dim = x.shape
    ids = np.asarray(row_ids, dtype=np.int64)
    spec = resolve_index_type(index_type, n, dim)
    try:
        inner = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise MedsearchError(f"FAISS does not understand index type '{index_type}' ({_first_line(exc)}): "
                             "use flat, auto, or a factory string like HNSW32 or IVF256,Flat") from None
    if not inner.is_trained:
        needed = _training_points(spec)
        if n < needed:
            raise MedsearchError(f"index type '{spec}' needs at least {needed} vectors to train, the store has {n}: "
                                 "use --index-type flat (or auto) for a store this size")
        inner.train(x)
    index = faiss.IndexIDMap2(inner)
    held = _held_out(n, seed)
    exact = isinstance(inner, faiss.IndexFlat)
    if exact or held.size == 0:
        index.add_with_ids(x, ids)
        return index, IndexQuality(exact=exact, recall_at_10=1.0 if exact else math.nan)
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    for start in range(0, n, ADD_CHUNK_ROWS):  # the rest, a slice at a time: no second copy of the matrix
        keep = ~is_held[start:start + ADD_CHUNK_ROWS]
        index.add_with_ids(x[start:start + ADD_CHUNK_ROWS][keep], ids[start:start + ADD_CHUNK_ROWS][keep])
    truth = ids[_exact_neighbours(x, x[held], is_held, min(RECALL_K, n - held.size))]
    quality = _tune(index, inner, x[held], truth, recall_target)
    index.add_with_ids(x[held], ids[held])
    return index, quality


def quality_attrs(quality: IndexQuality, index: faiss.Index) -> dict:
    """The store attributes that record an index's factory string and how exact its answers are."""
    return {"index_factory": type(faiss_inner(index)).__name__, "index_exact": bool(quality.exact),
            "index_recall_at_10": float(quality.recall_at_10),
            "index_search_params": json.dumps(quality.search_params, sort_keys=True),
            "index_tuning_queries": int(quality.queries)}


def faiss_inner(index: faiss.Index) -> faiss.Index:
    """The index structure under the id map (e.g. an IndexHNSWFlat or IndexIVFPQ), as its own class."""
    return faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)


def _held_out(n: int, seed: int) -> np.ndarray:
    """Rows held out to tune and measure recall: a tenth of the rows, at most TUNING_QUERIES; none when that is
    under 2 (one to choose, one to measure) or leaves fewer than 2 * RECALL_K rows."""
    size = min(TUNING_QUERIES, n // 10)
    if size < 2 or n - size < 2 * RECALL_K:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _exact_neighbours(x: np.ndarray, queries: np.ndarray, skip: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each query's exact top ``k`` by inner product among the rows of ``x`` not in ``skip``,
    computed a slice of ``x`` at a time: never a copy of ``x``, and a similarity block of at most
    EXACT_BLOCK_ELEMENTS. (faiss.knn would scan without copying too, but cannot leave the ``skip`` rows out.)"""
    best_sims = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((queries.shape[0], k), dtype=np.int64)
    step = max(1024, EXACT_BLOCK_ELEMENTS // max(1, queries.shape[0]))
    for start in range(0, x.shape[0], step):
        sims = queries @ x[start:start + step].T
        sims[:, skip[start:start + step]] = -np.inf
        sims = np.concatenate([best_sims, sims], axis=1)
        rows = np.concatenate([best_rows, np.broadcast_to(np.arange(start, start + sims.shape[1] - k),
                                                          (queries.shape[0], sims.shape[1] - k))], axis=1)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        best_sims, best_rows = np.take_along_axis(sims, top, 1), np.take_along_axis(rows, top, 1)
    return best_rows


def _tune(index, inner, queries, truth, target: float) -> IndexQuality:
    """Raise the index's search parameter until half of ``queries`` find ``target`` of their exact neighbours
    ``truth`` (store row ids; or until the largest setting is reached); the index keeps that setting. The recall
    recorded is the other half's at that setting: the half that chose it would overstate it (the search stops at
    the first setting that happens to clear the target)."""
    k = truth.shape[1]
    choose, check = slice(0, None, 2), slice(1, None, 2)
    name, values, apply = _search_knob(inner)
    chosen = None
    for value in values or (None,):
        if apply:
            apply(value)
        chosen = value
        if _recall(index.search(queries[choose], k)[1], truth[choose]) >= target:
            break
    recall = _recall(index.search(queries[check], k)[1], truth[check])
    return IndexQuality(exact=False, recall_at_10=round(recall, 4), queries=int(queries[check].shape[0]),
                        search_params={name: int(chosen)} if name else {})


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (the exact neighbours) that ``found`` holds."""
    k = truth.shape[1]
    return float(np.mean([np.intersect1d(f, t).size / k for f, t in zip(found, truth)]))


def _search_knob(inner) -> tuple[str | None, tuple, object]:
    """The search parameter of an approximate index, the values to try (cheapest first), and its setter."""
    inner = faiss.downcast_index(inner)
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch", EF_SEARCH, lambda v: setattr(inner.hnsw, "efSearch", int(v))
    try:
        ivf = faiss.extract_index_ivf(inner)
    except RuntimeError:
        return None, (), None
    probes = tuple(2 ** i for i in range(int(math.log2(ivf.nlist)) + 1)) + ((ivf.nlist,) if ivf.nlist & (ivf.nlist - 1) else ())
    return "nprobe", probes, lambda v: setattr(ivf, "nprobe", int(v))


def _training_points(spec: str) -> int:
    needed = 1
    for part in spec.split(","):
        if part.startswith("IVF"):
            digits = "".join(ch for ch in part[3:] if ch.isdigit())
            needed = max(needed, int(digits or 1))
        if part.startswith("PQ"):
            needed = max(needed, 256)
    return needed


def save_index(index: faiss.Index, path: str | os.PathLike) -> str:
    """Write atomically; returns the file's sha256 (recorded in the store to validate it later)."""
    atomic_write_with(path, lambda tmp: faiss.write_index(index, tmp))
    return sha256_file(path)


def load_index(path: str | os.PathLike, *, dim: int, ntotal: int, sha256: str | None) -> faiss.Index:
    """Read an index file after checking it is the one the store recorded."""
    path = Path(path)
    if not path.is_file():
        raise MedsearchError(f"index file '{path}' is missing: rebuild it with `medsearch index` (the store is intact)")
    if sha256 and sha256_file(path) != sha256:
        raise MedsearchError(f"index file '{path}' does not match the store (checksum differs): "
                             "rebuild it with `medsearch index` on this store")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise MedsearchError(f"cannot read index file '{path}' ({_first_line(exc)}): rebuild it with `medsearch index`") from None
    if index.d != dim or index.ntotal != ntotal:
        raise MedsearchError(f"index file '{path}' holds {index.ntotal} vectors of dim {index.d}, the store expects "
                             f"{ntotal} of dim {dim}: rebuild it with `medsearch index`")
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and store row ids of the ``k`` nearest neighbours of each query (-1 pads)."""
    k = max(1, min(k, index.ntotal))
    sims, ids = index.search(normalize(queries), k)
    return sims, ids


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]
