"""Every value of a store against the schema in docs/STORE.md, checked when a store is opened and before one
is written, so that a damaged store is refused whole and never written. Each failure raises Damage, one line
naming the first bad field; read_store and write_store add the file's path."""
from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MedsearchError
from .schema import (HEADER_COLUMNS, HEADER_IDS, ID_HASH_HEX, INDEX_ATTRS, LAYOUTS, MAX_HEADER_VALUE,
                     MAX_LABEL_NAMES, PENDING, SHA256_HEX, SKIPPED, TASKS)

if TYPE_CHECKING:
    from .store import ModelData, StoreData

_HEX_DIGITS = b"0123456789abcdef"


class Damage(Exception):
    """What is wrong with a store, in one line and without its path (read_store and write_store add it)."""


def check_store(data: StoreData) -> None:
    """Every value of a store, against the schema in docs/STORE.md; raises Damage naming the first problem.
    O(rows) with small constants; the embeddings are scanned in place, never copied."""
    n = len(data)
    if not isinstance(data.task, str) or data.task not in TASKS:
        raise Damage(f"task is {show(data.task)} (must be one of {', '.join(TASKS)})")
    _check_label_names(data.label_names, data.task)
    for name in ("dataset_root", "manifest", "layout", "created", "updated", "medsearch_version"):
        value = data.attrs.get(name)
        if value is not None and not isinstance(value, str):
            raise Damage(f"{name} is {show(value)}, not a string")
    if data.attrs.get("layout") not in (None, *LAYOUTS):
        raise Damage(f"layout is {show(data.attrs['layout'])} (must be one of {', '.join(LAYOUTS)})")
    _check_rows(data, n)
    _check_labels(np.asarray(data.labels), data.task, len(data.label_names), n)
    if data.sha256 is not None:
        _check_sha256(data.sha256)
    if getattr(data, "header", None) is not None:
        check_header(data.header, n)
    if data.file_stat is not None:
        _check_file_stat(np.asarray(data.file_stat), n)
    removed = getattr(data, "removed", None)
    if removed is not None and np.asarray(removed).shape != (n,):
        raise Damage(f"rows/removed has shape {np.asarray(removed).shape}, expected ({n},)")
    for key, m in data.models.items():
        _check_model(f"models/{printable_key(key)}", m, n)


def _check_rows(data: StoreData, n: int) -> None:
    """The string columns: one string per row; ids non-empty and unique, sources non-empty."""
    for name, values, optional in (("id", data.ids, False), ("source", data.sources, False),
                                   ("group", data.groups, True), ("split", data.splits, True),
                                   ("sha256", data.sha256, True)):
        if values is None and optional:
            continue
        if values is None or len(values) != n:
            raise Damage(f"rows/{name} holds {_count(values)} entries for {n} rows")
        if not all_strings(values):
            raise Damage(f"rows/{name} holds a value that is not a string")
    if not all(data.ids):
        raise Damage(f"rows/id is empty at row {data.ids.index('')} (row ids are non-empty)")
    if len(set(data.ids)) != n:
        seen: set[str] = set()
        dup = next(i for i in data.ids if i in seen or seen.add(i))
        raise Damage(f"rows/id holds {show(dup)} twice (row ids are unique)")
    if not all(data.sources):
        raise Damage(f"rows/source is empty at row {data.sources.index('')}")


def check_header(header, n: int) -> None:
    """The DICOM header columns: only the schema's columns (so nothing else of a header can be stored), one
    string per row; hashed ids '' or ID_HASH_HEX lowercase hex digits; fields short and printable; and the
    record of how the ids were hashed."""
    columns, ids = getattr(header, "columns", None), getattr(header, "ids", None)
    if not isinstance(columns, dict):
        raise Damage(f"rows/header is {show(header)}, not header columns")
    for name, values in columns.items():
        where = f"rows/header/{printable_key(str(name))}"
        if name not in HEADER_COLUMNS:
            raise Damage(f"{where} is not a column a store may hold (only {', '.join(HEADER_COLUMNS)})")
        if not isinstance(values, list) or len(values) != n or not all_strings(values):
            raise Damage(f"{where} holds {_count(values) if isinstance(values, list) else show(values)} entries for "
                         f"{n} rows, or a value that is not a string")
        if name in HEADER_IDS:
            _check_hex(values, ID_HASH_HEX, where)
        elif values and (max(map(len, values)) > MAX_HEADER_VALUE or not "".join(values).isprintable()):
            row = next(i for i, v in enumerate(values) if len(v) > MAX_HEADER_VALUE or not v.isprintable())
            raise Damage(f"{where} holds {show(values[row])} at row {row} (a field is at most "
                         f"{MAX_HEADER_VALUE} printable characters)")
    if not isinstance(ids, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ids.items()):
        raise Damage(f"the root attribute dicom_ids is {show(ids)}, not an object of strings")
    check = ids.get("key_check", "")
    if len(check) != 16 or check.strip("0123456789abcdef"):
        raise Damage(f"the root attribute dicom_ids has key_check {show(check)}, not 16 lowercase hex digits")


