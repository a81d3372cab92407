"""The HDF5 embedding store: rows (ids, sources, labels, groups, splits) and one embedding dataset per model.

Durability design (see docs/STORE.md):
- ``store.h5`` is never modified in place. A commit writes a complete new file beside it and renames it over
  the old one (atomic.py), so a reader always sees a whole, consistent snapshot and a crash never corrupts it.
- Between commits, finished batches are appended to a journal: ``.journal/<model>/part-*.npz`` files, each
  written atomically. A run killed at any moment loses at most the batch in flight; the next run replays the
  journal into the store before embedding what is still missing.
- One writer at a time: ``index`` holds an exclusive ``flock`` on ``.lock`` in the index folder; a second
  writer is refused. Readers take no lock (they read a snapshot).
Nothing is pickled: strings, numbers and arrays only.
"""
from __future__ import annotations

import fcntl
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from .atomic import atomic_write_bytes, atomic_write_with, fsync_path, io_error
from ..errors import MedsearchError

FORMAT = "medsearch-store"
FORMAT_VERSION = 1
STORE_FILE = "store.h5"
JOURNAL_DIR = ".journal"
LOCK_FILE = ".lock"
PENDING, EMBEDDED, ZERO_FILLED, SKIPPED = 0, 1, 2, 3
FINISHED = (EMBEDDED, ZERO_FILLED, SKIPPED)  # the states a journal part may record
STATE_NAMES = {PENDING: "pending", EMBEDDED: "embedded", ZERO_FILLED: "zero-filled", SKIPPED: "skipped"}
_STR = h5py.string_dtype("utf-8")
TASKS = ("binary", "multiclass", "multilabel")
LAYOUTS = ("folders", "csv", "npz")
INDEX_ATTRS = ("index_file", "index_type", "index_sha256", "index_ntotal", "index_built")
# More classes than any labelling scheme in use; a label column with this many values holds ids, not classes.
MAX_LABEL_NAMES = 100_000
REBUILD = "move it aside and rebuild it with `medsearch index`"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX_DIGITS = b"0123456789abcdef"


