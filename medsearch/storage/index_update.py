"""Changing an index in place instead of rebuilding it: rows added, rows removed (where the structure can
remove them: Flat, and IVF which keeps store row ids in its lists; HNSW cannot, so its removed rows are left out
at search time until a rebuild), and row numbers renumbered when the store compacts. A sharded index (index_shards) is changed shard by
shard: rows added go to their row range's shard, the last one for new rows."""
from __future__ import annotations

import faiss
import numpy as np

from ..errors import MedsearchError
from .index_build import ADD_CHUNK_ROWS
from .index_shards import add_vectors, is_sharded, shards_of, structure_of
from .index_specs import faiss_inner

RETRAIN_FACTOR = 4    # an IVF index is retrained once it holds this many times the rows it was trained on


def add_to_index(index: faiss.Index, vectors, row_ids, *, bounds=None) -> None:
    """Add ``vectors`` (normalised here, ADD_CHUNK_ROWS at a time) with store row ids ``row_ids``, none of
    which the index may hold already; a sharded index needs its row ``bounds``."""
    ids = np.asarray(row_ids, dtype=np.int64).reshape(-1)
    if ids.size != vectors.shape[0] or np.unique(ids).size != ids.size:
        raise MedsearchError(f"{ids.size} row ids for {vectors.shape[0]} added vectors: they must match and be distinct")
    held = index_row_ids(index)
    if held is not None and np.isin(ids, held).any():
        raise MedsearchError(f"row {int(ids[np.isin(ids, held)][0])} is in the index already: "
                             "rebuild it with `medsearch index`")
    add_vectors(index, vectors, ids, bounds, ADD_CHUNK_ROWS)


def remove_from_index(index: faiss.Index, row_ids) -> bool:
    """Remove the rows ``row_ids`` in place; True when done (Flat, IVF), False when this index cannot (HNSW,
    or an IVF under an id map): then leave them out with ``search(..., exclude_rows=...)`` and rebuild later."""
    shards = shards_of(index)
    if not all(_removable(s) for s in shards):
        return False
    ids = np.unique(np.asarray(row_ids, dtype=np.int64))
    if ids.size:
        for shard in shards:
            shard.remove_ids(faiss.IDSelectorBatch(ids))
        if is_sharded(index):
            index.syncWithSubIndexes()
    return True


def needs_retrain(index: faiss.Index, trained_rows: int, ntotal: int, factor: float = RETRAIN_FACTOR) -> bool:
    """Whether an IVF/PQ index trained on ``trained_rows`` rows should be rebuilt now that it holds ``ntotal``:
    its lists and codebooks were learnt from data ``factor`` times smaller. Never for Flat or HNSW."""
    try:
        faiss.extract_index_ivf(structure_of(index))
    except RuntimeError:
        return False
    return ntotal > factor * max(1, trained_rows)


def renumber_index(index: faiss.Index, old_to_new) -> bool:
    """Give each row id r the id ``old_to_new[r]`` after the store compacted; True when done in place. False
    (index unchanged) when a row still in the index has no new number (-1 or out of range: it should have
    been removed, e.g. HNSW) or the structure cannot be renumbered: then rebuild it. A sharded index is
    renumbered shard by shard once every shard is known to allow it."""
    mapping = np.asarray(old_to_new, dtype=np.int64)
    if is_sharded(index):
        shards = shards_of(index)
        return all(_can_renumber(s, mapping) for s in shards) and all(renumber_index(s, mapping) for s in shards)
    old = index_row_ids(index)
    if old is None or (old.size and (old.min() < 0 or old.max() >= mapping.size)):
        return False
    new = mapping[old]
    if (new < 0).any() or np.unique(new).size != new.size:
        return False
    if isinstance(index, faiss.IndexIDMap):
        if not isinstance(index, faiss.IndexIDMap2):
            return False
        faiss.copy_array_to_vector(new, index.id_map)
        index.construct_rev_map()
        return True
    invlists = faiss.extract_index_ivf(index).invlists
    for lst in range(invlists.nlist):
        size = invlists.list_size(lst)
        if size:
            ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size)
            ids[:] = mapping[ids]
    return True


def _can_renumber(index, mapping: np.ndarray) -> bool:
    old = index_row_ids(index)
    if old is None or (old.size and (old.min() < 0 or old.max() >= mapping.size)):
        return False
    new = mapping[old]
    return not (new < 0).any() and (not isinstance(index, faiss.IndexIDMap) or isinstance(index, faiss.IndexIDMap2))


def index_row_ids(index: faiss.Index) -> np.ndarray | None:
    """Every store row id the index holds (IndexIDMap2, or IVF with plain lists; every shard's when sharded);
    None otherwise."""
    if is_sharded(index):
        parts = [index_row_ids(s) for s in shards_of(index)]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = _native_ivf(index)
    if ivf is None:
        return None
    invlists = ivf.invlists
    parts = [faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
             for lst in range(invlists.nlist) if invlists.list_size(lst)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _native_ivf(index):
    """The IVF of an index that keeps store row ids in its lists, in memory and without a direct map; else None."""
    if isinstance(index, faiss.IndexIDMap):
        return None
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    plain = isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.ArrayInvertedLists)
    return ivf if plain and ivf.direct_map.type == faiss.DirectMap.NoMap else None


def _removable(index) -> bool:
    if isinstance(index, faiss.IndexIDMap):
        return isinstance(faiss_inner(index), faiss.IndexFlat)
    return _native_ivf(index) is not None
