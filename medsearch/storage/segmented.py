"""Format 2 of the store: immutable segments (segments.py) listed by a manifest (manifest.py).

Reading loads every row's metadata (ids, sources, labels, states: what a search or a count needs) and leaves
the embeddings on disk behind a row reader (embeddings.py). A commit writes one segment holding only the rows
marked changed and the embeddings written since the last commit, then replaces the manifest: its cost follows
the change, not the store. When the newest segments pile up, the small ones at the tail are merged into one
(``MAX_TAIL``), so a reader opens a bounded number of files; a whole write (a new store, an upgrade from format
1, a compaction) splits the rows into segments of about ``SEGMENT_BYTES``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import MedsearchError
from . import hdf5_fields as fields
from .embeddings import Embeddings
from .manifest import MANIFEST_FILE, Manifest, SegmentEntry, manifest_path, read_manifest, write_manifest
from .schema import FORMAT, FORMAT_VERSION, PENDING, STORE_FILE
from .segments import SEGMENTS_DIR, ModelPart, RowPart, SegmentData, SegmentFile, segment_path, write_segment
from .row_headers import ID_RECORD_ATTR, RowHeaders
from .validation import Damage, check_model_attrs, check_store, json_attr

SEGMENT_BYTES = 256 << 20     # a whole write splits rows into segments of about this size
MAX_TAIL = 8                  # more small segments than this at the tail are merged into one
OPTIONAL_COLUMNS = ("groups", "splits", "sha256", "file_stat")
_ROOT_ONLY = ("format", "format_version", "n_rows")


@dataclass
class Origin:
    """Where a store in memory was read from: its folder, the manifest then current, its open segments and the
    optional row columns they carry. A commit is incremental only on top of exactly that manifest."""

    directory: str
    manifest: Manifest
    files: list[SegmentFile]
    columns: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------- reading

def read_segmented(directory: Path):
    """The store's metadata, validated whole, with lazy embeddings. A compaction may replace the segments
    between reading the manifest and opening them: then the manifest is read again."""
    missing = None
    for _ in range(5):
        manifest = read_manifest(manifest_path(directory))
        if missing is not None and missing[0] == manifest.generation:
            raise Damage(f"{MANIFEST_FILE} lists the segment {missing[1]}, which is missing")
        files: list[SegmentFile] = []
        try:
            for entry in manifest.segments:
                files.append(SegmentFile(segment_path(directory, entry.file)))
        except FileNotFoundError:
            _close(files)
            missing = (manifest.generation, manifest.segments[len(files)].file)
            continue
        except BaseException:
            _close(files)
            raise
        return _assemble(directory, manifest, files)
    raise MedsearchError(f"the store in '{directory}' changed five times while being opened (another process is "
                         "compacting it): try again")


def _assemble(directory: Path, manifest: Manifest, files: list[SegmentFile]):
    from .store import ModelData, StoreData

    attrs = {**manifest.attrs, "format": FORMAT, "format_version": FORMAT_VERSION, "n_rows": manifest.n_rows}
    task = fields.required_attr(attrs, "task")
    names = fields.label_names_attr(fields.required_attr(attrs, "label_names"))
    n = manifest.n_rows
    rows = _RowAssembler(n, task == "multilabel", len(names) if isinstance(names, list) else 0)
    for f in files:
        rows.add(f, f.rows(task == "multilabel", len(names)))
    ids, sources, labels = rows.finish()
    data = StoreData(ids, sources, labels, names, task, rows.optional.get("groups"), rows.optional.get("splits"),
                     attrs=attrs, header=_headers(attrs, rows.header))
    data.sha256, data.file_stat, data.removed = rows.sha256, rows.file_stat, rows.removed
    for key, model_attrs in manifest.models.items():
        dim = model_attrs["dim"]
        state, reason = np.full(n, PENDING, np.int8), [""] * n
        seg_of, pos_of = np.full(n, -1, np.int32), np.zeros(n, np.int64)
        for s, f in enumerate(files):
            got = f.model(key, dim)
            if got is None:
                continue
            row, st, why = got
            if row.size and row[-1] >= n:
                raise Damage(f"{f.name}:models/{key}/row holds row {row[-1]} of a store of {n} rows")
            state[row], seg_of[row], pos_of[row] = st, s, np.arange(row.size)
            _scatter(reason, row, why)
        emb = Embeddings(key, n, dim, files, seg_of, pos_of, store=str(directory))
        data.models[key] = ModelData(emb, state, reason, dict(model_attrs))
    check_store(data)
    data.labels = data.labels.astype(np.int8 if task == "multilabel" else np.int64, copy=False)
    data.origin = Origin(os.path.realpath(directory), manifest, files, rows.columns)
    return data


def _headers(attrs: dict, columns: dict | None) -> RowHeaders | None:
    """The DICOM header columns with the record of how their ids were hashed (taken out of ``attrs``: the
    header holds it); both or neither."""
    raw = attrs.pop(ID_RECORD_ATTR, None)
    if raw is None:
        if columns:
            raise Damage(f"the segments hold DICOM header columns but the root attribute {ID_RECORD_ATTR} is missing")
        return None
    return RowHeaders(columns or {}, json_attr(ID_RECORD_ATTR, raw, dict, "an object"))


class _RowAssembler:
    """Row fields gathered from the segments in order; a later segment's value of a row wins."""

    def __init__(self, n: int, multilabel: bool, n_labels: int):
        self.n = n
        self.ids: list = [None] * n
        self.sources: list = [None] * n
        self.labels = np.zeros((n, n_labels) if multilabel else (n,), np.int64)
        self.removed = np.zeros(n, dtype=bool)
        self.covered = np.zeros(n, dtype=bool)
        self.optional: dict[str, list | np.ndarray] = {}
        self.header: dict[str, list[str]] | None = None
        self.columns: tuple[str, ...] | None = None

    def add(self, f: SegmentFile, part: RowPart | None) -> None:
        if part is None:
            return
        if part.row.size and part.row[-1] >= self.n:
            raise Damage(f"{f.name}:rows/row holds row {part.row[-1]} of a store of {self.n} rows")
        columns = tuple(c for c, v in zip(OPTIONAL_COLUMNS, (part.group, part.split, part.sha256, part.file_stat))
                        if v is not None) + header_columns(part.header)
        if self.columns is None:
            self.columns = columns
            for c in columns:
                if c.startswith(HEADER_PREFIX):
                    self.header = self.header if self.header is not None else {}
                    self.header[c[len(HEADER_PREFIX):]] = [""] * self.n
                else:
                    self.optional[c] = np.full((self.n, 2), -1, np.int64) if c == "file_stat" else [""] * self.n
        elif columns != self.columns:
            raise Damage(f"{f.name}:rows holds the columns {', '.join(columns) or 'none'} where earlier segments "
                         f"hold {', '.join(self.columns) or 'none'}")
        r = part.row
        _scatter(self.ids, r, part.id)
        _scatter(self.sources, r, part.source)
        self.labels[r] = part.label
        self.removed[r] = part.removed
        self.covered[r] = True
        for c, values in zip(OPTIONAL_COLUMNS, (part.group, part.split, part.sha256, part.file_stat)):
            if values is not None:
                if c == "file_stat":
                    self.optional[c][r] = values
                else:
                    _scatter(self.optional[c], r, values)
        for name, values in (part.header or {}).items():
            _scatter(self.header[name], r, values)

    def finish(self) -> tuple:
        if not self.covered.all():
            raise Damage(f"row {int(np.argmin(self.covered))} of {self.n} is in no segment")
        self.columns = self.columns or ()
        self.sha256 = self.optional.get("sha256")
        self.file_stat = self.optional.get("file_stat")
        self.removed = self.removed if self.removed.any() else None
        return self.ids, self.sources, self.labels