def model_key(name: str) -> str:
    """Store key (HDF5 group, index file name) of a model spec or --name: 'timm:resnet18' -> 'timm_resnet18'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _enc(values) -> np.ndarray:
    # surrogateescape keeps file names that are not valid UTF-8 round-trippable
    return np.array([v.encode("utf-8", "surrogateescape") for v in values], dtype=object)


def _dec(ds) -> list[str]:
    return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v) for v in ds[()]]


@dataclass
class ModelData:
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
class StoreData:
    """A whole store in memory. Labels: int64 (n,) class indices, or int8 (n, L) multi-hot for multilabel.
    ``read_store`` validates all of it; ``write_store`` refuses one that would not pass."""

    ids: list[str]
    sources: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str
    groups: list[str] | None = None
    splits: list[str] | None = None
    attrs: dict = field(default_factory=dict)
    models: dict[str, ModelData] = field(default_factory=dict)
    # content fingerprint of each row's image: hex sha256 of the file's bytes (npz: of the image array's
    # bytes), '' when it could not be read; and [size in bytes, mtime_ns] of the file, [-1, -1] when unknown.
    # None in stores written before these were recorded.
    sha256: list[str] | None = None
    file_stat: np.ndarray | None = None          # int64 (n, 2)

    def __len__(self) -> int:
        return len(self.ids)

    def labels_of(self, row: int) -> list[str]:
        """Names of the labels of ``row``: one class, or every positive label of a multilabel row."""
        y = self.labels[row]
        if self.task == "multilabel":
            return [self.label_names[j] for j in np.flatnonzero(y)]
        return [self.label_names[int(y)]]

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
    return Path(directory) / STORE_FILE


class _Damage(Exception):
    """What is wrong with a store, in one line and without its path (read_store and write_store add it)."""


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
        raise MedsearchError(f"'{path}' is not a readable medsearch store ({_first_line(exc)}): {REBUILD}") from None
    try:
        with f:
            return _read(f, path)
    except MedsearchError:
        raise
    except _Damage as exc:
        raise MedsearchError(f"'{path}' is damaged: {exc}; {REBUILD}") from None
    except MemoryError as exc:
        raise MedsearchError(f"not enough memory to read '{path}' ({_first_line(exc)}): "
                             "use a machine with more memory") from None
    except _READ_ERRORS as exc:
        raise MedsearchError(f"'{path}' is damaged ({type(exc).__name__}: {_first_line(exc)}); {REBUILD}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _read(f: h5py.File, path: Path) -> StoreData:
    root = {k: _attr(v) for k, v in f.attrs.items()}
    if not (isinstance(root.get("format"), str) and root["format"] == FORMAT):
        raise MedsearchError(f"'{path}' is an HDF5 file but not a medsearch store: rebuild it with `medsearch index`")
    version = _required(root, "format_version")
    if not _is_int(version):
        raise _Damage(f"format_version is {_show(version)}, not an integer")
    if version > FORMAT_VERSION:
        raise MedsearchError(f"'{path}' has store format {version}; this medsearch reads up to {FORMAT_VERSION}: upgrade medsearch")
    if version < 1:
        raise _Damage(f"format_version is {version} (versions start at 1)")
    task = _required(root, "task")
    label_names = _label_names(_required(root, "label_names"))

    rows = _group(f, "rows", "rows")
    ids = _strings(rows, "id", "rows")
    n = len(ids)
    if "n_rows" in root and not (_is_int(root["n_rows"]) and root["n_rows"] == n):
        what = "not an integer" if not _is_int(root["n_rows"]) else f"but rows/id holds {n} rows"
        raise _Damage(f"n_rows is {_show(root['n_rows'])}, {what}")
    sources = _strings(rows, "source", "rows", n)
    labels = _labels(rows, task, label_names, n)
    groups = _strings(rows, "group", "rows", n, optional=True)
    splits = _strings(rows, "split", "rows", n, optional=True)
    sha256 = _strings(rows, "sha256", "rows", n, optional=True)
    file_stat = _integers(rows, "file_stat", "rows", (n, 2), optional=True)
    data = StoreData(ids, sources, labels, label_names, task, groups, splits, root,
                     sha256=sha256, file_stat=file_stat)

    models = f.get("models")
    if models is not None and not isinstance(models, h5py.Group):
        raise _Damage("models is not a group")
    for key, g in (models or {}).items():
        where = f"models/{_printable(key)}"
        if not isinstance(g, h5py.Group):
            raise _Damage(f"{where} is not a group")
        emb = _dataset(g, "embedding", where)
        if emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1 or emb.dtype != np.float32:
            raise _Damage(f"model '{_printable(key)}' has embeddings of shape {emb.shape} {emb.dtype} for {n} rows "
                          "(expected (rows, dim) float32)")
        _check_storage(emb, f"{where}/embedding")
        state = _integers(g, "state", where, (n,))
        reason = _strings(g, "reason", where, n)
        attrs = {k: _attr(v) for k, v in g.attrs.items()}
        for name in ("dim", "provenance"):
            if name not in attrs:
                raise _Damage(f"{where} has no {name} attribute")
        data.models[key] = ModelData(emb[()], state, reason, attrs)
    _check(data)
    # the values are in range now, so these casts are exact
    data.labels = data.labels.astype(np.int8 if task == "multilabel" else np.int64, copy=False)
    if data.file_stat is not None:
        data.file_stat = data.file_stat.astype(np.int64, copy=False)
    for m in data.models.values():
        m.state = m.state.astype(np.int8, copy=False)
    return data


def _required(attrs: dict, name: str):
    if name not in attrs:
        raise _Damage(f"the root attribute {name} is missing")
    return attrs[name]


def _json_attr(what: str, raw, kind: type, kind_text: str):
    """The JSON value of a string attribute, which must be a ``kind`` (list, dict)."""
    if not isinstance(raw, str):
        raise _Damage(f"{what} is {_show(raw)}, not a JSON string")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise _Damage(f"{what} is not valid JSON ({_first_line(exc)})") from None
    if not isinstance(value, kind):
        raise _Damage(f"{what} is the JSON {_show_json(value)}, not {kind_text}")
    return value


def _label_names(raw) -> list[str]:
    return _json_attr("label_names", raw, list, "a list of names")


def _group(parent: h5py.Group, name: str, where: str) -> h5py.Group:
    obj = parent.get(name)
    if obj is None:
        raise _Damage(f"the {where} group is missing")
    if not isinstance(obj, h5py.Group):
        raise _Damage(f"{where} is not a group")
    return obj


def _dataset(parent: h5py.Group, name: str, where: str, optional: bool = False) -> h5py.Dataset | None:
    obj = parent.get(name)
    if obj is None:
        if optional:
            return None
        raise _Damage(f"{where}/{name} is missing")
    if not isinstance(obj, h5py.Dataset):
        raise _Damage(f"{where}/{name} is not a dataset")
    return obj


def _check_storage(ds: h5py.Dataset, where: str) -> None:
    """Refuse a dataset that declares more entries than the file holds (reading it would allocate them all)."""
    if ds.size == 0 or ds.id.get_create_plist().get_nfilters():
        return  # compressed data cannot be sized this way; the store itself never compresses
    stored = ds.id.get_storage_size()
    if stored < ds.size * ds.dtype.itemsize:
        raise _Damage(f"{where} declares shape {ds.shape} but the file holds only {stored} bytes of it")


def _shape_of(ds: h5py.Dataset, where: str, shape: tuple) -> None:
    if ds.shape != shape:
        raise _Damage(f"{where} has shape {ds.shape}, expected {shape}")


def _strings(parent: h5py.Group, name: str, where: str, n: int | None = None,
             optional: bool = False) -> list[str] | None:
    ds = _dataset(parent, name, where, optional)
    if ds is None:
        return None
    where = f"{where}/{name}"
    if h5py.check_string_dtype(ds.dtype) is None:
        raise _Damage(f"{where} holds {ds.dtype} values, not strings")
    if n is None:
        if ds.ndim != 1:
            raise _Damage(f"{where} has shape {ds.shape}, expected one entry per row")
    else:
        _shape_of(ds, where, (n,))
    _check_storage(ds, where)
    return _dec(ds)


def _integers(parent: h5py.Group, name: str, where: str, shape: tuple, optional: bool = False) -> np.ndarray | None:
    ds = _dataset(parent, name, where, optional)
    if ds is None:
        return None
    where = f"{where}/{name}"
    if ds.dtype.kind not in "iu":
        raise _Damage(f"{where} holds {ds.dtype} values, not integers")
    _shape_of(ds, where, shape)
    _check_storage(ds, where)
    return ds[()]


def _labels(rows: h5py.Group, task, label_names: list, n: int) -> np.ndarray:
    ds = _dataset(rows, "label", "rows")
    if ds.dtype.kind not in "iu":
        raise _Damage(f"rows/label holds {ds.dtype} values, not integers")
    if isinstance(task, str) and task in TASKS and (task == "multilabel") != (ds.ndim == 2):
        raise _Damage(f"labels do not match task '{task}' (rows/label has shape {ds.shape})")
    if ds.ndim == 2:
        _shape_of(ds, "rows/label", (n, len(label_names)))
    else:
        _shape_of(ds, "rows/label", (n,))
    _check_storage(ds, "rows/label")
    return ds[()]


def _attr(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, np.generic):
        return v.item()
    return v


def provenance(model: ModelData) -> dict:
    """The model's recorded provenance (validated when the store was opened)."""
    return json.loads(model.attrs.get("provenance", "{}"))


