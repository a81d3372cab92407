"""The HDF5 embedding store: rows (ids, sources, labels, groups, splits) and one embedding dataset per model.

Durability design (see docs/STORE.md):
- ``store.h5`` is never modified in place. A commit writes a complete new file beside it and renames it over
  the old one (atomic.py), so a reader always sees a whole, consistent snapshot and a crash never corrupts it.
- Between commits, finished batches are appended to a journal (journal.py) that the next run replays.
- One writer at a time: ``index`` holds an exclusive lock on the index folder (lock.py); readers take no lock.
Every value is validated when a store is opened and before one is written (validation.py), so a damaged store
is refused whole. Nothing is pickled: strings, numbers and arrays only.
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from . import hdf5_fields as fields
from .atomic import atomic_write_bytes
from .schema import EMBEDDED, FORMAT, FORMAT_VERSION, REBUILD, STORE_FILE, ZERO_FILLED
from .validation import Damage, check_store, first_line, is_int, printable_key, show
from ..errors import MedsearchError

__all__ = ["LabelledRows", "ModelData", "StoreData", "model_key", "store_path", "read_store", "write_store", "provenance"]

_STR = h5py.string_dtype("utf-8")


def model_key(name: str) -> str:
    """Store key (HDF5 group, index file name) of a model spec or --name: 'timm:resnet18' -> 'timm_resnet18'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


@dataclass
class ModelData:
    """One model's embeddings of every row, each row's state, and the model's attributes."""

    embedding: np.ndarray          # float32 (n, dim)
    state: np.ndarray              # int8 (n,), PENDING / EMBEDDED / ZERO_FILLED / SKIPPED
    reason: list[str]              # why a row was skipped or zero-filled, '' otherwise
    attrs: dict = field(default_factory=dict)   # provenance (JSON), index_* attributes

    @property
    def dim(self) -> int:
        return self.embedding.shape[1]

    def usable(self) -> np.ndarray:
        """Row numbers that have an embedding a search may return."""
        return np.flatnonzero((self.state == EMBEDDED) | (self.state == ZERO_FILLED))


@dataclass
class LabelledRows:
    """Rows with their labels, as a dataset yields them and a store keeps them: ids, sources, labels (int64 (n,)
    class indices, or int8 (n, L) multi-hot for multilabel) named by ``label_names``, the task, and the optional
    patient groups and official split."""

    ids: list[str]
    sources: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str
    groups: list[str] | None = None
    splits: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def labels_of(self, row: int) -> list[str]:
        """Names of the labels of ``row``: one class, or every positive label of a multilabel row."""
        y = self.labels[row]
        if self.task == "multilabel":
            return [self.label_names[j] for j in np.flatnonzero(y)]
        return [self.label_names[int(y)]]


@dataclass
class StoreData(LabelledRows):
    """A whole store in memory: its rows, root attributes and models. ``read_store`` validates all of it;
    ``write_store`` refuses one that would not pass."""

    attrs: dict = field(default_factory=dict)
    models: dict[str, ModelData] = field(default_factory=dict)
    # content fingerprint of each row's image: hex sha256 of the file's bytes (npz: of the image array's
    # bytes), '' when it could not be read; and [size in bytes, mtime_ns] of the file, [-1, -1] when unknown.
    # None in stores written before these were recorded.
    sha256: list[str] | None = None
    file_stat: np.ndarray | None = None          # int64 (n, 2)

    def model(self, key: str | None) -> tuple[str, ModelData]:
        """The named model, or the only one when ``key`` is None; a clear error otherwise."""
        if not self.models:
            raise MedsearchError("this store holds no embeddings yet: run `medsearch index DATASET --model NAME` first")
        if key is None:
            if len(self.models) > 1:
                raise MedsearchError(f"the store holds several models ({', '.join(self.models)}): choose one with --model")
            key = next(iter(self.models))
        if key not in self.models:
            raise MedsearchError(f"the store holds no model '{key}' (it has: {', '.join(self.models)}): "
                                 "pick one of those with --model, or index it first")
        return key, self.models[key]