def _check_hex(values: list[str], digits: int, where: str) -> None:
    """Each entry '' or ``digits`` lowercase hex digits (checked in bulk, then located)."""
    ok = set(map(len, values)) <= {0, digits}
    if ok:
        joined = "".join(values)
        ok = joined.isascii() and not joined.encode("ascii").translate(None, _HEX_DIGITS)
    if not ok:
        row = next(i for i, v in enumerate(values) if v and (len(v) != digits or v.strip("0123456789abcdef")))
        raise Damage(f"{where} holds {show(values[row])} at row {row} (each entry is '' or a keyed hash of "
                     f"{digits} lowercase hex digits)")


def _check_file_stat(stat: np.ndarray, n: int) -> None:
    if stat.shape != (n, 2) or stat.dtype.kind not in "iu":
        raise Damage(f"rows/file_stat has shape {stat.shape} {stat.dtype}, expected ({n}, 2) integers")
    if n and stat[:, 0].min() < -1:
        row = int(np.argmax(stat[:, 0] < -1))
        raise Damage(f"rows/file_stat holds size {stat[row, 0]} at row {row} (sizes are >= 0, or -1 when unknown)")
    if stat.dtype.kind == "u" and n and stat.max() > np.iinfo(np.int64).max:
        raise Damage("rows/file_stat holds values beyond int64")


def _check_label_names(names, task: str) -> None:
    if not isinstance(names, list):
        raise Damage(f"label_names is {show(names)}, not a list of names")
    bad = next((v for v in names if not isinstance(v, str)), None)
    if bad is not None:
        raise Damage(f"label_names holds {show(bad)}, not a name (label names are strings)")
    if "" in names:
        raise Damage("label_names holds an empty name")
    if len(names) > MAX_LABEL_NAMES:
        raise Damage(f"label_names holds {len(names)} names, more than the {MAX_LABEL_NAMES} medsearch supports "
                      "(was the label column an id?)")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(v for v in names if v in seen or seen.add(v))
        raise Damage(f"label_names names {show(dup)} twice (label names are unique)")
    if len(names) < 2:
        raise Damage(f"label_names holds {len(names)} name(s); a store has at least 2 classes")
    if task == "binary" and len(names) != 2:
        raise Damage(f"task is binary but label_names holds {len(names)} names (a binary store has exactly 2)")


def _check_labels(labels: np.ndarray, task: str, n_labels: int, n: int) -> None:
    if labels.dtype.kind not in "iu":
        raise Damage(f"rows/label holds {labels.dtype} values, not integers")
    if task == "multilabel":
        if labels.shape != (n, n_labels):
            raise Damage(f"rows/label has shape {labels.shape}, expected ({n}, {n_labels}) for {n_labels} label_names")
        low, high = 0, 1
        rule = "multilabel labels are 0 or 1"
    else:
        if labels.shape != (n,):
            raise Damage(f"labels do not match task '{task}' (rows/label has shape {labels.shape}, expected ({n},))")
        low, high = 0, n_labels - 1
        rule = f"labels must be 0..{high} for {n_labels} label_names"
    if labels.size and (labels.min() < low or labels.max() > high):
        bad = np.argwhere((labels < low) | (labels > high))[0]
        where = f"row {bad[0]}" + (f", column {bad[1]}" if len(bad) > 1 else "")
        raise Damage(f"rows/label holds {labels[tuple(bad)]} at {where} ({rule})")


def _check_sha256(values: list[str]) -> None:
    """Each entry '' or 64 lowercase hex digits (checked in bulk, then located)."""
    ok = set(map(len, values)) <= {0, 64}
    if ok:
        joined = "".join(values)
        ok = joined.isascii() and not joined.encode("ascii").translate(None, _HEX_DIGITS)
    if not ok:
        row = next(i for i, v in enumerate(values) if v and not SHA256_HEX.fullmatch(v))
        raise Damage(f"rows/sha256 holds {show(values[row])} at row {row} "
                      "(each entry is '' or 64 lowercase hex digits)")