# ---------------------------------------------------------------- validation

def _check(data: StoreData) -> None:
    """Every value of a store, against the schema in docs/STORE.md; raises _Damage naming the first problem.
    O(rows) with small constants; the embeddings are scanned in place, never copied."""
    n = len(data)
    if not isinstance(data.task, str) or data.task not in TASKS:
        raise _Damage(f"task is {_show(data.task)} (must be one of {', '.join(TASKS)})")
    _check_label_names(data.label_names, data.task)
    for name in ("dataset_root", "manifest", "layout", "created", "updated", "medsearch_version"):
        value = data.attrs.get(name)
        if value is not None and not isinstance(value, str):
            raise _Damage(f"{name} is {_show(value)}, not a string")
    if data.attrs.get("layout") not in (None, *LAYOUTS):
        raise _Damage(f"layout is {_show(data.attrs['layout'])} (must be one of {', '.join(LAYOUTS)})")

    for name, values, optional in (("id", data.ids, False), ("source", data.sources, False),
                                   ("group", data.groups, True), ("split", data.splits, True),
                                   ("sha256", data.sha256, True)):
        if values is None and optional:
            continue
        if values is None or len(values) != n:
            raise _Damage(f"rows/{name} holds {_count(values)} entries for {n} rows")
        if any(not isinstance(v, str) for v in values):
            raise _Damage(f"rows/{name} holds a value that is not a string")
    if not all(data.ids):
        raise _Damage(f"rows/id is empty at row {data.ids.index('')} (row ids are non-empty)")
    if len(set(data.ids)) != n:
        seen: set[str] = set()
        dup = next(i for i in data.ids if i in seen or seen.add(i))
        raise _Damage(f"rows/id holds {_show(dup)} twice (row ids are unique)")
    if not all(data.sources):
        raise _Damage(f"rows/source is empty at row {data.sources.index('')}")
    _check_labels(np.asarray(data.labels), data.task, len(data.label_names), n)
    if data.sha256 is not None:
        _check_sha256(data.sha256)
    if data.file_stat is not None:
        stat = np.asarray(data.file_stat)
        if stat.shape != (n, 2) or stat.dtype.kind not in "iu":
            raise _Damage(f"rows/file_stat has shape {stat.shape} {stat.dtype}, expected ({n}, 2) integers")
        if n and stat[:, 0].min() < -1:
            row = int(np.argmax(stat[:, 0] < -1))
            raise _Damage(f"rows/file_stat holds size {stat[row, 0]} at row {row} (sizes are >= 0, or -1 when unknown)")
        if stat.dtype.kind == "u" and n and stat.max() > np.iinfo(np.int64).max:
            raise _Damage("rows/file_stat holds values beyond int64")
    for key, m in data.models.items():
        _check_model(f"models/{_printable(key)}", m, n)


