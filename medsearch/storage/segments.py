"""Segment files of a format-2 store: immutable HDF5 files under ``segments/``, each holding some rows' fields
and some rows' embeddings, addressed by row number. A commit writes one new segment with only what changed, so
its cost follows the change, not the store; the manifest (manifest.py) lists the live segments in order, and a
row's value is the one in the last segment that holds it.

A segment is built in memory and written with plain file I/O (atomic.py): the HDF5 library crashes when the
disk fills under it, Python's write raises a clean ENOSPC. Segments stay small enough for that
(compaction.SEGMENT_BYTES). Embeddings are stored contiguous, not chunked, so that a few rows read cheaply.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import hdf5_fields as fields
from .atomic import atomic_write_bytes
from .schema import HEADER_COLUMNS
from .validation import Damage, first_line, printable_key

SEGMENT_FORMAT = "medsearch-segment"
SEGMENTS_DIR = "segments"
ROW_STRINGS = ("id", "source", "group", "split", "sha256")
READ_BLOCK = 4096  # rows of one slice when embeddings are read by row


@dataclass
class RowPart:
    """Row fields of the rows ``row`` (sorted, unique): ids, sources, labels, the optional columns, and the
    removed flag (a row deleted from the dataset, kept until compaction drops it); ``header``: the DICOM header
    columns (``rows/header/<name>``, text), None without."""

    row: np.ndarray
    id: list[str]
    source: list[str]
    label: np.ndarray
    removed: np.ndarray
    group: list[str] | None = None
    split: list[str] | None = None
    sha256: list[str] | None = None
    file_stat: np.ndarray | None = None
    header: dict[str, list[str]] | None = None


@dataclass
class ModelPart:
    """One model's embeddings, states and reasons of the rows ``row`` (sorted, unique)."""

    row: np.ndarray
    embedding: np.ndarray
    state: np.ndarray
    reason: list[str]


@dataclass
class SegmentData:
    rows: RowPart | None = None
    models: dict[str, ModelPart] = field(default_factory=dict)


