"""What an index is: the FAISS factory strings medsearch builds, which one `auto` picks for a store's size and
memory budget, about how many bytes each holds in memory, and the checks of the options that choose them."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import faiss
import numpy as np

from ..errors import MedsearchError
from .schema import DEFAULT_MAX_INDEX_MEMORY, RECALL_TARGET

FLAT = "Flat"
RECALL_K = 10
AUTO_FLAT_MAX_ROWS = 100_000      # exact search while it is fast enough
HNSW_M = 32
PQ_MAX_BYTES = 64                 # PQ code bytes per vector `auto` starts from (8-bit codes)
NLIST_MAX = 4096                  # inverted lists; k-means over more costs too much on 2 cores at 1M rows
HNSW_QUANTIZER_MIN_NLIST = 1024   # from here the coarse centroids are searched by a graph, not one by one
ID_MAP_BYTES = 48                 # per vector in an IndexIDMap2: the id (8) and its reverse-map entry


@dataclass
class IndexQuality:
    """How exact an index's answers are: ``recall_at_10`` (1.0 for exact search) measured on ``queries``
    held-out stored vectors at build time, at the search parameters in ``search_params`` (e.g.
    {'efSearch': 64} or {'nprobe': 32, 'rerank': 100}); ``spec`` is the FAISS factory string built,
    ``trained_rows`` the rows an IVF/PQ index was trained for (0 when it needs no training)."""

    exact: bool
    recall_at_10: float = 1.0
    search_params: dict = field(default_factory=dict)
    queries: int = 0
    spec: str = FLAT
    recall_target: float = RECALL_TARGET
    trained_rows: int = 0


def normalize(x) -> np.ndarray:
    """Float32 copy with unit-length rows (zero rows stay zero)."""
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def faiss_inner(index: faiss.Index) -> faiss.Index:
    """The index structure under the id map (e.g. an IndexHNSWFlat or IndexIVFPQ), as its own class."""
    return faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)


def check_recall_target(target) -> float:
    """A recall@10 target in (0, 1], or a one-line error naming the flag."""
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not 0 < target <= 1:
        raise MedsearchError(f"--recall-target must be a number in (0, 1], e.g. 0.95 or 0.99; got {target!r}")
    return float(target)


def check_max_memory(max_memory) -> int:
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)) or max_memory <= 0:
        raise MedsearchError(f"--max-memory must be a positive number of bytes; got {max_memory!r}")
    return int(max_memory)


def ivf_nlist(n: int) -> int:
    """Inverted lists for n rows: about 4 sqrt(n), at most NLIST_MAX, and at least 39 training rows per list."""
    return max(1, min(NLIST_MAX, int(4 * math.sqrt(n)), n // 39))


def auto_index_type(n: int, dim: int, max_memory_bytes: int = DEFAULT_MAX_INDEX_MEMORY) -> str:
    """Exact search (Flat) up to AUTO_FLAT_MAX_ROWS rows if it fits ``max_memory_bytes``; else HNSW32 (the
    vectors and a graph) if that fits; else IVF-PQ with the most code bytes per vector (up to PQ_MAX_BYTES) that
    fit, searched with exact re-ranking of its candidates from the stored vectors."""
    budget = check_max_memory(max_memory_bytes)
    if n <= AUTO_FLAT_MAX_ROWS and index_memory_estimate(FLAT, n, dim) <= budget:
        return FLAT
    if index_memory_estimate(f"HNSW{HNSW_M}", n, dim) <= budget:
        return f"HNSW{HNSW_M}"
    nlist = ivf_nlist(n)
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_MIN_NLIST else f"IVF{nlist}"
    spec = ""
    for m in sorted((m for m in range(1, min(PQ_MAX_BYTES, dim) + 1) if dim % m == 0), reverse=True):
        spec = f"{coarse},PQ{m}"
        if index_memory_estimate(spec, n, dim) <= budget:
            return spec
    raise MedsearchError(f"no index of {n} vectors of dim {dim} fits --max-memory {budget} bytes (the smallest, "
                         f"{spec}, needs about {index_memory_estimate(spec, n, dim)}): raise --max-memory")


def resolve_index_type(index_type: str, n: int, dim: int, max_memory: int = DEFAULT_MAX_INDEX_MEMORY) -> str:
    """The FAISS factory string that ``index_type`` ('flat', 'auto' or a factory string) means for n x dim."""
    if index_type.lower() == "auto":
        return auto_index_type(n, dim, max_memory)
    return FLAT if index_type.lower() == "flat" else index_type


_IVF = re.compile(r"IVF(\d+)(?:_HNSW(\d+))?,(?:PQ(\d+)(?:x(\d+))?|SQ(\d+)|(Flat))$")
_HNSW = re.compile(r"HNSW(\d+)(?:,Flat)?$")


def index_memory_estimate(spec: str, n: int, dim: int) -> int:
    """About how many bytes an index of ``spec`` over n vectors of dim ``dim`` holds in memory (and on disk).
    Factory strings it does not know are counted like Flat."""
    hnsw, ivf = _HNSW.match(spec), _IVF.match(spec)
    if hnsw:
        return int(n * (4 * dim + _graph_bytes(int(hnsw.group(1))) + ID_MAP_BYTES))
    if not ivf:
        return int(n * (4 * dim + ID_MAP_BYTES))
    nlist, graph_m, pq_m, pq_bits, sq_bits, _ = ivf.groups()
    fixed = nlist_bytes = int(nlist) * 4 * dim + (int(nlist) * _graph_bytes(int(graph_m)) if graph_m else 0)
    if pq_m:
        bits = int(pq_bits or 8)
        code = math.ceil(int(pq_m) * bits / 8)
        fixed = nlist_bytes + (1 << bits) * 4 * dim
    else:
        code = math.ceil(dim * int(sq_bits) / 8) if sq_bits else 4 * dim
    return int(fixed + n * (code + 8))


def _graph_bytes(m: int) -> float:
    """HNSW links per vector: 2m int32 on level 0, a few more above, its level and offset."""
    return 8 * m * 1.05 + 12