def _check_label_names(names, task: str) -> None:
    if not isinstance(names, list):
        raise _Damage(f"label_names is {_show(names)}, not a list of names")
    bad = next((v for v in names if not isinstance(v, str)), None)
    if bad is not None:
        raise _Damage(f"label_names holds {_show(bad)}, not a name (label names are strings)")
    if "" in names:
        raise _Damage("label_names holds an empty name")
    if len(names) > MAX_LABEL_NAMES:
        raise _Damage(f"label_names holds {len(names)} names, more than the {MAX_LABEL_NAMES} medsearch supports "
                      "(was the label column an id?)")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(v for v in names if v in seen or seen.add(v))
        raise _Damage(f"label_names names {_show(dup)} twice (label names are unique)")
    if len(names) < 2:
        raise _Damage(f"label_names holds {len(names)} name(s); a store has at least 2 classes")
    if task == "binary" and len(names) != 2:
        raise _Damage(f"task is binary but label_names holds {len(names)} names (a binary store has exactly 2)")


def _check_labels(labels: np.ndarray, task: str, n_labels: int, n: int) -> None:
    if labels.dtype.kind not in "iu":
        raise _Damage(f"rows/label holds {labels.dtype} values, not integers")
    if task == "multilabel":
        if labels.shape != (n, n_labels):
            raise _Damage(f"rows/label has shape {labels.shape}, expected ({n}, {n_labels}) for {n_labels} label_names")
        low, high = 0, 1
        rule = "multilabel labels are 0 or 1"
    else:
        if labels.shape != (n,):
            raise _Damage(f"labels do not match task '{task}' (rows/label has shape {labels.shape}, expected ({n},))")
        low, high = 0, n_labels - 1
        rule = f"labels must be 0..{high} for {n_labels} label_names"
    if labels.size and (labels.min() < low or labels.max() > high):
        bad = np.argwhere((labels < low) | (labels > high))[0]
        where = f"row {bad[0]}" + (f", column {bad[1]}" if len(bad) > 1 else "")
        raise _Damage(f"rows/label holds {labels[tuple(bad)]} at {where} ({rule})")


