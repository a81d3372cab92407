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
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .atomic import atomic_write_bytes, atomic_write_with, fsync_path, io_error
from .errors import MedsearchError

FORMAT = "medsearch-store"
FORMAT_VERSION = 1
STORE_FILE = "store.h5"
JOURNAL_DIR = ".journal"
LOCK_FILE = ".lock"
PENDING, EMBEDDED, ZERO_FILLED, SKIPPED = 0, 1, 2, 3
STATE_NAMES = {PENDING: "pending", EMBEDDED: "embedded", ZERO_FILLED: "zero-filled", SKIPPED: "skipped"}
_STR = h5py.string_dtype("utf-8")


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
    """A whole store in memory. Labels: int64 (n,) class indices, or int8 (n, L) multi-hot for multilabel."""

    ids: list[str]
    sources: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str
    groups: list[str] | None = None
    splits: list[str] | None = None
    attrs: dict = field(default_factory=dict)
    models: dict[str, ModelData] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

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


def read_store(directory: str | os.PathLike) -> StoreData:
    """Load and validate a store. Raises MedsearchError for a missing, foreign or damaged file."""
    path = store_path(directory)
    if not path.exists():
        raise MedsearchError(f"no medsearch store at '{directory}' (missing {STORE_FILE}): "
                             "build one with `medsearch index DATASET --out DIR`")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except MedsearchError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise MedsearchError(f"'{path}' is not a readable medsearch store ({str(exc).splitlines()[0]}): "
                             "rebuild it with `medsearch index`") from None


def _read(f: h5py.File, path: Path) -> StoreData:
    if f.attrs.get("format") != FORMAT:
        raise MedsearchError(f"'{path}' is an HDF5 file but not a medsearch store: rebuild it with `medsearch index`")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION or version < 1:
        raise MedsearchError(f"'{path}' has store format {version}; this medsearch reads up to {FORMAT_VERSION}: upgrade medsearch")
    rows = f["rows"]
    ids, sources = _dec(rows["id"]), _dec(rows["source"])
    labels = rows["label"][()]
    n = len(ids)
    label_names = json.loads(f.attrs["label_names"])
    task = str(f.attrs["task"])
    if len(sources) != n or len(labels) != n:
        raise MedsearchError(f"'{path}' is damaged: row datasets disagree in length; rebuild it with `medsearch index`")
    if (task == "multilabel") != (labels.ndim == 2) or (labels.ndim == 2 and labels.shape[1] != len(label_names)):
        raise MedsearchError(f"'{path}' is damaged: labels do not match task '{task}'; rebuild it with `medsearch index`")
    groups = _dec(rows["group"]) if "group" in rows else None
    splits = _dec(rows["split"]) if "split" in rows else None
    attrs = {k: _attr(v) for k, v in f.attrs.items()}
    data = StoreData(ids, sources, labels, label_names, task, groups, splits, attrs)
    for key, g in f.get("models", {}).items():
        emb, state = g["embedding"][()], g["state"][()]
        if emb.ndim != 2 or emb.shape[0] != n or state.shape != (n,) or emb.dtype != np.float32:
            raise MedsearchError(f"'{path}' is damaged: model '{key}' has embeddings of shape {emb.shape} for {n} rows; "
                                 "re-run `medsearch index` for it")
        data.models[key] = ModelData(emb, state.astype(np.int8), _dec(g["reason"]), {k: _attr(v) for k, v in g.attrs.items()})
    return data


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def provenance(model: ModelData) -> dict:
    return json.loads(model.attrs.get("provenance", "{}"))


# ---------------------------------------------------------------- writing

def write_store(data: StoreData, directory: str | os.PathLike) -> None:
    """Write the whole store as a new file and swap it in atomically.

    The HDF5 image is built in memory and written with plain file I/O: the HDF5 library itself crashes
    (segfault on close) when the disk fills up under it, while Python's write raises a clean ENOSPC."""
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
                    or rows.min(initial=0) < 0 or rows.max(initial=-1) >= len(data)
                    or any(data.ids[r] != i for r, i in zip(rows, ids))):
                continue  # not from this store (or this store's rows): never trust it
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