def _check_model(where: str, m: ModelData, n: int) -> None:
    emb = m.embedding
    shape = tuple(getattr(emb, "shape", ()))
    if getattr(emb, "dtype", None) != np.float32 or len(shape) != 2 or shape[0] != n or shape[1] < 1:
        raise Damage(f"{where}/embedding has shape {getattr(emb, 'shape', '?')} {getattr(emb, 'dtype', '')}, "
                      f"expected ({n}, dim) float32")
    if isinstance(emb, np.ndarray):  # a format-2 store's embeddings are checked as they are read
        _check_finite(emb, f"{where}/embedding")
    state = np.asarray(m.state)
    if state.shape != (n,) or state.dtype.kind not in "iu":
        raise Damage(f"{where}/state has shape {state.shape} {state.dtype}, expected ({n},) integers")
    if n and (state.min() < PENDING or state.max() > SKIPPED):
        row = int(np.argmax((state < PENDING) | (state > SKIPPED)))
        raise Damage(f"{where}/state holds {state[row]} at row {row} "
                      "(states are 0 pending, 1 embedded, 2 zero-filled, 3 skipped)")
    if len(m.reason) != n or not all_strings(m.reason):
        raise Damage(f"{where}/reason holds {_count(m.reason)} entries for {n} rows, or a value that is not a string")

    check_model_attrs(where, m.attrs, shape[1], n)


def check_model_attrs(where: str, a: dict, dim: int, n: int) -> None:
    """A model's attributes: dim, created, provenance and the index_* record, for a store of ``n`` rows."""
    if "dim" in a and not (is_int(a["dim"]) and a["dim"] == dim):
        raise Damage(f"{where} has dim {show(a['dim'])} but its embeddings have {dim} columns")
    if not isinstance(a.get("created", ""), str):
        raise Damage(f"{where} created is {show(a['created'])}, not a string")
    _check_provenance(where, a.get("provenance"), dim)
    present = [k for k in INDEX_ATTRS if k in a]
    if present and len(present) < len(INDEX_ATTRS):
        missing = next(k for k in INDEX_ATTRS if k not in a)
        raise Damage(f"{where} has {present[0]} but no {missing} (the index_* attributes come together)")
    if present:
        file = a["index_file"]
        if (not isinstance(file, str) or not file.endswith(".faiss") or file != os.path.basename(file)
                or file.startswith(".") or "\\" in file or not file.isprintable()):
            raise Damage(f"{where} index_file is {show(file)}, not a plain file name ending in .faiss")
        for name in ("index_type", "index_built"):
            if not isinstance(a[name], str):
                raise Damage(f"{where} {name} is {show(a[name])}, not a string")
        if not isinstance(a["index_sha256"], str) or not SHA256_HEX.fullmatch(a["index_sha256"]):
            raise Damage(f"{where} index_sha256 is {show(a['index_sha256'])}, not 64 lowercase hex digits")
        ntotal = a["index_ntotal"]
        if not is_int(ntotal) or not 0 <= ntotal <= n:
            raise Damage(f"{where} index_ntotal is {show(ntotal)}, not a count of rows (0..{n})")
        _check_index_quality(where, a)
        if "index_shards" in a:
            from .shard_files import shard_records

            try:
                shard_records(a)
            except MedsearchError as exc:
                what = str(exc).split("damaged: ", 1)[-1].split("; rebuild")[0]
                raise Damage(f"{where} index_shards: {what}") from None


def _check_index_quality(where: str, a: dict) -> None:
    """The record of how exact an index's answers are (optional: stores indexed before it was kept lack it)."""
    recall = a.get("index_recall_at_10", 1.0)
    if isinstance(recall, bool) or not isinstance(recall, (int, float)) or not (math.isnan(recall) or 0 <= recall <= 1):
        raise Damage(f"{where} index_recall_at_10 is {show(recall)}, not a recall between 0 and 1")
    if not isinstance(a.get("index_exact", True), bool) or not isinstance(a.get("index_factory", ""), str):
        raise Damage(f"{where} index_exact / index_factory are {show(a.get('index_exact'))} / "
                     f"{show(a.get('index_factory'))}, not a flag and a name")
    for name in ("index_tuning_queries", "index_size", "index_filtered", "index_built_rows", "index_trained_rows"):
        if not is_int(a.get(name, 0)) or a.get(name, 0) < 0:
            raise Damage(f"{where} {name} is {show(a[name])}, not a count")
    if a.get("index_filtered", 0) > a["index_ntotal"]:
        raise Damage(f"{where} index_filtered is {a['index_filtered']}, more than the index holds ({a['index_ntotal']})")
    if not is_int(a.get("index_max_memory", 1)) or a.get("index_max_memory", 1) < 1:
        raise Damage(f"{where} index_max_memory is {show(a['index_max_memory'])}, not a number of bytes")
    for name, low in (("index_recall_target", 0), ("index_bytes_per_vector", -1)):
        v = a.get(name, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low < v and (v <= 1 or name != "index_recall_target")) \
                or not math.isfinite(v):
            raise Damage(f"{where} {name} is {show(v)}, not a valid number")
    for name in ("index_fingerprint", "index_spec"):
        if not isinstance(a.get(name, ""), str):
            raise Damage(f"{where} {name} is {show(a[name])}, not a string")
    try:
        params = json.loads(a.get("index_search_params", "{}"))
    except (TypeError, ValueError):
        params = None
    if not isinstance(params, dict) or not all(isinstance(k, str) and is_int(v) for k, v in params.items()):
        raise Damage(f"{where} index_search_params is {show(a.get('index_search_params'))}, not a JSON object of "
                     "whole numbers")


