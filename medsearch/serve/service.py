"""The server's warm state: per index folder, the store's current snapshot and, for it, the FAISS indexes,
fused embeddings and saved heads; encoders are kept across snapshots (they depend only on the provenance).

A snapshot is one consistent reading of the store. Each request asks for the current one: the store's manifest
(``store.json``, or a format-1 ``store.h5``) is stat-ed, and when `index` has swapped in a new one since, the
store is read again; requests already running keep the snapshot they started with (its segment files stay
open), so a commit is picked up at the next request and never read half-written.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MedsearchError
from ..storage.manifest import MANIFEST_FILE
from ..storage.schema import STORE_FILE
from ..storage.store import ModelData, StoreData, provenance, read_store
from .errors import HttpError


def _stamp(directory: Path):
    """What changes when a commit swaps the store's manifest in (a new file: new inode and mtime)."""
    for name in (MANIFEST_FILE, STORE_FILE):
        try:
            st = os.stat(directory / name)
        except FileNotFoundError:
            continue
        return name, st.st_ino, st.st_mtime_ns, st.st_size
    return None


@dataclass
class Snapshot:
    """One reading of a store, with the look-ups the server needs: row of each id, rows of each content hash
    and of each patient group, and the rows a search may return (not removed)."""

    data: StoreData
    generation: str
    row_of: dict[str, int] = field(default_factory=dict)
    rows_of_sha: dict[str, list[int]] = field(default_factory=dict)
    rows_of_group: dict[str, list[int]] = field(default_factory=dict)
    npz_arrays: dict = field(default_factory=dict, repr=False)   # split -> image array, read when first needed

    @classmethod
    def read(cls, directory: Path) -> "Snapshot":
        data = read_store(directory)
        origin = getattr(data, "origin", None)
        generation = str(origin.manifest.generation) if origin is not None else f"f1-{_stamp(directory)[2]}"
        snap = cls(data, generation, row_of={rid: r for r, rid in enumerate(data.ids)})
        for r, sha in enumerate(data.sha256 or ()):
            if sha:
                snap.rows_of_sha.setdefault(sha, []).append(r)
        for r, group in enumerate(data.groups or ()):
            if group:
                snap.rows_of_group.setdefault(group, []).append(r)
        return snap

    def row(self, case_id: str) -> int:
        """The row of a stored id; 404 for an id the store does not hold (or holds as removed)."""
        row = self.row_of.get(case_id)
        if row is None or self.data.is_removed()[row]:
            raise HttpError(404, f"no stored case with id '{case_id[:120]}' in this index: "
                                 "see the ids /api/indexes/{index}/cases lists")
        return row


class IndexService:
    """One index folder served under ``name``: its snapshot and warm search state."""

    def __init__(self, name: str, directory, *, device: str = "cpu"):
        self.name, self.directory, self.device = name, Path(directory).resolve(), device
        self._lock = threading.RLock()
        self._stamp = None
        self._snap: Snapshot | None = None
        self._encoders: dict[str, object] = {}
        self._warm: dict[tuple, object] = {}   # (generation, what, model key) -> searcher / fused model / head

    def snapshot(self) -> Snapshot:
        """The store as it is now: re-read when its manifest changed since the last request."""
        stamp = _stamp(self.directory)
        with self._lock:
            if self._snap is None or stamp != self._stamp:
                snap = Snapshot.read(self.directory)
                self._warm = {k: v for k, v in self._warm.items() if k[0] == snap.generation}
                self._snap, self._stamp = snap, stamp
            return self._snap

    def _cached(self, key: tuple, make):
        with self._lock:
            if key not in self._warm:
                self._warm[key] = make()
            return self._warm[key]

    def model(self, snap: Snapshot, key: str | None) -> tuple[str, ModelData]:
        """A stored model (None: the first), or a fusion 'a+b' of stored models built from their embeddings (kept
        per snapshot)."""
        from ..evaluation.fusion import fuse, is_fused

        if key and is_fused(key):
            return key, self._cached((snap.generation, "fused", key), lambda: fuse(snap.data, key))
        return snap.data.model(key or next(iter(snap.data.models), None))

    def searcher(self, snap: Snapshot, key: str, m: ModelData):
        """The FAISS index of a stored model and its SearchInfo (a flat index over a fusion's vectors)."""
        from ..evaluation.fusion import is_fused
        from ..search.query import check_index_current, searcher

        def load():
            if is_fused(key):
                return searcher(self.directory, key, m, True)
            check_index_current(key, m)
            return searcher(self.directory, key, m, False)
        return self._cached((snap.generation, "index", key), load)

    def encoder(self, m: ModelData):
        """The encoder the model's embeddings were made with (the same one for every snapshot)."""
        from ..search.query import encoder_for

        recorded = json.dumps(provenance(m), sort_keys=True)
        with self._lock:
            if recorded not in self._encoders:
                self._encoders[recorded] = encoder_for(m, device=self.device)
            return self._encoders[recorded]

    def head(self, snap: Snapshot, key: str, m: ModelData):
        """The head `eval --save-head` saved last for this model or fusion (INDEX/heads/<model>-<head>.npz, any
        savable head: lr, linear-svc, mlp, dvme), if one fits this store; None otherwise."""
        def load():
            from ..evaluation.heads import SAVABLE_HEADS
            from ..search.query import load_saved_head

            folder = self.directory / "heads"
            saved = [path for name in SAVABLE_HEADS if (path := folder / f"{key}-{name}.npz").is_file()]
            for path in sorted(saved, key=lambda path: path.stat().st_mtime_ns, reverse=True):
                try:
                    return load_saved_head(str(path), self.directory, snap.data, key, m)
                except MedsearchError:
                    continue
            return None
        return self._cached((snap.generation, "head", key), load)

    def model_keys(self, snap: Snapshot) -> list[str]:
        """The models a page offers: each stored model, and the fusion of all of them when there are several."""
        keys = list(snap.data.models)
        return keys + (["+".join(keys)] if 1 < len(keys) <= 3 else [])


class Service:
    """Every served index, by name (the folder's name, made unique)."""

    def __init__(self, index_dirs, *, device: str = "cpu"):
        self.indexes: dict[str, IndexService] = {}
        for directory in index_dirs:
            path = Path(directory).resolve()
            if not path.is_dir():
                raise MedsearchError(f"--index '{directory}' is not a folder: give an index folder made by "
                                     "`medsearch index`")
            name = base = path.name or "index"
            n = 2
            while name in self.indexes:
                name, n = f"{base}-{n}", n + 1
            self.indexes[name] = IndexService(name, path, device=device)
        if not self.indexes:
            raise MedsearchError("give at least one --index folder to serve")

    def get(self, name: str) -> IndexService:
        service = self.indexes.get(name)
        if service is None:
            raise HttpError(404, f"no index named '{name[:120]}' is served here: see /api/indexes")
        return service


def usable_mask(data: StoreData, m: ModelData) -> np.ndarray:
    """Rows a search of model ``m`` may return."""
    mask = np.zeros(len(data), dtype=bool)
    mask[m.usable()] = True
    return mask & ~data.is_removed()
