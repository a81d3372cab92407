"""Compaction of a format-2 store. Two kinds:
- ``merge_tail`` (after every commit): when more than MAX_TAIL small segments sit at the newest end, merge them
  into one, later entries winning; row numbers do not change, so the FAISS index is untouched.
- ``compact_rows`` (``medsearch compact``, or ``index`` when much is dead): rewrite the whole store without the
  removed rows and without superseded entries. Rows are renumbered, so the caller first saves each index in the
  new numbering under a new file name, and the rewritten store records it: store and index change together, at
  the one rename of the manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .manifest import Manifest, write_manifest
from .segmented import MAX_TAIL, SEGMENT_BYTES, _write, rebase, remove_unlisted, write_whole
from .segments import ModelPart, RowPart, SegmentData, SegmentFile

__all__ = ["merge_tail", "compact_rows", "dead_entries"]


def merge_tail(data, directory: Path) -> bool:
    """Merge the small segments at the newest end into one when there are more than MAX_TAIL of them."""
    o = data.origin
    segments, total, count = o.manifest.segments, 0, 0
    for entry in reversed(segments):
        if total + entry.bytes > SEGMENT_BYTES:
            break
        total += entry.bytes
        count += 1
    if count <= MAX_TAIL:
        return False
    first = len(segments) - count
    merged = _merged(data, o.files[first:], segments[first:])
    entry = _write(directory, o.manifest.next_segment_name(), merged)
    manifest = Manifest(generation=o.manifest.generation + 1, n_rows=o.manifest.n_rows, attrs=o.manifest.attrs,
                        models=o.manifest.models, segments=segments[:first] + [entry])
    write_manifest(directory, manifest)
    remove_unlisted(directory, manifest)
    rebase(data, directory)
    return True


def _merged(data, files: list[SegmentFile], entries) -> SegmentData:
    """One segment with every entry of ``files`` (oldest first), the newest entry of each row winning."""
    multilabel, n_labels = data.task == "multilabel", len(data.label_names)
    out = SegmentData()
    parts = [p for p in (f.rows(multilabel, n_labels) for f in files) if p is not None]
    if parts:
        rows, pick = _newest(np.concatenate([p.row for p in parts]))

        def strings(name):
            values = [getattr(p, name) for p in parts]
            if values[0] is None:
                return None
            flat = [v for vs in values for v in vs]
            return [flat[i] for i in pick.tolist()]

        out.rows = RowPart(row=rows, id=strings("id"), source=strings("source"),
                           label=np.concatenate([p.label for p in parts])[pick],
                           removed=np.concatenate([p.removed for p in parts])[pick],
                           group=strings("group"), split=strings("split"), sha256=strings("sha256"),
                           file_stat=None if parts[0].file_stat is None else
                           np.concatenate([p.file_stat for p in parts])[pick],
                           header=None if parts[0].header is None else
                           {name: [v for p in parts for v in p.header[name]] for name in parts[0].header})
        if out.rows.header is not None:
            out.rows.header = {name: [v[i] for i in pick.tolist()] for name, v in out.rows.header.items()}
    for key, m in data.models.items():
        got = [(f, f.model(key, m.dim)) for f in files]
        got = [(f, g) for f, g in got if g is not None]
        if not got:
            continue
        rows, pick = _newest(np.concatenate([g[0] for _, g in got]))
        emb = np.concatenate([f.embeddings(key, np.arange(g[0].size)) for f, g in got])[pick]
        reason = [r for _, g in got for r in g[2]]
        out.models[key] = ModelPart(row=rows, embedding=emb, state=np.concatenate([g[1] for _, g in got])[pick],
                                    reason=[reason[i] for i in pick.tolist()])
    return out


def _newest(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct rows, and for each the index of its last occurrence in ``rows``."""
    uniq, first_from_end = np.unique(rows[::-1], return_index=True)
    return uniq, rows.size - 1 - first_from_end


def dead_entries(data) -> int:
    """Entries the segments hold that no read uses: removed rows and superseded versions of rows."""
    o = data.origin
    if o is None:
        return 0
    row_entries = sum(s.rows for s in o.manifest.segments)
    model_entries = sum(sum(s.models.values()) for s in o.manifest.segments)
    live_models = sum(int((m.state != 0).sum()) for m in data.models.values())
    removed = int(data.is_removed().sum())
    return max(0, row_entries - len(data)) + max(0, model_entries - live_models) + removed


def compact_rows(data, directory: Path, index_attrs: dict[str, dict] | None = None) -> np.ndarray:
    """Rewrite the store without its removed rows; returns the old row numbers kept, in order (new row i was
    old row ``keep[i]``). Each model's index record is replaced by ``index_attrs[key]`` (an index the caller
    saved in the new row numbers, under a new file name) or dropped."""
    keep = np.flatnonzero(~data.is_removed())
    take = keep.tolist()
    data.ids = [data.ids[r] for r in take]
    data.sources = [data.sources[r] for r in take]
    data.labels = data.labels[keep]
    for name in ("groups", "splits", "sha256"):
        values = getattr(data, name)
        if values is not None:
            setattr(data, name, [values[r] for r in take])
    if data.file_stat is not None:
        data.file_stat = data.file_stat[keep]
    if data.header is not None:
        data.header = data.header.take(take)
    data.removed = None
    for m in data.models.values():
        m.embedding = m.embedding.renumber(keep) if hasattr(m.embedding, "renumber") else m.embedding[keep]
        m.state = m.state[keep]
        m.reason = [m.reason[r] for r in take]
        for attr in [a for a in m.attrs if a.startswith("index_")]:
            del m.attrs[attr]
    for key, attrs in (index_attrs or {}).items():
        data.models[key].attrs.update(attrs)
    write_whole(data, directory)
    return keep
