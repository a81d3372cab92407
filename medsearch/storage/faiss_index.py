"""FAISS index over one model's embeddings: cosine similarity as inner product on L2-normalised vectors,
FAISS ids = store row numbers. Index files are written atomically and checked against the store before use."""
from __future__ import annotations

import math
import os
from pathlib import Path

import faiss
import numpy as np

from .atomic import atomic_write_with, sha256_file
from ..errors import MedsearchError

FLAT = "Flat"


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
    or any FAISS index-factory string (e.g. 'HNSW32', 'IVF256,Flat', 'IVF1024,PQ32')."""
    x = normalize(embedding)
    n, dim = x.shape
    spec = auto_index_type(n, dim) if index_type.lower() == "auto" else (FLAT if index_type.lower() == "flat" else index_type)
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
    index.add_with_ids(x, np.asarray(row_ids, dtype=np.int64))
    return index


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
