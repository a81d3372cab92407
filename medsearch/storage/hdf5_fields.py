"""Typed reads of the store's HDF5 attributes, groups and datasets. Each checks kind, dtype and shape before
reading, and that the file really holds the bytes a dataset declares, so a damaged or hostile file raises
Damage naming the field instead of allocating or misreading; the values themselves are checked afterwards by
validation.check_store."""
from __future__ import annotations

import h5py
import numpy as np

from .schema import TASKS
from .validation import Damage, json_attr


def encode_strings(values) -> np.ndarray:
    """Strings as UTF-8 bytes for an HDF5 string dataset."""
    # surrogateescape keeps file names that are not valid UTF-8 round-trippable
    return np.array([v.encode("utf-8", "surrogateescape") for v in values], dtype=object)


def _dec(ds) -> list[str]:
    return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v) for v in ds[()]]


def plain_attr(v):
    """An HDF5 attribute as plain Python: bytes decoded, numpy scalars unwrapped."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, np.generic):
        return v.item()
    return v


def required_attr(attrs: dict, name: str):
    if name not in attrs:
        raise Damage(f"the root attribute {name} is missing")
    return attrs[name]


def label_names_attr(raw) -> list[str]:
    return json_attr("label_names", raw, list, "a list of names")


def group(parent: h5py.Group, name: str, where: str) -> h5py.Group:
    obj = parent.get(name)
    if obj is None:
        raise Damage(f"the {where} group is missing")
    if not isinstance(obj, h5py.Group):
        raise Damage(f"{where} is not a group")
    return obj


def dataset(parent: h5py.Group, name: str, where: str, optional: bool = False) -> h5py.Dataset | None:
    obj = parent.get(name)
    if obj is None:
        if optional:
            return None
        raise Damage(f"{where}/{name} is missing")
    if not isinstance(obj, h5py.Dataset):
        raise Damage(f"{where}/{name} is not a dataset")
    return obj


def check_storage(ds: h5py.Dataset, where: str) -> None:
    """Refuse a dataset that declares more entries than the file holds (reading it would allocate them all)."""
    if ds.size == 0 or ds.id.get_create_plist().get_nfilters():
        return  # compressed data cannot be sized this way; the store itself never compresses
    stored = ds.id.get_storage_size()
    if stored < ds.size * ds.dtype.itemsize:
        raise Damage(f"{where} declares shape {ds.shape} but the file holds only {stored} bytes of it")


def _shape_of(ds: h5py.Dataset, where: str, shape: tuple) -> None:
    if ds.shape != shape:
        raise Damage(f"{where} has shape {ds.shape}, expected {shape}")


def strings(parent: h5py.Group, name: str, where: str, n: int | None = None,
            optional: bool = False) -> list[str] | None:
    ds = dataset(parent, name, where, optional)
    if ds is None:
        return None
    where = f"{where}/{name}"
    if h5py.check_string_dtype(ds.dtype) is None:
        raise Damage(f"{where} holds {ds.dtype} values, not strings")
    if n is None:
        if ds.ndim != 1:
            raise Damage(f"{where} has shape {ds.shape}, expected one entry per row")
    else:
        _shape_of(ds, where, (n,))
    check_storage(ds, where)
    return _dec(ds)


def integers(parent: h5py.Group, name: str, where: str, shape: tuple, optional: bool = False) -> np.ndarray | None:
    ds = dataset(parent, name, where, optional)
    if ds is None:
        return None
    where = f"{where}/{name}"
    if ds.dtype.kind not in "iu":
        raise Damage(f"{where} holds {ds.dtype} values, not integers")
    _shape_of(ds, where, shape)
    check_storage(ds, where)
    return ds[()]


def labels(rows: h5py.Group, task, label_names: list, n: int) -> np.ndarray:
    ds = dataset(rows, "label", "rows")
    if ds.dtype.kind not in "iu":
        raise Damage(f"rows/label holds {ds.dtype} values, not integers")
    if isinstance(task, str) and task in TASKS and (task == "multilabel") != (ds.ndim == 2):
        raise Damage(f"labels do not match task '{task}' (rows/label has shape {ds.shape})")
    if ds.ndim == 2:
        _shape_of(ds, "rows/label", (n, len(label_names)))
    else:
        _shape_of(ds, "rows/label", (n,))
    check_storage(ds, "rows/label")
    return ds[()]