def segment_bytes(seg: SegmentData) -> bytes:
    """The HDF5 image of a segment."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["format"] = SEGMENT_FORMAT
        if seg.rows is not None:
            _write_rows(f.create_group("rows"), seg.rows)
        models = f.create_group("models")
        for key, part in seg.models.items():
            g = models.create_group(key)
            g.create_dataset("row", data=np.asarray(part.row, dtype=np.int64))
            g.create_dataset("embedding", data=np.asarray(part.embedding, dtype=np.float32))
            g.create_dataset("state", data=np.asarray(part.state, dtype=np.int8))
            put_text(g, "reason", part.reason)
    return buffer.getvalue()


def write_segment(path: Path, seg: SegmentData) -> int:
    """Write a segment atomically; returns its size in bytes."""
    data = segment_bytes(seg)
    atomic_write_bytes(path, data)
    return len(data)


def _write_rows(g: h5py.Group, part: RowPart) -> None:
    g.create_dataset("row", data=np.asarray(part.row, dtype=np.int64))
    g.create_dataset("label", data=part.label)
    g.create_dataset("removed", data=np.asarray(part.removed, dtype=np.int8))
    for name in ROW_STRINGS:
        values = getattr(part, name)
        if values is not None:
            put_text(g, name, values)
    if part.file_stat is not None:
        g.create_dataset("file_stat", data=np.asarray(part.file_stat, dtype=np.int64).reshape(-1, 2))
    if part.header is not None:
        h = g.create_group("header")
        for name, values in part.header.items():
            put_text(h, name, values)


class SegmentFile:
    """An open segment: its file stays open for the reader's life, so a compaction that deletes it later does
    not pull it from under a reader (the reader keeps its snapshot)."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        try:
            self.file = h5py.File(path, "r")
        except FileNotFoundError:
            raise
        except OSError as exc:
            if not path.exists():  # deleted between HDF5's open and its stat: a compaction, not damage
                raise FileNotFoundError(str(path)) from None
            raise Damage(f"segment {self.name} is not a readable HDF5 file ({first_line(exc)})") from None
        if fields.plain_attr(self.file.attrs.get("format")) != SEGMENT_FORMAT:
            raise Damage(f"{self.name} is not a medsearch segment")

    def rows(self, task_is_multilabel: bool, n_labels: int) -> RowPart | None:
        g = self.file.get("rows")
        if g is None:
            return None
        where = f"{self.name}:rows"
        row = _row_numbers(g, where)
        m = len(row)
        label = fields.dataset(g, "label", where)
        want = (m, n_labels) if task_is_multilabel else (m,)
        if label.dtype.kind not in "iu" or label.shape != want:
            raise Damage(f"{where}/label has shape {label.shape} {label.dtype}, expected {want} integers")
        fields.check_storage(label, f"{where}/label")
        strings = {name: read_text(g, name, where, m, optional=name not in ("id", "source"))
                   for name in ROW_STRINGS}
        return RowPart(row=row, label=label[()], removed=fields.integers(g, "removed", where, (m,)).astype(bool),
                       file_stat=fields.integers(g, "file_stat", where, (m, 2), optional=True),
                       header=_header(g, where, m), **strings)

    def model(self, key: str, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
        """(rows, states, reasons) of model ``key`` in this segment, checked against ``dim``; None if absent."""
        g = self.file.get("models")
        g = g.get(key) if isinstance(g, h5py.Group) else None
        if g is None:
            return None
        where = f"{self.name}:models/{printable_key(key)}"
        if not isinstance(g, h5py.Group):
            raise Damage(f"{where} is not a group")
        row = _row_numbers(g, where)
        emb = self._embedding(g, where)
        if emb.shape != (len(row), dim):
            raise Damage(f"{where}/embedding has shape {emb.shape}, expected ({len(row)}, {dim}) float32")
        return row, fields.integers(g, "state", where, (len(row),)), read_text(g, "reason", where, len(row))

    def _embedding(self, g: h5py.Group, where: str) -> h5py.Dataset:
        emb = fields.dataset(g, "embedding", where)
        if emb.ndim != 2 or emb.dtype != np.float32:
            raise Damage(f"{where}/embedding has shape {emb.shape} {emb.dtype}, expected (rows, dim) float32")
        fields.check_storage(emb, f"{where}/embedding")
        return emb

    def embeddings(self, key: str, positions: np.ndarray) -> np.ndarray:
        """Rows at ``positions`` (sorted) of the model's embedding dataset, read without loading the rest: dense
        runs as one slice, scattered rows one by one, a block of READ_BLOCK rows at a time."""
        ds = self.file["models"][key]["embedding"]
        out = np.empty((positions.size, ds.shape[1]), np.float32)
        if positions.size == 0:
            return out
        blocks = positions // READ_BLOCK
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        for part, at in zip(np.split(positions, cuts), np.split(np.arange(positions.size), cuts)):
            lo, hi = int(part[0]), int(part[-1]) + 1
            out[at] = ds[lo:hi][part - lo] if hi - lo <= 4 * part.size else ds[part]
        return out

    def close(self) -> None:
        try:
            self.file.close()
        except Exception:  # closing a file h5py already released
            pass


def put_text(g: h5py.Group, name: str, values: list[str]) -> None:
    """A column of strings as one UTF-8 byte array, NUL between entries, with their count: read back with one
    decode and one split instead of a Python call per string (a million ids in a fraction of a second)."""
    text = "\0".join(values)
    if text.count("\0") != max(0, len(values) - 1):
        raise Damage(f"{name} holds a NUL character, which no id, path or reason may hold")
    ds = g.create_dataset(name, data=np.frombuffer(text.encode("utf-8", "surrogateescape"), dtype=np.uint8))
    ds.attrs["count"] = len(values)


def read_text(g: h5py.Group, name: str, where: str, count: int, optional: bool = False) -> list[str] | None:
    """A column written by put_text, which must hold ``count`` strings."""
    ds = fields.dataset(g, name, where, optional)
    if ds is None:
        return None
    where = f"{where}/{name}"
    stored = fields.plain_attr(ds.attrs.get("count"))
    if ds.dtype != np.uint8 or ds.ndim != 1 or stored != count:
        raise Damage(f"{where} is {ds.dtype} of shape {ds.shape} counting {stored!r} strings, expected UTF-8 text "
                     f"of {count} strings")
    fields.check_storage(ds, where)
    if count == 0:
        return []
    values = ds[()].tobytes().decode("utf-8", "surrogateescape").split("\0")
    if len(values) != count:
        raise Damage(f"{where} holds {len(values)} strings, expected {count}")
    return values


def _header(g: h5py.Group, where: str, m: int) -> dict[str, list[str]] | None:
    """The header columns of a segment's rows, in schema order; a column the schema does not name is damage
    (a store never holds any other header value)."""
    h = g.get("header")
    if h is None:
        return None
    where = f"{where}/header"
    if not isinstance(h, h5py.Group):
        raise Damage(f"{where} is not a group")
    unknown = [k for k in h.keys() if k not in HEADER_COLUMNS]
    if unknown:
        raise Damage(f"{where}/{printable_key(unknown[0])} is not a column a store may hold "
                     f"(only {', '.join(HEADER_COLUMNS)})")
    return {name: read_text(h, name, where, m) for name in HEADER_COLUMNS if name in h}


def _row_numbers(g: h5py.Group, where: str) -> np.ndarray:
    ds = fields.dataset(g, "row", where)
    if ds.dtype.kind not in "iu" or ds.ndim != 1:
        raise Damage(f"{where}/row holds {ds.dtype} of shape {ds.shape}, not row numbers")
    fields.check_storage(ds, f"{where}/row")
    row = ds[()].astype(np.int64)
    if row.size and (row[0] < 0 or (np.diff(row) <= 0).any()):
        raise Damage(f"{where}/row is not a sorted list of distinct row numbers")
    return row


def segment_path(directory: str | os.PathLike, name: str) -> Path:
    return Path(directory) / SEGMENTS_DIR / name
