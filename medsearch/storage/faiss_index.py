"""FAISS index over one model's embeddings: cosine similarity as inner product on L2-normalised vectors,
FAISS ids = store row numbers. Index files are written atomically and checked against the store before use
(size and a cheap fingerprint on every open, the full sha256 on request).

An approximate index says how approximate it is: at build time a sample of stored vectors is held out, the
index is built on the rest, and its search parameters (HNSW's efSearch, IVF's nprobe, and for PQ the depth of
exact re-ranking from the stored vectors) are set to the cheapest that reach the recall target on half of the
held-out rows; the other half measures the recall@10 recorded in the store beside the index.

The work is split by job: index_specs (which index, its size), index_build (streaming build), index_tuning,
index_search (search with recorded parameters, re-ranking, excluded rows), index_update (add, remove,
renumber in place). This module keeps the names the rest of medsearch imports.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import faiss
import numpy as np

from ..errors import MedsearchError
from .atomic import atomic_write_with, sha256_file
from .index_build import TUNING_QUERIES, build_tuned_index, first_line
from .index_search import rerank, search
from .index_shards import structure_of
from .index_specs import (DEFAULT_MAX_INDEX_MEMORY, FLAT, RECALL_K, RECALL_TARGET, IndexQuality, auto_index_type,
                          check_max_memory, check_recall_target, faiss_inner, index_memory_estimate, normalize,
                          resolve_index_type)
from .index_update import RETRAIN_FACTOR, add_to_index, needs_retrain, remove_from_index, renumber_index

__all__ = ["FLAT", "RECALL_TARGET", "RECALL_K", "DEFAULT_MAX_INDEX_MEMORY", "RETRAIN_FACTOR", "TUNING_QUERIES",
           "IndexQuality", "build_index", "build_tuned_index", "quality_attrs", "save_index", "load_index",
           "index_fingerprint", "search", "rerank", "faiss_inner", "normalize", "resolve_index_type",
           "auto_index_type", "index_memory_estimate", "check_recall_target", "check_max_memory", "add_to_index",
           "remove_from_index", "needs_retrain", "renumber_index"]

FINGERPRINT_EDGE = 1 << 20     # bytes hashed at each end of the file
FINGERPRINT_BLOCKS = 16        # further blocks spread evenly between the ends
FINGERPRINT_BLOCK = 1 << 16


def build_index(embedding, row_ids, index_type: str = FLAT) -> faiss.Index:
    """Build an index of ``embedding`` (normalised here) with ids ``row_ids``. ``index_type``: 'flat', 'auto'
    or any FAISS index-factory string (e.g. 'HNSW32', 'IVF256,Flat', 'IVF1024,PQ32'); approximate ones are
    tuned to RECALL_TARGET (build_tuned_index)."""
    return build_tuned_index(embedding, row_ids, index_type)[0]


def quality_attrs(quality: IndexQuality, index: faiss.Index, *, file_size: int | None = None) -> dict:
    """The store attributes that record an index's structure, how exact its answers are and what it costs:
    bytes per vector from ``file_size`` (the saved file) when given, else estimated."""
    n = int(index.ntotal)
    if file_size is not None:
        per_vector = file_size / max(1, n)
    else:
        per_vector = index_memory_estimate(quality.spec, n, index.d) / max(1, n)
    return {"index_factory": type(structure_of(index)).__name__, "index_spec": quality.spec,
            "index_exact": bool(quality.exact), "index_recall_at_10": float(quality.recall_at_10),
            "index_recall_target": float(quality.recall_target),
            "index_search_params": json.dumps(quality.search_params, sort_keys=True),
            "index_tuning_queries": int(quality.queries), "index_trained_rows": int(quality.trained_rows),
            "index_bytes_per_vector": round(float(per_vector), 1)}


def save_index(index: faiss.Index, path: str | os.PathLike) -> str:
    """Write atomically; returns the file's sha256. Record it with the file's size and index_fingerprint(path)."""
    atomic_write_with(path, lambda tmp: faiss.write_index(index, tmp))
    return sha256_file(path)


def index_fingerprint(path: str | os.PathLike) -> str:
    """A cheap content fingerprint: sha256 over the size, the first and last MiB and FINGERPRINT_BLOCKS blocks
    spread between them. It tells a swapped or truncated file without reading a multi-GB one."""
    size = os.path.getsize(path)
    h = hashlib.sha256(size.to_bytes(8, "little"))
    spots = [0, max(0, size - FINGERPRINT_EDGE)]
    middle = np.linspace(FINGERPRINT_EDGE, max(FINGERPRINT_EDGE, size - FINGERPRINT_EDGE - FINGERPRINT_BLOCK),
                         FINGERPRINT_BLOCKS).astype(np.int64)
    with open(path, "rb") as f:
        for i, offset in enumerate(spots + [int(o) for o in middle]):
            f.seek(offset)
            h.update(f.read(FINGERPRINT_EDGE if i < 2 else FINGERPRINT_BLOCK))
    return "fp1:" + h.hexdigest()


def load_index(path: str | os.PathLike, *, dim: int, ntotal: int, fingerprint: str | None = None,
               size: int | None = None, sha256: str | None = None, verify: bool = False,
               mmap: bool = False) -> faiss.Index:
    """Read an index file after checking it is the one the store recorded: its ``size`` and ``fingerprint``
    (cheap); the full ``sha256`` only with ``verify`` or when neither cheap record exists (older stores).
    ``mmap``: map the file's codes, vectors and inverted lists (FAISS's IO_FLAG_MMAP_IFC) so that the OS pages
    them from disk; such an index can only be searched (FAISS aborts the process on an add or a removal)."""
    path = Path(path)
    if not path.is_file():
        raise MedsearchError(f"index file '{path}' is missing: rebuild it with `medsearch index` (the store is intact)")
    differs = (size is not None and path.stat().st_size != size) or \
        (fingerprint is not None and index_fingerprint(path) != fingerprint)
    full = sha256 is not None and (verify or (size is None and fingerprint is None))
    if differs or (full and sha256_file(path) != sha256):
        raise MedsearchError(f"index file '{path}' does not match the store (size or checksum differs): "
                             "rebuild it with `medsearch index` on this store")
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    except RuntimeError as exc:
        raise MedsearchError(f"cannot read index file '{path}' ({first_line(exc)}): rebuild it with `medsearch index`") from None
    if index.d != dim or index.ntotal != ntotal:
        raise MedsearchError(f"index file '{path}' holds {index.ntotal} vectors of dim {index.d}, the store expects "
                             f"{ntotal} of dim {dim}: rebuild it with `medsearch index`")
    return index