def _check_sha256(values: list[str]) -> None:
    """Each entry '' or 64 lowercase hex digits (checked in bulk, then located)."""
    ok = all(len(v) in (0, 64) for v in values)
    if ok:
        joined = "".join(values)
        ok = joined.isascii() and not joined.encode("ascii").translate(None, _HEX_DIGITS)
    if not ok:
        row = next(i for i, v in enumerate(values) if v and not _SHA256.fullmatch(v))
        raise _Damage(f"rows/sha256 holds {_show(values[row])} at row {row} "
                      "(each entry is '' or 64 lowercase hex digits)")


def _check_model(where: str, m: ModelData, n: int) -> None:
    emb = m.embedding
    if not isinstance(emb, np.ndarray) or emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1:
        raise _Damage(f"{where}/embedding has shape {getattr(emb, 'shape', '?')} {getattr(emb, 'dtype', '')}, "
                      f"expected ({n}, dim) float32")
    _check_finite(emb, f"{where}/embedding")
    state = np.asarray(m.state)
    if state.shape != (n,) or state.dtype.kind not in "iu":
        raise _Damage(f"{where}/state has shape {state.shape} {state.dtype}, expected ({n},) integers")
    if n and (state.min() < PENDING or state.max() > SKIPPED):
        row = int(np.argmax((state < PENDING) | (state > SKIPPED)))
        raise _Damage(f"{where}/state holds {state[row]} at row {row} "
                      "(states are 0 pending, 1 embedded, 2 zero-filled, 3 skipped)")
    if len(m.reason) != n or any(not isinstance(v, str) for v in m.reason):
        raise _Damage(f"{where}/reason holds {_count(m.reason)} entries for {n} rows, or a value that is not a string")

    a, dim = m.attrs, emb.shape[1]
    if "dim" in a and not (_is_int(a["dim"]) and a["dim"] == dim):
        raise _Damage(f"{where} has dim {_show(a['dim'])} but its embeddings have {dim} columns")
    if not isinstance(a.get("created", ""), str):
        raise _Damage(f"{where} created is {_show(a['created'])}, not a string")
    _check_provenance(where, a.get("provenance"), dim)
    present = [k for k in INDEX_ATTRS if k in a]
    if present and len(present) < len(INDEX_ATTRS):
        missing = next(k for k in INDEX_ATTRS if k not in a)
        raise _Damage(f"{where} has {present[0]} but no {missing} (the index_* attributes come together)")
    if present:
        file = a["index_file"]
        if (not isinstance(file, str) or not file.endswith(".faiss") or file != os.path.basename(file)
                or file.startswith(".") or "\\" in file or not file.isprintable()):
            raise _Damage(f"{where} index_file is {_show(file)}, not a plain file name ending in .faiss")
        for name in ("index_type", "index_built"):
            if not isinstance(a[name], str):
                raise _Damage(f"{where} {name} is {_show(a[name])}, not a string")
        if not isinstance(a["index_sha256"], str) or not _SHA256.fullmatch(a["index_sha256"]):
            raise _Damage(f"{where} index_sha256 is {_show(a['index_sha256'])}, not 64 lowercase hex digits")
        ntotal = a["index_ntotal"]
        if not _is_int(ntotal) or not 0 <= ntotal <= n:
            raise _Damage(f"{where} index_ntotal is {_show(ntotal)}, not a count of rows (0..{n})")


