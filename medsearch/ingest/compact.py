"""`medsearch compact DIR`: rewrite a store without what no read uses any more: removed rows (their ids, file
names and embeddings leave the files, as withdrawn consent requires), superseded versions of rows, and many
small segments. Rows are renumbered, so each model's FAISS index is renumbered in place (Flat, IVF: after its
removed rows were taken out) or rebuilt from the stored vectors (HNSW, which cannot drop rows), and saved under
a new file name (a sharded index: each shard, row bounds renumbered too) before the store is swapped in. A format-1
store is upgraded to format 2 on the way. ``index`` runs it by itself when dead entries pass COMPACT_SHARE.
"""
from __future__ import annotations

import glob
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..results import JsonResult
from ..storage.compaction import compact_rows, dead_entries
from ..storage.lock import WriterLock
from ..storage.store import StoreData, read_store
from .log import log
from ..storage.shard_files import listed_files
from .model_index import index_for_compaction

COMPACT_SHARE = 0.10  # `index` compacts when dead entries exceed this share of the store's rows


@dataclass
class CompactSummary(JsonResult):
    """What a compaction did: rows before and after, removed rows dropped, segments before and after, and per
    model whether its index was renumbered in place or rebuilt."""

    store: str
    rows_before: int
    rows_after: int
    removed_rows_dropped: int
    segments_before: int
    segments_after: int
    seconds: float
    indexes: dict[str, str] = field(default_factory=dict)


def compact(index_dir: str) -> CompactSummary:
    """Compact the store in ``index_dir`` under the writer lock (see the module docstring)."""
    with WriterLock(index_dir):
        return compact_open_store(Path(index_dir), read_store(index_dir))


def needs_compaction(data: StoreData) -> bool:
    return dead_entries(data) > COMPACT_SHARE * max(1, len(data))


def compact_open_store(out_dir: Path, data: StoreData) -> CompactSummary:
    """Compact ``data`` (read from ``out_dir``, whose writer lock the caller holds). Each index is first saved
    in the new row numbers under a new file name; then one manifest swap switches store and indexes together;
    then the old index files go. Killed at any moment, the store answers as before or as after."""
    t0 = time.perf_counter()
    before, segments_before = len(data), len(data.origin.manifest.segments) if data.origin else 1
    removed = int(data.is_removed().sum())
    generation = (data.origin.manifest.generation if data.origin else 0) + 1
    log(f"compacting '{out_dir}': {before} rows, {removed} removed, {segments_before} segments")
    remove_leftover_index_files(out_dir, data)
    keep = np.flatnonzero(~data.is_removed())
    old_to_new = np.full(before, -1, dtype=np.int64)
    old_to_new[keep] = np.arange(keep.size)
    old_files = set().union(*(listed_files(m.attrs) for m in data.models.values()))
    outcome, records = {}, {}
    for key in data.models:
        outcome[key], records[key] = index_for_compaction(out_dir, data, key, old_to_new,
                                                          f"{key}.g{generation}.faiss")
    compact_rows(data, out_dir, {k: r for k, r in records.items() if r})
    for name in old_files - set().union(*(listed_files(m.attrs) for m in data.models.values())):
        (out_dir / name).unlink(missing_ok=True)
    summary = CompactSummary(store=str(out_dir), rows_before=before, rows_after=len(data), removed_rows_dropped=removed,
                             segments_before=segments_before, segments_after=len(data.origin.manifest.segments),
                             seconds=round(time.perf_counter() - t0, 2), indexes=outcome)
    log(f"compacted: {summary.rows_after} rows in {summary.segments_after} segments, indexes "
        f"{', '.join(f'{k} {v}' for k, v in outcome.items()) or 'none'} ({summary.seconds} s)")
    return summary


def remove_leftover_index_files(out_dir: Path, data: StoreData) -> None:
    """Index files a killed compaction (or a rebuild into another shard count) left behind: ``<key>.faiss``,
    ``<key>.g<N>.faiss`` and their shard files ``....shard-<j>-of-<n>.faiss`` that no model records (saved
    before a manifest swap, or replaced by it), and their temporary files. A file the manifest lists, for any
    model, is never deleted."""
    listed = set().union(*(listed_files(m.attrs) for m in data.models.values()))
    for key in data.models:
        pattern = re.compile(r"\.?" + re.escape(key) + r"(\.g[0-9]+)?(\.shard-[0-9]+-of-[0-9]+)?\.faiss(\.tmp-[0-9]+)?")
        for path in out_dir.glob(f"*{glob.escape(key)}*.faiss*"):
            if pattern.fullmatch(path.name) and path.name not in listed:
                path.unlink(missing_ok=True)
