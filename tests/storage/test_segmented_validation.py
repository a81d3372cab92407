"""A damaged format-2 store is refused: exit 2 and one line naming what is wrong, from info, query, eval and
index (never exit 3, never an answer). Format 2 validates its metadata (store.json, every segment's rows,
states and reasons) whole when it is opened, and embeddings as they are read: a NaN in a stored embedding is
refused by what reads it (eval, `info --verify`), while query answers from the FAISS index without it.

One small real store is built with `index` once per module; each case copies it and damages one thing: the
manifest (as text or as JSON) or one segment file (with h5py). Format 1's cases are in test_store_validation.py."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from medsearch.ingest.indexing import index_dataset
from medsearch.storage.segments import put_text

from ..conftest import FAST, accepted_by_each, make_image, refused_by_each, run_cli

KEY = "mobilenet-v2"
CLASSES = ["benign", "malignant", "normal"]
PER_CLASS = 8
N = len(CLASSES) * PER_CLASS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(dataset folder, index folder) of a 3-class folder dataset indexed with a random-init encoder."""
    root = tmp_path_factory.mktemp("segmented-validation")
    ds = root / "data"
    for c, name in enumerate(CLASSES):
        (ds / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            make_image(ds / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    out = root / "idx"
    index_dataset(str(ds), out=str(out), models=(KEY,), random_init=True, progress=False, **FAST)
    return ds, out


def _commands(ds, store):
    return {"info": ("info", store),
            "query": ("query", ds / "malignant" / "malignant_03.png", "--index", store),
            "eval": ("eval", "--index", store, "--heads", "lr", "--no-retrieval", "--n-boot", "10", "--C", "1"),
            "index": ("index", ds, "--out", store, "--model", KEY, "--random-init", "--resize", FAST["resize"],
                      "--crop", FAST["crop"], "--quiet")}


# ---- damages: each takes the copied store folder ------------------------------------------------------------

def _raw(content: bytes):
    def damage(store):
        (store / "store.json").write_bytes(content)
    return damage


def _manifest(change):
    """Rewrite store.json as ``change(its JSON)`` (or the JSON changed in place when that returns None)."""
    def damage(store):
        raw = json.loads((store / "store.json").read_text())
        new = change(raw)
        (store / "store.json").write_text(json.dumps(raw if new is None else new))
    return damage


def _parent(raw, path):
    """The object holding the last key of ``path`` inside the manifest ``raw``."""
    for p in path[:-1]:
        raw = raw[p]
    return raw


def _set(*path_and_value):
    *path, value = path_and_value

    def change(raw):
        _parent(raw, path)[path[-1]] = value
    return change


def _pop(*path):
    def change(raw):
        del _parent(raw, path)[path[-1]]
    return change


def _model_attr(name, value):
    return _manifest(_set("models", KEY, name, value))


def _provenance(change):
    def edit(raw):
        prov = json.loads(raw["models"][KEY]["provenance"])
        change(prov)
        raw["models"][KEY]["provenance"] = json.dumps(prov)
    return _manifest(edit)


def _segment_file(store, holding):
    """The path of the segment that holds the rows' fields ('rows') or the model's entries ('model')."""
    raw = json.loads((store / "store.json").read_text())
    for s in raw["segments"]:
        if (holding == "rows" and s["rows"]) or (holding == "model" and s["models"].get(KEY)):
            return store / "segments" / s["file"]
    raise AssertionError(f"no segment holds {holding}")


def _segment(holding, tamper):
    def damage(store):
        with h5py.File(_segment_file(store, holding), "a") as f:
            tamper(f)
    return damage


def _replace(name, change, **kw):
    """Replace dataset ``name`` by ``change(its values)``."""
    def tamper(f):
        old = f[name][()]
        del f[name]
        f.create_dataset(name, data=change(old), **kw)
    return tamper


def _set_item(name, index, value):
    def tamper(f):
        data = f[name][()]
        data[index] = value
        f[name][...] = data
    return tamper


def _set_attr(name, attr, value):
    def tamper(f):
        f[name].attrs[attr] = value
    return tamper


def _delete(name):
    def tamper(f):
        del f[name]
    return tamper


def _texts(g, name):
    """A string column as segments.put_text writes it: UTF-8 bytes, NUL between entries."""
    return g[name][()].tobytes().decode("utf-8").split("\0")


def _text(name, change):
    """Rewrite the string column ``name`` as ``change(its strings)``, its count attribute following."""
    def tamper(f):
        group, column = name.rsplit("/", 1)
        values = change(_texts(f[group], column))
        del f[name]
        put_text(f[group], column, values)
    return tamper


def _drop_row(row):
    """Take ``row`` out of every dataset of the rows group: a row no segment holds."""
    def tamper(f):
        g = f["rows"]
        keep = g["row"][()] != row
        for name in list(g):
            if "count" in g[name].attrs:
                values = [v for v, k in zip(_texts(g, name), keep) if k]
                del g[name]
                put_text(g, name, values)
            else:
                values = g[name][()][keep]
                del g[name]
                g.create_dataset(name, data=values)
    return tamper


def _missing_segment(store):
    _segment_file(store, "model").unlink()


def _not_hdf5(store):
    _segment_file(store, "model").write_bytes(b"this is not an HDF5 file\n" * 20)


def _listed_twice(raw):
    raw["segments"].append(raw["segments"][0])


M = f"models/{KEY}"
# (case id, damage, a fragment the one-line message must hold)
CASES = [
    # the manifest as text and as JSON
    ("json-truncated", _raw(b'{"format": "medsearch-store", "format_ver'), "not valid JSON"),
    ("json-not-utf8", _raw(b'\xff\xfe{"format": 1}'), "UTF-8"),
    ("json-empty", _raw(b""), "not valid JSON"),
    ("json-array", _raw(b"[1, 2, 3]"), "not a medsearch store manifest"),
    ("json-string", _raw(b'"medsearch-store"'), "not a medsearch store manifest"),
    ("format-foreign", _manifest(_set("format", "something-else")), "not a medsearch store manifest"),
    ("format-missing", _manifest(_pop("format")), "not a medsearch store manifest"),
    ("format_version-1", _manifest(_set("format_version", 1)), "format_version"),
    ("format_version-str", _manifest(_set("format_version", "2")), "format_version"),
    ("format_version-float", _manifest(_set("format_version", 2.5)), "format_version"),
    ("format_version-missing", _manifest(_pop("format_version")), "format_version"),
    ("format_version-newer", _manifest(_set("format_version", 3)), "upgrade medsearch"),
    ("generation-negative", _manifest(_set("generation", -1)), "generation"),
    ("generation-missing", _manifest(_pop("generation")), "generation"),
    ("n_rows-more", _manifest(_set("n_rows", N + 1)), f"row {N} of {N + 1} is in no segment"),
    ("n_rows-fewer", _manifest(_set("n_rows", N - 1)), f"of a store of {N - 1} rows"),
    ("n_rows-str", _manifest(_set("n_rows", "24")), "n_rows"),
    ("n_rows-bool", _manifest(_set("n_rows", True)), "n_rows"),
    ("attrs-list", _manifest(_set("attrs", [1, 2])), "attrs"),
    ("task-unknown", _manifest(_set("attrs", "task", "regression")), "task"),
    ("task-missing", _manifest(_pop("attrs", "task")), "task"),
    ("label_names-not-json", _manifest(_set("attrs", "label_names", '["benign", "mal')), "label_names"),
    ("label_names-duplicate", _manifest(_set("attrs", "label_names", '["a", "a", "b"]')), "label_names"),
    ("label_names-two", _manifest(_set("attrs", "label_names", '["benign", "malignant"]')), "rows/label"),
    ("layout-unknown", _manifest(_set("attrs", "layout", "zip")), "layout"),
    ("models-list", _manifest(_set("models", [KEY])), "models"),
    ("model-not-object", _manifest(_set("models", KEY, "1280")), "models"),
    ("segments-object", _manifest(_set("segments", {"file": "seg-000000001.h5"})), "segments"),
    ("segment-name-path", _manifest(_set("segments", 0, "file", "../store.h5")), "segment"),
    ("segment-name-int", _manifest(_set("segments", 0, "file", 1)), "segment"),
    ("segment-not-object", _manifest(_set("segments", 0, "seg-000000001.h5")), "segment"),
    ("segment-listed-twice", _manifest(_listed_twice), "twice"),
    ("segment-counts-negative", _manifest(_set("segments", 0, "rows", -1)), "counts"),
    ("segment-counts-unknown-model", _manifest(_set("segments", 0, "models", {"other-model": 3})), "counts"),
    ("segment-missing", _missing_segment, "segment seg-000000003.h5, which is missing"),
    ("segment-not-hdf5", _not_hdf5, "seg-000000003.h5"),
    ("segment-foreign-hdf5", _segment("model", lambda f: f.attrs.__setitem__("format", "other")),
     "not a medsearch segment"),
    # each model's attributes in the manifest
    ("dim-wrong", _model_attr("dim", 7), f"embedding has shape ({N}, 1280), expected ({N}, 7)"),
    ("dim-str", _model_attr("dim", "1280"), "dim"),
    ("dim-zero", _model_attr("dim", 0), "dim"),
    ("dim-missing", _manifest(_pop("models", KEY, "dim")), "dim"),
    ("created-int", _model_attr("created", 20240101), "created"),
    ("provenance-missing", _manifest(_pop("models", KEY, "provenance")), "provenance"),
    ("provenance-not-json", _model_attr("provenance", "{encoder: mobilenet"), "provenance"),
    ("provenance-list", _model_attr("provenance", "[1, 2]"), "provenance"),
    ("provenance-object", _model_attr("provenance", {"encoder": "x"}), "provenance"),
    ("provenance-no-encoder", _provenance(lambda p: p.pop("encoder")), "encoder"),
    ("provenance-dim-wrong", _provenance(lambda p: p.__setitem__("dim", 512)), "dim"),
    ("provenance-crop-str", _provenance(lambda p: p["preprocess"].__setitem__("crop", "64")), "preprocess"),
    ("provenance-std-zero", _provenance(lambda p: p["preprocess"].__setitem__("std", [0, 1, 1])), "preprocess"),
    ("index_sha256-missing", _manifest(_pop("models", KEY, "index_sha256")), "index_sha256"),
    ("index_file-missing", _manifest(_pop("models", KEY, "index_file")), "index_file"),
    ("index_file-parent", _model_attr("index_file", "../other.faiss"), "index_file"),
    ("index_file-suffix", _model_attr("index_file", f"{KEY}.bin"), "index_file"),
    ("index_type-int", _model_attr("index_type", 1), "index_type"),
    ("index_ntotal-too-many", _model_attr("index_ntotal", N + 5), "index_ntotal"),
    ("index_ntotal-negative", _model_attr("index_ntotal", -1), "index_ntotal"),
    ("index_recall-above-one", _model_attr("index_recall_at_10", 1.5), "index_recall_at_10"),
    ("index_search_params-not-json", _model_attr("index_search_params", "{efSearch"), "index_search_params"),
    ("index_tuning_queries-negative", _model_attr("index_tuning_queries", -3), "index_tuning_queries"),
    # the rows' fields in their segment
    ("rows-row-unsorted", _segment("rows", _replace("rows/row", lambda v: v[::-1])), "rows/row"),
    ("rows-row-repeated", _segment("rows", _replace("rows/row", lambda v: np.r_[v[:1], v[:-1]])), "rows/row"),
    ("rows-row-negative", _segment("rows", _replace("rows/row", lambda v: v - 1)), "rows/row"),
    ("rows-row-beyond-n_rows", _segment("rows", _replace("rows/row", lambda v: v + 1)), "rows/row"),
    ("rows-row-float", _segment("rows", _replace("rows/row", lambda v: v.astype(np.float64))), "rows/row"),
    ("rows-row-missing", _segment("rows", _delete("rows/row")), "rows/row"),
    ("row-in-no-segment", _segment("rows", _drop_row(5)), "row 5 of"),
    ("label-minus-1", _segment("rows", _set_item("rows/label", 5, -1)), "rows/label"),
    ("label-n_labels", _segment("rows", _set_item("rows/label", 5, len(CLASSES))), "rows/label"),
    ("label-float", _segment("rows", _replace("rows/label", lambda v: v.astype(np.float64))), "rows/label"),
    ("label-short", _segment("rows", _replace("rows/label", lambda v: v[:-1])), "rows/label"),
    ("id-missing", _segment("rows", _delete("rows/id")), "rows/id"),
    ("id-duplicate", _segment("rows", _text("rows/id", lambda v: v[:1] + v[:-1])), "rows/id"),
    ("id-empty", _segment("rows", _text("rows/id", lambda v: [""] + v[1:])), "rows/id"),
    ("id-short", _segment("rows", _text("rows/id", lambda v: v[:-1])), "rows/id"),
    ("id-count-wrong", _segment("rows", _set_attr("rows/id", "count", N + 1)), "rows/id"),
    ("id-extra-nul", _segment("rows", _replace("rows/id", lambda v: np.r_[v, [0, 65]].astype(np.uint8))),
     "rows/id"),
    ("id-not-utf8-bytes", _segment("rows", _replace("rows/id", lambda v: v.astype(np.int32))), "rows/id"),
    ("source-ints", _segment("rows", _replace("rows/source", lambda v: np.arange(len(v)))), "rows/source"),
    ("removed-missing", _segment("rows", _delete("rows/removed")), "removed"),
    ("source-empty", _segment("rows", _text("rows/source", lambda v: v[:-1] + [""])), "rows/source"),
    ("sha256-not-hex", _segment("rows", _text("rows/sha256", lambda v: ["xyz"] + v[1:])), "rows/sha256"),
    ("sha256-upper", _segment("rows", _text("rows/sha256", lambda v: ["A" * 64] + v[1:])), "rows/sha256"),
    ("file_stat-3-cols", _segment("rows", _replace("rows/file_stat", lambda v: np.zeros((len(v), 3), np.int64))),
     "rows/file_stat"),
    # the model's entries in their segment
    ("state-7", _segment("model", _set_item(f"{M}/state", 2, 7)), "state"),
    ("state-minus-1", _segment("model", _set_item(f"{M}/state", 2, -1)), "state"),
    ("state-short", _segment("model", _replace(f"{M}/state", lambda v: v[:-1])), "state"),
    ("state-missing", _segment("model", _delete(f"{M}/state")), "state"),
    ("reason-missing", _segment("model", _delete(f"{M}/reason")), "reason"),
    ("reason-short", _segment("model", _text(f"{M}/reason", lambda v: v[:-1])), "reason"),
    ("model-row-unsorted", _segment("model", _replace(f"{M}/row", lambda v: v[::-1])), "row"),
    ("model-row-beyond-n_rows", _segment("model", _replace(f"{M}/row", lambda v: v + 1)), "row"),
    ("embedding-missing", _segment("model", _delete(f"{M}/embedding")), "embedding"),
    ("embedding-rows", _segment("model", _replace(f"{M}/embedding", lambda v: v[:-1])), "embedding"),
    ("embedding-columns", _segment("model", _replace(f"{M}/embedding", lambda v: v[:, :-1])), "embedding"),
    ("embedding-float64", _segment("model", _replace(f"{M}/embedding", lambda v: v.astype(np.float64))),
     "embedding"),
    ("embedding-1d", _segment("model", _replace(f"{M}/embedding", lambda v: v[:, 0])), "embedding"),
]


def _damaged_copy(built, tmp_path, damage):
    ds, store = built
    copy = tmp_path / "idx"
    shutil.copytree(store, copy)
    damage(copy)
    return ds, copy


@pytest.mark.parametrize("name, damage, fragment", [pytest.param(*c, id=c[0]) for c in CASES])
def test_damaged_store_is_refused_with_one_line(built, tmp_path, name, damage, fragment):
    ds, store = _damaged_copy(built, tmp_path, damage)
    refused_by_each(_commands(ds, store), store, fragment)


def test_untampered_store_passes(built, tmp_path):
    ds, store = _damaged_copy(built, tmp_path, lambda store: None)
    accepted_by_each(_commands(ds, store))
    assert run_cli("info", "--verify", store).exit_code == 0


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_embedding_is_refused_when_it_is_read(built, tmp_path, value):
    """Embeddings are checked as they are read: eval (which reads every row) and `info --verify` refuse the
    store naming the segment and the field; query answers from the FAISS index and may not read it."""
    damage = _segment("model", _set_item(f"{M}/embedding", (3, 7), value))
    ds, store = _damaged_copy(built, tmp_path, damage)
    segment = _segment_file(store, "model").name
    commands = _commands(ds, store)
    for args in (commands["eval"], ("info", "--verify", store)):
        res = run_cli(*args)
        assert res.exit_code == 2, res.output
        assert res.output.startswith("medsearch: error: ") and res.output.count("\n") == 1, res.output
        assert f"{segment}:{M}/embedding" in res.output and "not finite" in res.output, res.output
    for args in (commands["info"], commands["query"], commands["index"]):
        assert run_cli(*args).exit_code in (0, 2)  # never a crash