def _check_finite(emb: np.ndarray, where: str) -> None:
    # min and max propagate NaN and see +-inf, and allocate nothing; only a damaged matrix is scanned again
    if emb.size == 0 or (np.isfinite(emb.min()) and np.isfinite(emb.max())):
        return
    step = max(1, (1 << 22) // emb.shape[1])
    for start in range(0, emb.shape[0], step):
        bad = np.argwhere(~np.isfinite(emb[start:start + step]))
        if bad.size:
            row, col = int(bad[0][0]) + start, int(bad[0][1])
            raise Damage(f"{where} holds {emb[row, col]} at row {row}, column {col} (embeddings are finite)")


def _check_provenance(where: str, raw, dim: int) -> None:
    if raw is None:
        raise Damage(f"{where} has no provenance attribute")
    prov = json_attr(f"{where} provenance", raw, dict, "an object")
    for key in ("encoder", "preprocess", "dim"):
        if key not in prov:
            raise Damage(f"{where} provenance lacks {key}")
    if not isinstance(prov["encoder"], str) or not prov["encoder"]:
        raise Damage(f"{where} provenance has encoder {show(prov['encoder'])}, not an encoder name")
    pre = prov["preprocess"]
    if not isinstance(pre, dict):
        raise Damage(f"{where} provenance preprocess is {show(pre)}, not an object")
    for key in ("resize", "crop", "interpolation", "norm", "mean", "std"):
        if key not in pre:
            raise Damage(f"{where} provenance preprocess lacks {key}")
    for key in ("resize", "crop"):
        if not is_int(pre[key]) or pre[key] < 1:
            raise Damage(f"{where} provenance preprocess {key} is {show(pre[key])}, not a positive integer")
    if pre["crop"] > pre["resize"]:
        raise Damage(f"{where} provenance preprocess crop {pre['crop']} exceeds resize {pre['resize']}")
    for key in ("interpolation", "norm"):
        if not isinstance(pre[key], str):
            raise Damage(f"{where} provenance preprocess {key} is {show(pre[key])}, not a string")
    for key in ("mean", "std"):
        v = pre[key]
        if (not isinstance(v, list) or len(v) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                or (key == "std" and min(v) <= 0)):
            raise Damage(f"{where} provenance preprocess {key} is {show(v)}, not 3 finite numbers"
                          f"{' above 0' if key == 'std' else ''}")
    if prov["dim"] != dim or not is_int(prov["dim"]):
        raise Damage(f"{where} provenance has dim {show(prov['dim'])} but its embeddings have {dim} columns")
    if "weights_source" in prov and not isinstance(prov["weights_source"], str):
        raise Damage(f"{where} provenance weights_source is {show(prov['weights_source'])}, not a string")
    if prov.get("weights_sha256") is not None and not isinstance(prov["weights_sha256"], str):
        raise Damage(f"{where} provenance weights_sha256 is {show(prov['weights_sha256'])}, not a string")


def all_strings(values) -> bool:
    """Whether every value is a str (types collected at C speed: a million in milliseconds)."""
    return all(issubclass(t, str) for t in set(map(type, values)))


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(values) -> str:
    return "no" if values is None else str(len(values))


def printable_key(s: str) -> str:
    """An HDF5 key as given, or its repr when it holds characters a terminal would act on."""
    return s if s.isprintable() else repr(s)


def _show_json(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def show(v) -> str:
    """A value for a one-line message: short, no newlines."""
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} array of shape {v.shape}"
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def json_attr(what: str, raw, kind: type, kind_text: str):
    """The JSON value of a string attribute, which must be a ``kind`` (list, dict)."""
    if not isinstance(raw, str):
        raise Damage(f"{what} is {show(raw)}, not a JSON string")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise Damage(f"{what} is not valid JSON ({first_line(exc)})") from None
    if not isinstance(value, kind):
        raise Damage(f"{what} is the JSON {_show_json(value)}, not {kind_text}")
    return value


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

