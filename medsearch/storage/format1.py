"""Format 1 of the store: one ``store.h5`` holding every row and every model's embeddings, rewritten whole by
each commit. medsearch still reads it (whole, validated as before) and upgrades it to format 2 on the next write
(segmented.py); the writer is kept for the compatibility tests and for users who must hand a store to an older
medsearch."""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import MedsearchError
from . import hdf5_fields as fields
from .atomic import atomic_write_bytes
from .schema import FORMAT, STORE_FILE
from .validation import Damage, check_store, is_int, printable_key, show

_STR = h5py.string_dtype("utf-8")
FORMAT_VERSION_WHOLE = 1


def read_format1(f: h5py.File, path: Path, max_version: int):
    """The whole store in ``f``, validated."""
    return _read(f, path, max_version)


def write_format1(data, directory: str | os.PathLike) -> None:
    """Write ``data`` as a format-1 ``store.h5`` (atomically)."""
    try:
        check_store(data)
    except Damage as exc:
        raise MedsearchError(f"refusing to write '{Path(directory) / STORE_FILE}', it would be damaged: {exc}") from None
    buffer = io.BytesIO()
    _write(data, buffer)
    atomic_write_bytes(Path(directory) / STORE_FILE, buffer.getbuffer())


def _read(f: h5py.File, path: Path, max_version: int):
    root = {k: fields.plain_attr(v) for k, v in f.attrs.items()}
    if not (isinstance(root.get("format"), str) and root["format"] == FORMAT):
        raise MedsearchError(f"'{path}' is an HDF5 file but not a medsearch store: rebuild it with `medsearch index`")
    version = fields.required_attr(root, "format_version")
    if not is_int(version):
        raise Damage(f"format_version is {show(version)}, not an integer")
    if version > max_version:
        raise MedsearchError(f"'{path}' has store format {version}; this medsearch reads up to {max_version}: upgrade medsearch")
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


def _read_rows(f: h5py.File, root: dict):
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
    from .store import StoreData
    return StoreData(ids, sources, labels, label_names, task, groups, splits, root,
                     sha256=sha256, file_stat=file_stat)


def _read_model(g, key: str, n: int):
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
    from .store import ModelData
    return ModelData(emb[()], state, reason, attrs)


def _chunk_rows(n: int, dim: int) -> int:
    return max(1, min(n, (1 << 20) // (4 * max(dim, 1))))  # about 1 MiB per chunk


def _put_strings(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=fields.encode_strings(values), dtype=_STR)


def _write(data, path) -> None:
    n = len(data)
    with h5py.File(path, "w") as f:
        f.attrs.update({k: v for k, v in data.attrs.items() if v is not None})
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION_WHOLE
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
            g.create_dataset("embedding", data=np.asarray(m.embedding), dtype=np.float32,
                             chunks=(_chunk_rows(n, m.dim), m.dim) if n else None)
            g.create_dataset("state", data=m.state.astype(np.int8))
            _put_strings(g, "reason", m.reason)
            g.attrs.update({k: v for k, v in m.attrs.items() if v is not None})
            g.attrs["dim"] = m.dim
