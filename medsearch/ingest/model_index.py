"""Keep one model's FAISS index in step with its rows after an `index` run: update it in place when it can
(new rows added; removed or re-embedded rows taken out of Flat and IVF indexes), otherwise rebuild and re-tune
it. A rebuild happens when there is no usable index, when its type or tuning options changed, when an HNSW
graph would have to drop rows it cannot delete (other than removed rows, which searches leave out), and when
an approximate index has grown past RETRAIN_FACTOR times the rows it was built (and trained, and tuned) on.

With ``--shards N`` (N > 1) the index is N row-range shard files (storage/shard_files): an update changes and
rewrites only the shards it touches (new rows go to the last shard, which has the highest row numbers);
another shard count rebuilds.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedsearchError
from ..storage.embeddings import RowsView
from ..storage.faiss_index import (RETRAIN_FACTOR, add_to_index, build_tuned_index, index_fingerprint,
                                   quality_attrs, remove_from_index, renumber_index, save_index)
from ..storage.index_shards import renumbered_bounds, shard_bounds, shard_of
from ..storage.index_specs import resolve_index_type
from ..storage.index_update import index_row_ids
from ..storage.shard_files import bounds_of, open_index, save_shards, shard_count, shard_records, stem_of
from ..storage.schema import DEFAULT_MAX_INDEX_MEMORY, RECALL_TARGET
from ..storage.store import ModelData, StoreData
from .log import log, warn

__all__ = ["refresh_index", "index_for_compaction"]

TUNING_ATTRS = ("index_type", "index_recall_target", "index_max_memory")


def refresh_index(out_dir: Path, data: StoreData, key: str, opts, embedded_now: np.ndarray) -> str:
    """Bring model ``key``'s index up to date; returns 'current', 'updated' or 'built'."""
    m = data.models[key]
    usable = m.usable()
    index = _usable_index(out_dir, m, opts)
    if index is not None and _family_changed(m, opts, usable.size):
        log(f"{key}: with {usable.size} rows `{opts.index_type}` means another kind of index than the stored "
            f"{m.attrs.get('index_spec')}: rebuilding it")
        index = None
    if index is None:
        _build(out_dir, m, key, usable, opts)
        return "built"
    held = index_row_ids(index)
    if held is None:
        _build(out_dir, m, key, usable, opts)
        return "built"
    is_usable = np.zeros(len(data), dtype=bool)
    is_usable[usable] = True
    stale = held[~is_usable[held] | np.isin(held, embedded_now)]
    fresh = np.setdiff1d(usable, np.setdiff1d(held, stale))
    only_filtered = (stale.size == int(m.attrs.get("index_filtered", 0)) and data.is_removed()[stale].all()
                     and not np.isin(stale, embedded_now).any())
    if not fresh.size and (not stale.size or only_filtered):
        return "current"
    removed_inside = 0
    if stale.size and not remove_from_index(index, stale):
        if np.isin(stale, embedded_now).any() or not data.is_removed()[stale].all():
            _build(out_dir, m, key, usable, opts)  # an HNSW graph cannot drop rows it must not answer with
            return "built"
        removed_inside = int(stale.size)  # removed rows stay in the graph, left out of every search
    ntotal = int(index.ntotal) + int(fresh.size)
    built_rows = int(m.attrs.get("index_built_rows", m.attrs.get("index_ntotal", 0)) or 0)
    if not m.attrs.get("index_exact", True) and ntotal > RETRAIN_FACTOR * max(1, built_rows):
        log(f"{key}: the index holds {ntotal} rows, over {RETRAIN_FACTOR}x the {built_rows} it was built and tuned "
            "on: rebuilding it")
        _build(out_dir, m, key, usable, opts)
        return "built"
    t0 = time.perf_counter()
    bounds = _grown_bounds(m, len(data))
    add_to_index(index, RowsView(m.embedding, fresh), fresh, bounds=bounds)
    touched = None if bounds is None else \
        set(shard_of(fresh, bounds).tolist()) | set(shard_of(stale if not removed_inside else [], bounds).tolist())
    _save(out_dir, m, key, index, filtered=removed_inside, bounds=bounds, touched=touched)
    log(f"{key}: index updated in place (+{fresh.size} rows, -{stale.size - removed_inside} rows"
        + (f", {removed_inside} removed rows left out of searches until the next rebuild" if removed_inside else "")
        + f", {time.perf_counter() - t0:.1f} s)")
    return "updated"