HEADER_PREFIX = "header/"


def header_columns(header: dict | None) -> tuple[str, ...]:
    """The header columns as names of optional row columns ('header/Modality'), for comparing segments."""
    return tuple(HEADER_PREFIX + name for name in (header or {}))


def _scatter(target: list, rows: np.ndarray, values: list) -> None:
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        target[int(rows[0]):int(rows[-1]) + 1] = values
    else:
        for r, v in zip(rows.tolist(), values):
            target[r] = v


def _close(files: list[SegmentFile]) -> None:
    for f in files:
        f.close()


# ---------------------------------------------------------------- writing

def write_whole(data, directory: Path) -> None:
    """Write every row into new segments of about SEGMENT_BYTES, swap the manifest in, remove what it replaced."""
    try:
        check_store(data)
    except Damage as exc:
        raise MedsearchError(f"refusing to write the store in '{directory}', it would be damaged: {exc}") from None
    old = _current_manifest(directory)
    number = _next_number(directory, old)
    per_row = 256 + sum(4 * m.dim for m in data.models.values())
    step = max(1, SEGMENT_BYTES // per_row)
    entries = []
    for start in range(0, len(data), step):
        rows = np.arange(start, min(len(data), start + step))
        seg = segment_of(data, rows, {key: rows for key in data.models})
        entries.append(_write(directory, f"seg-{number:09d}.h5", seg))
        number += 1
    manifest = Manifest(generation=(old.generation + 1) if old else 1, n_rows=len(data),
                        attrs=root_attrs(data), models=model_attrs(data), segments=entries)
    write_manifest(directory, manifest)
    remove_unlisted(directory, manifest)
    rebase(data, directory)


def commit(data, directory: Path) -> None:
    """Write what changed since ``data.origin`` as one segment and a new manifest (see store.commit_store)."""
    o = data.origin
    current = _current_manifest(directory)
    if (o is None or current is None or o.directory != os.path.realpath(directory)
            or current.generation != o.manifest.generation or len(data) < o.manifest.n_rows
            or _columns(data) != o.columns
            or any(not isinstance(m.embedding, Embeddings) for m in data.models.values())):
        write_whole(data, directory)
        return
    rows = np.array(sorted(set(data.changed) | set(range(o.manifest.n_rows, len(data)))), dtype=np.int64)
    model_rows = {key: np.array(sorted(m.changed | set(m.embedding.pending_rows().tolist())), dtype=np.int64)
                  for key, m in data.models.items()}
    model_rows = {k: r for k, r in model_rows.items() if r.size}
    segments = list(o.manifest.segments)
    new_file = None
    if rows.size or model_rows:
        seg = segment_of(data, rows, model_rows)
        _check_part(data, seg, directory)
        entry = _write(directory, o.manifest.next_segment_name(), seg)
        segments.append(entry)
        new_file = SegmentFile(segment_path(directory, entry.file))
    manifest = Manifest(generation=o.manifest.generation + 1, n_rows=len(data), attrs=root_attrs(data),
                        models=model_attrs(data), segments=segments)
    if new_file is None and _same_content(manifest, o.manifest):
        return  # nothing changed: no new generation
    write_manifest(directory, manifest)
    remove_unlisted(directory, manifest)  # segments of a commit killed before its manifest
    if new_file is not None:
        o.files.append(new_file)
        for key, r in model_rows.items():
            data.models[key].embedding.settle(new_file, r)
    o.manifest = manifest
    data.changed.clear()
    for m in data.models.values():
        m.changed.clear()
    from .compaction import merge_tail
    merge_tail(data, directory)


def _same_content(a: Manifest, b: Manifest) -> bool:
    """Whether two manifests describe the same store (the generation and the time of writing aside)."""
    def content(m: Manifest) -> dict:
        return {**m.to_json(), "generation": None, "attrs": {k: v for k, v in m.attrs.items() if k != "updated"}}
    return content(a) == content(b)


def segment_of(data, rows: np.ndarray, model_rows: dict[str, np.ndarray]) -> SegmentData:
    """The segment holding the fields of ``rows`` and each model's entries of its rows."""
    seg = SegmentData()
    if rows.size or not model_rows:
        take = rows.tolist()
        seg.rows = RowPart(row=rows, id=[data.ids[r] for r in take], source=[data.sources[r] for r in take],
                           label=np.asarray(data.labels)[rows], removed=data.is_removed()[rows],
                           group=_pick(data.groups, take), split=_pick(data.splits, take),
                           sha256=_pick(data.sha256, take),
                           file_stat=None if data.file_stat is None else np.asarray(data.file_stat)[rows],
                           header=None if data.header is None else data.header.take(take).columns)
    for key, r in model_rows.items():
        m = data.models[key]
        seg.models[key] = ModelPart(row=r, embedding=np.asarray(m.embedding[r], dtype=np.float32),
                                    state=np.asarray(m.state)[r], reason=[m.reason[i] for i in r.tolist()])
    return seg


def _pick(values, take):
    return None if values is None else [values[r] for r in take]


def _check_part(data, seg: SegmentData, directory: Path) -> None:
    """Validate what a commit writes (the rest of the store was validated when it was read or written)."""
    from .store import ModelData, StoreData

    part = seg.rows
    if part is None:
        return
    probe = StoreData(part.id, part.source, part.label, data.label_names, data.task, part.group, part.split,
                      attrs=root_attrs(data), sha256=part.sha256, file_stat=part.file_stat,
                      header=None if part.header is None else RowHeaders(part.header, data.header.ids))
    for key, mp in seg.models.items():
        if mp.row.size == part.row.size and (mp.row == part.row).all():
            attrs = {k: v for k, v in data.models[key].attrs.items() if not k.startswith("index_")}
            probe.models[key] = ModelData(mp.embedding, mp.state, mp.reason, attrs)
    try:
        check_store(probe)
        for key, m in data.models.items():
            check_model_attrs(f"models/{key}", m.attrs, m.dim, len(data))
        for key, mp in seg.models.items():
            if not np.isfinite(mp.embedding).all() or mp.state.min(initial=0) < 0 or mp.state.max(initial=0) > 3:
                raise Damage(f"models/{key} would hold a value that is not finite or a state outside 0..3")
    except Damage as exc:
        raise MedsearchError(f"refusing to write the store in '{directory}', it would be damaged: {exc}") from None


def root_attrs(data) -> dict:
    import json
    import time

    attrs = {k: v for k, v in data.attrs.items() if v is not None and k not in _ROOT_ONLY}
    attrs.update(task=data.task, label_names=json.dumps(data.label_names), medsearch_version=__version__,
                 updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if data.header is not None:
        attrs[ID_RECORD_ATTR] = data.header.ids_json()
    return attrs


def model_attrs(data) -> dict:
    return {key: {**{k: v for k, v in m.attrs.items() if v is not None}, "dim": m.dim}
            for key, m in data.models.items()}


def _columns(data) -> tuple[str, ...]:
    return tuple(c for c in OPTIONAL_COLUMNS if getattr(data, c) is not None) + header_columns(
        None if data.header is None else {c: None for c in data.header.names()})


def _write(directory: Path, name: str, seg: SegmentData) -> SegmentEntry:
    (directory / SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
    size = write_segment(segment_path(directory, name), seg)
    return SegmentEntry(file=name, bytes=size, rows=0 if seg.rows is None else int(seg.rows.row.size),
                        models={k: int(p.row.size) for k, p in seg.models.items()})


def _current_manifest(directory: Path) -> Manifest | None:
    path = manifest_path(directory)
    if not path.exists():
        return None
    try:
        return read_manifest(path)
    except Damage:
        return None


def _next_number(directory: Path, old: Manifest | None) -> int:
    used = [int(s.file[4:13]) for s in old.segments] if old else []
    return max(used + [old.generation if old else 0]) + 1


def remove_unlisted(directory: Path, manifest: Manifest) -> None:
    """Delete segment files the manifest does not list (replaced, merged, or left by an interrupted commit) and a
    format-1 store.h5 the manifest supersedes. Readers that opened them keep their snapshot."""
    listed = {s.file for s in manifest.segments}
    folder = directory / SEGMENTS_DIR
    for path in (folder.iterdir() if folder.is_dir() else ()):
        if path.name not in listed and (path.name.startswith("seg-") or path.name.startswith(".seg-")):
            path.unlink(missing_ok=True)
    (directory / STORE_FILE).unlink(missing_ok=True)
    for path in directory.glob(f".{MANIFEST_FILE}.tmp-*"):  # a manifest write killed half way
        path.unlink(missing_ok=True)


def rebase(data, directory: Path) -> None:
    """After a whole write or a merge: read the store back lazily, so ``data`` stands on the new manifest."""
    fresh = read_segmented(directory)
    for key, m in data.models.items():
        m.embedding = fresh.models[key].embedding
        m.changed.clear()
    data.origin = fresh.origin
    data.changed.clear()


__all__ = ["MANIFEST_FILE", "read_segmented", "write_whole", "commit", "segment_of", "remove_unlisted", "rebase"]