# ---------------------------------------------------------------- reading

def store_path(directory: str | os.PathLike) -> Path:
    """The store file of an index folder."""
    return Path(directory) / STORE_FILE


# what h5py, numpy and json raise on a file whose structure is not what the schema says
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError)


def read_store(directory: str | os.PathLike) -> StoreData:
    """Load a store and validate all of it (docs/STORE.md, "Validation"). Raises MedsearchError, one line,
    for a missing, unreadable, foreign or damaged file: a damaged store is refused, never read partially."""
    path = store_path(directory)
    if not path.exists():
        raise MedsearchError(f"no medsearch store at '{directory}' (missing {STORE_FILE}): "
                             "build one with `medsearch index DATASET --out DIR`")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise MedsearchError(f"cannot read '{path}' ({exc.strerror or exc}): check that it is a readable file") from None
    try:
        f = h5py.File(path, "r")
    except _READ_ERRORS as exc:
        raise MedsearchError(f"'{path}' is not a readable medsearch store ({first_line(exc)}): {REBUILD}") from None
    try:
        with f:
            return _read(f, path)
    except MedsearchError:
        raise
    except Damage as exc:
        raise MedsearchError(f"'{path}' is damaged: {exc}; {REBUILD}") from None
    except MemoryError as exc:
        raise MedsearchError(f"not enough memory to read '{path}' ({first_line(exc)}): "
                             "use a machine with more memory") from None
    except _READ_ERRORS as exc:
        raise MedsearchError(f"'{path}' is damaged ({type(exc).__name__}: {first_line(exc)}); {REBUILD}") from None


def _read(f: h5py.File, path: Path) -> StoreData:
    root = {k: fields.plain_attr(v) for k, v in f.attrs.items()}
    if not (isinstance(root.get("format"), str) and root["format"] == FORMAT):
        raise MedsearchError(f"'{path}' is an HDF5 file but not a medsearch store: rebuild it with `medsearch index`")
    version = fields.required_attr(root, "format_version")
    if not is_int(version):
        raise Damage(f"format_version is {show(version)}, not an integer")
    if version > FORMAT_VERSION:
        raise MedsearchError(f"'{path}' has store format {version}; this medsearch reads up to {FORMAT_VERSION}: upgrade medsearch")
    if version < 1:
        raise Damage(f"format_version is {version} (versions start at 1)")
    data = _read_rows(f, root)
    models = f.get("models")
    if models is not None and not isinstance(models, h5py.Group):
        raise Damage("models is not a group")
    for key, g in (models or {}).items():
        data.models[key] = _read_model(g, key, len(data))
    check_store(data)
    # the values are in range now, so these casts are exact
    data.labels = data.labels.astype(np.int8 if data.task == "multilabel" else np.int64, copy=False)
    if data.file_stat is not None:
        data.file_stat = data.file_stat.astype(np.int64, copy=False)
    for m in data.models.values():
        m.state = m.state.astype(np.int8, copy=False)
    return data


def _read_rows(f: h5py.File, root: dict) -> StoreData:
    """The root attributes task and label_names and the rows group, with no model yet."""
    task = fields.required_attr(root, "task")
    label_names = fields.label_names_attr(fields.required_attr(root, "label_names"))
    rows = fields.group(f, "rows", "rows")
    ids = fields.strings(rows, "id", "rows")
    n = len(ids)
    if "n_rows" in root and not (is_int(root["n_rows"]) and root["n_rows"] == n):
        what = "not an integer" if not is_int(root["n_rows"]) else f"but rows/id holds {n} rows"
        raise Damage(f"n_rows is {show(root['n_rows'])}, {what}")
    sources = fields.strings(rows, "source", "rows", n)
    labels = fields.labels(rows, task, label_names, n)
    groups = fields.strings(rows, "group", "rows", n, optional=True)
    splits = fields.strings(rows, "split", "rows", n, optional=True)
    sha256 = fields.strings(rows, "sha256", "rows", n, optional=True)
    file_stat = fields.integers(rows, "file_stat", "rows", (n, 2), optional=True)
    return StoreData(ids, sources, labels, label_names, task, groups, splits, root,
                     sha256=sha256, file_stat=file_stat)