def index_for_compaction(out_dir: Path, data: StoreData, key: str, old_to_new: np.ndarray,
                         index_file: str) -> tuple[str, dict]:
    """Before a compaction swaps its store in: the model's index in the new row numbers, saved as
    ``index_file`` (a new name: the old file serves readers of the old store until the swap), and the index
    attributes to record with it. Flat and IVF indexes are renumbered in place; others (HNSW, which cannot drop
    removed rows), and a missing or damaged index, are built from the stored vectors. Returns ('renumbered' |
    'rebuilt' | 'none', attributes)."""
    m = data.models[key]
    old = dict(m.attrs)
    if "index_file" not in old:
        return "none", {}
    index, bounds = None, None
    try:
        index = open_index(out_dir, old, dim=m.dim)
        bounds = renumbered_bounds(bounds_of(shard_records(old)), old_to_new) if "index_shards" in old else None
    except MedsearchError as exc:
        warn(f"{exc}; rebuilding it")
        index = None
    held = index_row_ids(index) if index is not None else None
    probe = ModelData(m.embedding, m.state, m.reason, {k: v for k, v in old.items() if k.startswith("index_")})
    if held is not None:
        gone = held[old_to_new[held] < 0]
        if (not gone.size or remove_from_index(index, gone)) and renumber_index(index, old_to_new):
            _save(out_dir, probe, key, index, filtered=0, index_file=index_file, bounds=bounds)
            return "renumbered", probe.attrs
    opts = _Options(old.get("index_type", "auto"), old.get("index_recall_target", RECALL_TARGET),
                    old.get("index_max_memory", DEFAULT_MAX_INDEX_MEMORY), _recorded_shards(old))
    usable = m.usable()
    _build(out_dir, probe, key, usable, opts, row_ids=old_to_new[usable], index_file=index_file,
           n_rows=int((old_to_new >= 0).sum()))
    return "rebuilt", probe.attrs


@dataclass
class _Options:
    """The index options an existing index was made with."""

    index_type: str
    recall_target: float
    max_memory: int
    shards: int = 1


def _recorded_shards(attrs: dict) -> int:
    try:
        return shard_count(attrs)
    except (ValueError, TypeError):
        return 1


def _grown_bounds(m: ModelData, n_rows: int):
    """The recorded shards' row bounds, the last one moved to ``n_rows`` (rows added since); None unsharded."""
    if "index_shards" not in m.attrs:
        return None
    bounds = bounds_of(shard_records(m.attrs))
    bounds[-1] = max(int(bounds[-1]), n_rows)
    return bounds


def _family_changed(m: ModelData, opts, n: int) -> bool:
    """Whether `auto` now resolves to another kind of index (Flat, HNSW, IVF-PQ...) than the stored one, e.g. a
    store grown past exact search's size or the memory budget; sizes within a kind (nlist) do not count."""
    if str(opts.index_type).lower() != "auto" or not m.attrs.get("index_spec"):
        return False
    now = resolve_index_type("auto", n, m.dim, opts.max_memory)
    return re.sub(r"\d+", "", now) != re.sub(r"\d+", "", m.attrs["index_spec"])