def _check_finite(emb: np.ndarray, where: str) -> None:
    # min and max propagate NaN and see +-inf, and allocate nothing; only a damaged matrix is scanned again
    if emb.size == 0 or (np.isfinite(emb.min()) and np.isfinite(emb.max())):
        return
    step = max(1, (1 << 22) // emb.shape[1])
    for start in range(0, emb.shape[0], step):
        bad = np.argwhere(~np.isfinite(emb[start:start + step]))
        if bad.size:
            row, col = int(bad[0][0]) + start, int(bad[0][1])
            raise _Damage(f"{where} holds {emb[row, col]} at row {row}, column {col} (embeddings are finite)")


def _check_provenance(where: str, raw, dim: int) -> None:
    if raw is None:
        raise _Damage(f"{where} has no provenance attribute")
    prov = _json_attr(f"{where} provenance", raw, dict, "an object")
    for key in ("encoder", "preprocess", "dim"):
        if key not in prov:
            raise _Damage(f"{where} provenance lacks {key}")
    if not isinstance(prov["encoder"], str) or not prov["encoder"]:
        raise _Damage(f"{where} provenance has encoder {_show(prov['encoder'])}, not an encoder name")
    pre = prov["preprocess"]
    if not isinstance(pre, dict):
        raise _Damage(f"{where} provenance preprocess is {_show(pre)}, not an object")
    for key in ("resize", "crop", "interpolation", "norm", "mean", "std"):
        if key not in pre:
            raise _Damage(f"{where} provenance preprocess lacks {key}")
    for key in ("resize", "crop"):
        if not _is_int(pre[key]) or pre[key] < 1:
            raise _Damage(f"{where} provenance preprocess {key} is {_show(pre[key])}, not a positive integer")
    if pre["crop"] > pre["resize"]:
        raise _Damage(f"{where} provenance preprocess crop {pre['crop']} exceeds resize {pre['resize']}")
    for key in ("interpolation", "norm"):
        if not isinstance(pre[key], str):
            raise _Damage(f"{where} provenance preprocess {key} is {_show(pre[key])}, not a string")
    for key in ("mean", "std"):
        v = pre[key]
        if (not isinstance(v, list) or len(v) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                or (key == "std" and min(v) <= 0)):
            raise _Damage(f"{where} provenance preprocess {key} is {_show(v)}, not 3 finite numbers"
                          f"{' above 0' if key == 'std' else ''}")
    if prov["dim"] != dim or not _is_int(prov["dim"]):
        raise _Damage(f"{where} provenance has dim {_show(prov['dim'])} but its embeddings have {dim} columns")
    if "weights_source" in prov and not isinstance(prov["weights_source"], str):
        raise _Damage(f"{where} provenance weights_source is {_show(prov['weights_source'])}, not a string")
    if prov.get("weights_sha256") is not None and not isinstance(prov["weights_sha256"], str):
        raise _Damage(f"{where} provenance weights_sha256 is {_show(prov['weights_sha256'])}, not a string")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(values) -> str:
    return "no" if values is None else str(len(values))


def _printable(s: str) -> str:
    return s if s.isprintable() else repr(s)


def _show_json(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _show(v) -> str:
    """A value for a one-line message: short, no newlines."""
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} array of shape {v.shape}"
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- writing

def write_store(data: StoreData, directory: str | os.PathLike) -> None:
    """Write the whole store as a new file and swap it in atomically.

    The HDF5 image is built in memory and written with plain file I/O: the HDF5 library itself crashes
    (segfault on close) when the disk fills up under it, while Python's write raises a clean ENOSPC."""
    try:
        _check(data)
    except _Damage as exc:
        raise MedsearchError(f"refusing to write '{store_path(directory)}', it would be damaged: {exc}") from None
    buffer = io.BytesIO()
    _write(data, buffer)
    atomic_write_bytes(store_path(directory), buffer.getbuffer())


def _chunk_rows(n: int, dim: int) -> int:
    return max(1, min(n, (1 << 20) // (4 * max(dim, 1))))  # about 1 MiB per chunk


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
        rows.create_dataset("id", data=_enc(data.ids), dtype=_STR)
        rows.create_dataset("source", data=_enc(data.sources), dtype=_STR)
        label_dtype = np.int8 if data.task == "multilabel" else np.int64
        rows.create_dataset("label", data=np.asarray(data.labels, dtype=label_dtype))
        if data.groups is not None:
            rows.create_dataset("group", data=_enc(data.groups), dtype=_STR)
        if data.splits is not None:
            rows.create_dataset("split", data=_enc(data.splits), dtype=_STR)
        if data.sha256 is not None:
            rows.create_dataset("sha256", data=_enc(data.sha256), dtype=_STR)
        if data.file_stat is not None:
            rows.create_dataset("file_stat", data=np.asarray(data.file_stat, dtype=np.int64).reshape(n, 2))
        models = f.create_group("models")
        for key, m in data.models.items():
            g = models.create_group(key)
            g.create_dataset("embedding", data=m.embedding, dtype=np.float32,
                             chunks=(_chunk_rows(n, m.dim), m.dim) if n else None)
            g.create_dataset("state", data=m.state.astype(np.int8))
            g.create_dataset("reason", data=_enc(m.reason), dtype=_STR)
            g.attrs.update({k: v for k, v in m.attrs.items() if v is not None})
            g.attrs["dim"] = m.dim


class WriterLock:
    """Exclusive advisory lock on an index folder; released by the OS even on kill -9."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "WriterLock":
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise io_error(exc, self.path) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise MedsearchError(f"another medsearch process (pid {holder}) is writing '{self.path.parent}': "
                                 "wait for it to finish, or write to another --out folder") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


# ---------------------------------------------------------------- journal

class Journal:
    """Finished batches of one model since the last commit, one atomically written .npz per batch."""

    def __init__(self, directory: str | os.PathLike, key: str):
        self.dir = Path(directory) / JOURNAL_DIR / key
        self._next = 0

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.npz")) if self.dir.is_dir() else []

    def append(self, rows: np.ndarray, ids: list[str], embedding: np.ndarray, state: np.ndarray, reason: list[str]) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(exc, self.dir) from None
        if self._next == 0:
            existing = self.parts()
            self._next = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
        target = self.dir / f"part-{self._next:09d}.npz"
        self._next += 1

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, rows=rows.astype(np.int64), ids=np.array(ids, dtype=str),
                         embedding=embedding.astype(np.float32), state=state.astype(np.int8),
                         reason=np.array(reason, dtype=str))

        atomic_write_with(target, write)

    def replay(self, data: StoreData, key: str) -> int:
        """Apply every valid part to ``data.models[key]``; returns the number of rows applied."""
        model, applied = data.models[key], 0
        for part in self.parts():
            try:
                with np.load(part, allow_pickle=False) as z:
                    rows, ids, emb, state, reason = (z["rows"], z["ids"], z["embedding"], z["state"], z["reason"])
            except (OSError, ValueError, KeyError):
                continue  # an unreadable part is ignored: its rows stay pending and get embedded again
            if (emb.ndim != 2 or emb.shape != (len(rows), model.dim) or len(ids) != len(rows)
                    or state.shape != rows.shape or len(reason) != len(rows)
                    or rows.dtype.kind not in "iu" or rows.min(initial=0) < 0 or rows.max(initial=-1) >= len(data)
                    or any(data.ids[r] != i for r, i in zip(rows, ids))):
                continue  # not from this store (or this store's rows): never trust it
            if emb.dtype.kind != "f" or not np.isfinite(emb).all() or not np.isin(state, FINISHED).all():
                continue  # a damaged part would make the store unwritable: its rows are embedded again
            model.embedding[rows] = emb
            model.state[rows] = state
            for r, why in zip(rows, reason):
                model.reason[r] = str(why)
            applied += len(rows)
        return applied

    def clear(self) -> None:
        for part in self.parts():
            part.unlink(missing_ok=True)
        if self.dir.is_dir():
            fsync_path(self.dir)