def _read_model(g, key: str, n: int) -> ModelData:
    where = f"models/{printable_key(key)}"
    if not isinstance(g, h5py.Group):
        raise Damage(f"{where} is not a group")
    emb = fields.dataset(g, "embedding", where)
    if emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1 or emb.dtype != np.float32:
        raise Damage(f"model '{printable_key(key)}' has embeddings of shape {emb.shape} {emb.dtype} for {n} rows "
                     "(expected (rows, dim) float32)")
    fields.check_storage(emb, f"{where}/embedding")
    state = fields.integers(g, "state", where, (n,))
    reason = fields.strings(g, "reason", where, n)
    attrs = {k: fields.plain_attr(v) for k, v in g.attrs.items()}
    for name in ("dim", "provenance"):
        if name not in attrs:
            raise Damage(f"{where} has no {name} attribute")
    return ModelData(emb[()], state, reason, attrs)


def provenance(model: ModelData) -> dict:
    """The model's recorded provenance (validated when the store was opened)."""
    return json.loads(model.attrs.get("provenance", "{}"))


# ---------------------------------------------------------------- writing

def write_store(data: StoreData, directory: str | os.PathLike) -> None:
    """Write the whole store as a new file and swap it in atomically.

    The HDF5 image is built in memory and written with plain file I/O: the HDF5 library itself crashes
    (segfault on close) when the disk fills up under it, while Python's write raises a clean ENOSPC."""
    try:
        check_store(data)
    except Damage as exc:
        raise MedsearchError(f"refusing to write '{store_path(directory)}', it would be damaged: {exc}") from None
    buffer = io.BytesIO()
    _write(data, buffer)
    atomic_write_bytes(store_path(directory), buffer.getbuffer())


def _chunk_rows(n: int, dim: int) -> int:
    return max(1, min(n, (1 << 20) // (4 * max(dim, 1))))  # about 1 MiB per chunk


def _put_strings(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=fields.encode_strings(values), dtype=_STR)


def _write(data: StoreData, path) -> None:
    n = len(data)
    with h5py.File(path, "w") as f:
        f.attrs.update({k: v for k, v in data.attrs.items() if v is not None})
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["medsearch_version"] = __version__
        f.attrs["task"] = data.task
        f.attrs["label_names"] = json.dumps(data.label_names)
        f.attrs["n_rows"] = n
        f.attrs["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        rows = f.create_group("rows")
        _put_strings(rows, "id", data.ids)
        _put_strings(rows, "source", data.sources)
        label_dtype = np.int8 if data.task == "multilabel" else np.int64
        rows.create_dataset("label", data=np.asarray(data.labels, dtype=label_dtype))
        if data.groups is not None:
            _put_strings(rows, "group", data.groups)
        if data.splits is not None:
            _put_strings(rows, "split", data.splits)
        if data.sha256 is not None:
            _put_strings(rows, "sha256", data.sha256)
        if data.file_stat is not None:
            rows.create_dataset("file_stat", data=np.asarray(data.file_stat, dtype=np.int64).reshape(n, 2))
        models = f.create_group("models")
        for key, m in data.models.items():
            g = models.create_group(key)
            g.create_dataset("embedding", data=m.embedding, dtype=np.float32,
                             chunks=(_chunk_rows(n, m.dim), m.dim) if n else None)
            g.create_dataset("state", data=m.state.astype(np.int8))
            _put_strings(g, "reason", m.reason)
            g.attrs.update({k: v for k, v in m.attrs.items() if v is not None})
            g.attrs["dim"] = m.dim
