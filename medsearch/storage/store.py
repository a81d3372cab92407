"""The embedding store: rows (ids, sources, labels, groups, splits) and, per model, each row's embedding.

Format 2 (segmented.py, docs/STORE.md) keeps immutable HDF5 segments listed by a small manifest, so a commit
writes only what changed and a reader loads the row metadata but reads embeddings by row, when it uses them.
Format 1, one whole ``store.h5``, is still read (format1.py) and upgraded by the next write.
Durability: files are never modified in place; a commit writes new files and swaps the manifest in atomically
(atomic.py), so a reader keeps a whole snapshot and a crash never corrupts a store. Between commits, finished
batches go to a journal (journal.py). One writer at a time (lock.py); readers take no lock. Metadata is
validated whole when a store is opened, embeddings as they are read (validation.py). Nothing is pickled.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .embeddings import Embeddings
from .row_headers import RowHeaders
from .manifest import MANIFEST_FILE
from .schema import EMBEDDED, FORMAT_VERSION, REBUILD, STORE_FILE, ZERO_FILLED
from .validation import Damage, first_line
from ..errors import MedsearchError

__all__ = ["LabelledRows", "ModelData", "StoreData", "model_key", "store_path", "store_exists", "read_store",
           "write_store", "commit_store", "provenance", "RowHeaders"]


def model_key(name: str) -> str:
    """Store key (HDF5 group, index file name) of a model spec or --name: 'timm:resnet18' -> 'timm_resnet18'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


@dataclass
class ModelData:
    """One model's embeddings of every row, each row's state, and the model's attributes."""

    embedding: np.ndarray | Embeddings   # float32 (n, dim); read by rows from a format-2 store
    state: np.ndarray              # int8 (n,), PENDING / EMBEDDED / ZERO_FILLED / SKIPPED
    reason: list[str]              # why a row was skipped or zero-filled, '' otherwise
    attrs: dict = field(default_factory=dict)   # provenance (JSON), index_* attributes
    changed: set = field(default_factory=set, repr=False, compare=False)  # rows to commit (state, reason)

    def touch(self, rows) -> None:
        """Rows whose state, reason or embedding changed since the last commit."""
        self.changed.update(int(r) for r in np.atleast_1d(rows))

    @property
    def dim(self) -> int:
        return self.embedding.shape[1]

    def usable(self) -> np.ndarray:
        """Row numbers that have an embedding a search may return."""
        return np.flatnonzero((self.state == EMBEDDED) | (self.state == ZERO_FILLED))

    def index_is_current(self) -> bool:
        """Whether the recorded FAISS index answers with exactly the usable rows (rows it holds beyond them are
        removed rows that every search leaves out, counted by ``index_filtered``)."""
        ntotal = self.attrs.get("index_ntotal")
        filtered = int(self.attrs.get("index_filtered", 0))
        return ntotal is not None and int(ntotal) - filtered == int(self.usable().size)


@dataclass
class LabelledRows:
    """Rows with their labels, as a dataset yields them and a store keeps them: ids, sources, labels (int64 (n,)
    class indices, or int8 (n, L) multi-hot for multilabel) named by ``label_names``, the task, and the optional
    patient groups and official split; ``header``: for DICOM rows, the hashed study and series and the few
    non-identifying header fields (row_headers.py), None where the dataset has no DICOM."""

    ids: list[str]
    sources: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str
    groups: list[str] | None = None
    splits: list[str] | None = None
    header: RowHeaders | None = field(default=None, kw_only=True)

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
    # rows deleted from the dataset: gone from search at once, dropped from the files by compaction
    removed: np.ndarray | None = None            # bool (n,)
    changed: set = field(default_factory=set, repr=False, compare=False)  # rows to commit (row fields)
    origin: object = field(default=None, repr=False, compare=False)     # segmented.Origin of a format-2 read

    def touch(self, rows) -> None:
        """Rows whose fields (id, source, label, group, split, fingerprint, removed) changed or were added."""
        self.changed.update(int(r) for r in np.atleast_1d(rows))

    def is_removed(self) -> np.ndarray:
        return self.removed if self.removed is not None else np.zeros(len(self), dtype=bool)

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
    """The format-1 store file of an index folder (format 2 keeps ``store.json`` and ``segments/``)."""
    return Path(directory) / STORE_FILE


def store_exists(directory: str | os.PathLike) -> bool:
    """Whether the folder holds a store of either format."""
    return (Path(directory) / MANIFEST_FILE).exists() or store_path(directory).exists()


# what h5py, numpy and json raise on a file whose structure is not what the schema says
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError)


def read_store(directory: str | os.PathLike) -> StoreData:
    """Open a store and validate its metadata whole (docs/STORE.md, "Validation"); a format-2 store's embeddings
    are read by rows when used, and checked then. Raises MedsearchError, one line, for a missing, unreadable,
    foreign or damaged store: a damaged one is refused, never read partially."""
    from .format1 import read_format1
    from .segmented import read_segmented

    manifest = Path(directory) / MANIFEST_FILE
    path = manifest if manifest.exists() else store_path(directory)
    if not path.exists():
        raise MedsearchError(f"no medsearch store at '{directory}' (missing {MANIFEST_FILE} or {STORE_FILE}): "
                             "build one with `medsearch index DATASET --out DIR`")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise MedsearchError(f"cannot read '{path}' ({exc.strerror or exc}): check that it is a readable file") from None
    try:
        if path == manifest:
            return read_segmented(Path(directory))
        try:
            f = h5py.File(path, "r")
        except _READ_ERRORS as exc:
            raise MedsearchError(f"'{path}' is not a readable medsearch store ({first_line(exc)}): {REBUILD}") from None
        with f:
            return read_format1(f, path, FORMAT_VERSION)
    except MedsearchError:
        raise
    except Damage as exc:
        raise MedsearchError(f"'{path}' is damaged: {exc}; {REBUILD}") from None
    except MemoryError as exc:
        raise MedsearchError(f"not enough memory to read '{path}' ({first_line(exc)}): "
                             "use a machine with more memory") from None
    except _READ_ERRORS as exc:
        raise MedsearchError(f"'{path}' is damaged ({type(exc).__name__}: {first_line(exc)}); {REBUILD}") from None


def provenance(model: ModelData) -> dict:
    """The model's recorded provenance (validated when the store was opened)."""
    return json.loads(model.attrs.get("provenance", "{}"))


# ---------------------------------------------------------------- writing

def write_store(data: StoreData, directory: str | os.PathLike) -> None:
    """Write the whole store as new format-2 segments and swap the manifest in atomically; what it replaces
    (older segments, a format-1 store.h5) is removed afterwards. Refuses a store that would not open."""
    from .segmented import write_whole

    write_whole(data, Path(directory))


def commit_store(data: StoreData, directory: str | os.PathLike) -> None:
    """Make ``data``'s changes durable: one new segment with the rows marked changed (``touch``) and the
    embeddings written since the last commit, then the manifest. A store not read from this folder's current
    manifest (new, format 1, or changed by another writer) is written whole instead."""
    from .segmented import commit

    commit(data, Path(directory))
