"""Bring a store up to date with its dataset before any embedding: a store belongs to one dataset (refused
otherwise, or followed to a new place with ``moved_from``); new rows are appended, corrected labels taken
over, rows whose file changed on disk (by content fingerprint) go back to pending, and rows whose image is
gone from the dataset are removed: out of every search at once, out of the files at the next compaction.
Every change is marked (``touch``) so that the commit writes only the rows it concerns."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..display import printable
from ..errors import MedsearchError
from ..storage.row_headers import merge_headers
from ..storage.schema import PENDING, REMOVED_REASON
from ..storage.store import StoreData, commit_store, read_store, store_exists
from .layouts import Dataset
from .fingerprints import fingerprint
from .index_options import IndexOptions
from .index_summary import Changes
from .log import log


def open_store(out_dir: Path, ds: Dataset, moved_from: str | None) -> StoreData:
    """The store in ``out_dir`` if it is this dataset's (a new empty one if there is none); refuses another."""
    if not store_exists(out_dir):
        if moved_from:
            raise MedsearchError(f"--moved-from is for an existing store, and '{out_dir}' holds none: drop --moved-from")
        return StoreData([], [], _empty_labels(ds), ds.label_names, ds.task,
                         groups=[] if ds.groups is not None else None, splits=[] if ds.splits is not None else None,
                         attrs={"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    data = read_store(out_dir)
    if data.task != ds.task or data.label_names != ds.label_names:
        raise MedsearchError(f"the store in '{out_dir}' holds a different dataset (task {data.task}, labels "
                             f"{printable(', '.join(data.label_names))[:80]}): index into another --out folder")
    _check_same_dataset(data, ds, out_dir, moved_from)
    return data


def reconcile(out_dir: Path, data: StoreData, ds: Dataset, options: IndexOptions) -> tuple[np.ndarray, Changes]:
    """Bring the store's rows, labels and content fingerprints up to date with ``ds`` and map dataset index ->
    store row. Returns (row_of, what changed); the store is written when anything changed."""
    moved_from = options.moved_from
    old_root = data.attrs.get("dataset_root") if moved_from else None
    data.attrs.update({"dataset_root": ds.root, "layout": ds.layout, "manifest": ds.manifest or ""})
    known = {rid: r for r, rid in enumerate(data.ids)}
    new = [i for i, rid in enumerate(ds.ids) if rid not in known]
    if new:
        _append_rows(data, ds, new)
        known = {rid: r for r, rid in enumerate(data.ids)}
    row_of = np.array([known[rid] for rid in ds.ids], dtype=np.int64)
    relabelled = _update_row_fields(data, ds, row_of) + merge_headers(data, ds, row_of, fresh=row_of[new])
    gone = _remove_gone_rows(data, row_of)
    changed_on_disk, content_dirty = _update_fingerprints(data, ds, row_of, workers=options.workers,
                                                          progress=options.progress)
    changes = Changes(moved_from=old_root, new_rows=len(new), relabelled=relabelled, gone_from_dataset=gone,
                      changed_on_disk=changed_on_disk)
    if relabelled:
        log(f"  {relabelled} stored rows have new labels, groups or splits in the dataset: updated")
    if changed_on_disk:
        log(f"  {changed_on_disk} stored images changed on disk since they were embedded: re-embedding them")
    if gone:
        log(f"  {gone} stored rows are no longer in the dataset: removed (gone from search now, from the files "
            "at the next compaction)")
    if new or moved_from or content_dirty or relabelled or gone:
        commit_store(data, out_dir)
    return row_of, changes


def _remove_gone_rows(data: StoreData, row_of: np.ndarray) -> int:
    """Mark the rows not in the dataset any more as removed (and rows back in it as not removed): their
    embeddings are forgotten in every model, so no search returns them; returns how many were removed now."""
    gone = np.ones(len(data), dtype=bool)
    gone[row_of] = False
    was = data.is_removed()
    newly, back = np.flatnonzero(gone & ~was), np.flatnonzero(~gone & was)
    if newly.size or back.size:
        data.removed = gone
        data.touch(newly)
        data.touch(back)
        for m in data.models.values():
            m.state[newly] = PENDING
            m.embedding[newly] = 0
            for r in newly.tolist():
                m.reason[r] = REMOVED_REASON
            m.touch(newly)
        if not gone.any():
            data.removed = None
    return int(newly.size)


def _check_same_dataset(data: StoreData, ds: Dataset, out_dir: Path, moved_from: str | None) -> None:
    """A store describes one dataset (root, layout, manifest). Another one is refused, unless ``moved_from``
    names the stored root: the same dataset moved, whose files are then verified by their fingerprints."""
    root, layout = data.attrs.get("dataset_root") or "", data.attrs.get("layout") or ""
    manifest = data.attrs.get("manifest") or ""
    if not root:  # a store written before roots were recorded has nothing to compare
        return
    # the stored root is resolved (links followed); the old place may be gone, so its resolved and its plain
    # absolute form both count
    said = {os.path.realpath(moved_from), os.path.normpath(os.path.abspath(moved_from))} if moved_from else set()
    old = os.path.normpath(root) if os.path.normpath(root) in said else None
    if moved_from and old is None:
        raise MedsearchError(f"--moved-from '{printable(moved_from)}' is not where the store's dataset was "
                             f"('{printable(root)}'): give that path, or index into another --out folder")
    base = old or ds.root
    same_manifest = (os.path.relpath(manifest, root) == os.path.relpath(ds.manifest, base)) if manifest and ds.manifest \
        else manifest == (ds.manifest or "")
    if layout != ds.layout or not same_manifest or (not old and root != ds.root):
        what = (f"'{printable(ds.root)}'" + (f" (manifest {printable(ds.manifest)})" if ds.manifest else ""))
        was = (f"'{printable(root)}'" + (f" (manifest {printable(manifest)})" if manifest else ""))
        raise MedsearchError(f"the store in '{printable(str(out_dir))}' belongs to the dataset {was}, not {what}: "
                             f"index this one into another --out folder, or pass --moved-from '{printable(root)}' "
                             "if it is the same dataset moved")


def _check_kept(attr: str, have, got) -> None:
    """The dataset must still have groups (splits) if and only if the store was built with them."""
    if (have is None) != (got is None):
        raise MedsearchError(f"the dataset now {'has' if got else 'lacks'} {attr} the store was built "
                             f"{'without' if got else 'with'}: index into a new --out folder")


def _update_row_fields(data: StoreData, ds: Dataset, row_of: np.ndarray) -> int:
    """Take labels, groups and splits of the dataset's rows from the dataset (the manifest may have been
    corrected); returns how many stored rows changed."""
    changed = np.zeros(len(data), dtype=bool)
    diff = (data.labels[row_of] != ds.labels).reshape(len(row_of), -1).any(axis=1)
    changed[row_of[diff]] = True
    data.labels[row_of] = ds.labels
    for attr in ("groups", "splits"):
        have, got = getattr(data, attr), getattr(ds, attr)
        _check_kept(attr, have, got)
        for r, value in zip(row_of, got or ()):
            if have[r] != value:
                have[r] = value
                changed[r] = True
    data.touch(np.flatnonzero(changed))
    return int(changed.sum())


def _update_fingerprints(data: StoreData, ds: Dataset, row_of: np.ndarray, *, workers: int,
                         progress: bool) -> tuple[int, bool]:
    """Record each row's content fingerprint; a row whose file now differs from what was embedded goes back to
    pending in every model (its old embeddings describe another image). Returns (rows changed on disk, store
    changed)."""
    n = len(data)
    first = data.sha256 is None
    sha = list(data.sha256 or [])
    stat = data.file_stat if data.file_stat is not None else np.empty((0, 2), np.int64)
    data.sha256 = sha + [""] * (n - len(sha))
    data.file_stat = np.vstack([stat, np.full((n - len(stat), 2), -1, np.int64)]).astype(np.int64)
    known = [data.sha256[r] for r in row_of]
    shas, stats = fingerprint(ds, range(len(ds)), known_sha=known, known_stat=data.file_stat[row_of],
                              workers=workers, progress=progress)
    changed_rows = [int(r) for r, old, new in zip(row_of, known, shas) if old and new and old != new]
    dirty = False
    for r, old, new, st in zip(row_of, known, shas, stats):
        if (new or not old) and (new != old or (data.file_stat[r] != st).any()):
            data.sha256[r], data.file_stat[r] = new, st  # an unreadable file keeps what was embedded
            data.touch(r)
            dirty = True
    _back_to_pending(data, changed_rows)
    if first and n:
        log(f"  recorded the content fingerprints (sha256) of {sum(1 for s in shas if s)} images")
    return len(changed_rows), dirty


def _back_to_pending(data: StoreData, rows: list[int]) -> None:
    """Forget every model's embedding of ``rows`` (their files changed), and the index files that hold them."""
    for m in data.models.values():
        m.state[rows] = PENDING
        m.embedding[rows] = 0
        for r in rows:
            m.reason[r] = ""
        m.touch(rows)
        if rows:  # its index holds the old images' vectors under these rows: no longer this store's index
            for attr in [a for a in m.attrs if a.startswith("index_")]:
                del m.attrs[attr]


def _empty_labels(ds: Dataset) -> np.ndarray:
    return np.zeros((0,) + ds.labels.shape[1:], dtype=ds.labels.dtype)


def _append_rows(data: StoreData, ds: Dataset, new: list[int]) -> None:
    n_old = len(data)
    data.touch(range(n_old, n_old + len(new)))
    if data.removed is not None:
        data.removed = np.concatenate([data.removed, np.zeros(len(new), dtype=bool)])
    data.ids += [ds.ids[i] for i in new]
    data.sources += [ds.sources[i] for i in new]
    data.labels = np.concatenate([data.labels, ds.labels[new]])
    for attr in ("groups", "splits"):
        have, got = getattr(data, attr), getattr(ds, attr)
        if n_old:
            _check_kept(attr, have, got)
        setattr(data, attr, (have or []) + [got[i] for i in new] if got is not None else None)
    for m in data.models.values():
        extra = len(new)
        if isinstance(m.embedding, np.ndarray):
            m.embedding = np.concatenate([m.embedding, np.zeros((extra, m.dim), np.float32)])
        else:
            m.embedding.grow(extra)
        m.state = np.concatenate([m.state, np.full(extra, PENDING, np.int8)])
        m.reason += [""] * extra