def _usable_index(out_dir: Path, m: ModelData, opts):
    """The model's saved index if it was made with today's options and is intact; None otherwise."""
    a = m.attrs
    wanted = {"index_type": opts.index_type, "index_recall_target": float(opts.recall_target),
              "index_max_memory": int(opts.max_memory)}
    if "index_file" not in a or any(a.get(k, _default(k)) != v for k, v in wanted.items()):
        return None
    shards = getattr(opts, "shards", 1)
    if _recorded_shards(a) != shards:
        log(f"the index is recorded as {_recorded_shards(a)} shard(s), --shards asks {shards}: rebuilding it")
        return None
    try:
        return open_index(out_dir, a, dim=m.dim)
    except MedsearchError as exc:
        warn(f"{exc}; rebuilding it")
        return None


def _default(attr: str):
    """What an index recorded before an attribute existed was made with."""
    return {"index_recall_target": RECALL_TARGET, "index_max_memory": DEFAULT_MAX_INDEX_MEMORY}.get(attr)


def _build(out_dir: Path, m: ModelData, key: str, usable: np.ndarray, opts, *, row_ids=None,
           index_file: str | None = None, n_rows: int | None = None) -> None:
    """Build, tune and save the model's index of rows ``usable`` (under FAISS ids ``row_ids``, default the
    rows themselves, of a store of ``n_rows`` rows), in ``opts.shards`` row-range shards; record it, and how
    exact its answers are, in the model's attributes."""
    ids = usable if row_ids is None else row_ids
    index_file = index_file or m.attrs.get("index_file")  # a rebuild keeps the file name the store records
    shards = int(getattr(opts, "shards", 1))
    bounds = None if shards == 1 else shard_bounds(ids, m.state.size if n_rows is None else n_rows, shards)
    index, quality = build_tuned_index(RowsView(m.embedding, usable), ids, opts.index_type,
                                       recall_target=opts.recall_target, max_memory=opts.max_memory,
                                       bounds=bounds)
    for attr in [a for a in m.attrs if a.startswith("index_")]:
        del m.attrs[attr]
    m.attrs.update({"index_type": opts.index_type, "index_max_memory": int(opts.max_memory),
                    "index_built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "index_built_rows": int(usable.size)})
    m.attrs.update(quality_attrs(quality, index))
    _save(out_dir, m, key, index, filtered=0, index_file=index_file, bounds=bounds)
    if quality.exact:
        return
    params = ", ".join(f"{k} {v}" for k, v in quality.search_params.items()) or "no search parameter to tune"
    text = (f"{key}: approximate index ({m.attrs['index_factory']}, {quality.spec}): recall@10 "
            f"{quality.recall_at_10:.3f} on {quality.queries} held-out rows ({params})")
    if quality.recall_at_10 >= quality.recall_target:
        log(text)
    else:
        warn(f"{text}, below the {quality.recall_target} target: `medsearch query --exact` searches exactly; or "
             "rebuild with another --index-type (flat, or HNSW32) or a larger --max-memory")


def _save(out_dir: Path, m: ModelData, key: str, index, *, filtered: int, index_file: str | None = None,
          bounds=None, touched=None) -> None:
    """Write the index (one file, or with ``bounds`` one file per shard, only the ``touched`` ones when the
    shard files stay the same) and record it in the model's attributes."""
    index_file = index_file or m.attrs.get("index_file") or f"{key}.faiss"
    if bounds is not None:
        previous = shard_records(m.attrs) if "index_shards" in m.attrs and touched is not None else None
        m.attrs.update(save_shards(out_dir, index, bounds, stem_of(index_file), previous=previous, touched=touched))
        m.attrs["index_filtered"] = int(filtered)
        return
    m.attrs.pop("index_shards", None)
    index_file = f"{stem_of(index_file)}.faiss"
    path = out_dir / index_file
    sha = save_index(index, path)
    size = path.stat().st_size
    m.attrs.update({"index_file": index_file, "index_sha256": sha, "index_ntotal": int(index.ntotal),
                    "index_size": int(size), "index_fingerprint": index_fingerprint(path),
                    "index_filtered": int(filtered),
                    "index_bytes_per_vector": round(size / max(1, int(index.ntotal)), 1)})
