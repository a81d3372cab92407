"""A damaged format-1 store is refused when it is opened: exit 2 and one line naming the field, for info, query
and eval (format 1 is read whole, so every field is checked at open; format 2's own cases are in
test_segmented_validation.py).

One small real store is built with `medsearch index` once per module and written back as format 1; each case
copies it, damages one field of the schema in docs/STORE.md with h5py, and runs the three reading commands."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from medsearch.ingest.indexing import index_dataset

from ..conftest import FAST, accepted_by_each, as_format1, make_image, refused_by_each, run_cli

KEY = "mobilenet-v2"
M = f"models/{KEY}"
CLASSES = ["benign", "malignant", "normal"]
PER_CLASS = 8
N = len(CLASSES) * PER_CLASS
STR = h5py.string_dtype("utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(dataset folder, index folder) of a 3-class folder dataset indexed with a random-init encoder."""
    root = tmp_path_factory.mktemp("validation")
    ds = root / "data"
    for c, name in enumerate(CLASSES):
        (ds / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            make_image(ds / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    out = root / "idx"
    index_dataset(str(ds), out=str(out), models=(KEY,), random_init=True, progress=False, **FAST)
    as_format1(out)
    return ds, out


def _commands(ds, store):
    query_image = ds / "malignant" / "malignant_03.png"
    return {"info": ("info", store),
            "query": ("query", query_image, "--index", store),
            "eval": ("eval", "--index", store, "--heads", "lr", "--no-retrieval", "--n-boot", "10", "--C", "1")}


# ---- tamperings: each takes the open h5py file (mode "a") ---------------------------------------------


def _strings(values):
    return np.array([v.encode() for v in values], dtype=object)


def _replace(name, value, **kw):
    def tamper(f):
        if name in f:
            del f[name]
        f.create_dataset(name, data=value() if callable(value) else value, **kw)
    return tamper


def _with(name, change, **kw):
    """Replace dataset ``name`` by ``change(current values)``."""
    def tamper(f):
        old = f[name][()]
        del f[name]
        f.create_dataset(name, data=change(old), **kw)
    return tamper


def _attr(name, value, where="/"):
    def tamper(f):
        f[where].attrs[name] = value
    return tamper


def _del_attr(name, where="/"):
    def tamper(f):
        del f[where].attrs[name]
    return tamper


def _delete(name):
    def tamper(f):
        del f[name]
    return tamper


def _provenance(change):
    def tamper(f):
        prov = json.loads(f[M].attrs["provenance"])
        change(prov)
        f[M].attrs["provenance"] = json.dumps(prov)
    return tamper


def _set_item(name, index, value):
    def tamper(f):
        ds = f[name]
        data = ds[()]
        data[index] = value
        ds[...] = data
    return tamper


def _both(*tampers):
    def tamper(f):
        for t in tampers:
            t(f)
    return tamper


def _huge(name, shape, dtype):
    """A dataset that declares far more entries than the file holds (a memory bomb if read)."""
    def tamper(f):
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype)
    return tamper


def _models_as_dataset(f):
    del f["models"]
    f["models"] = np.zeros(3)


def _model_as_dataset(f):
    del f[M]
    f[M] = np.zeros(3)


def _pop(key):
    return lambda prov: prov.pop(key)


def _put(key, value):
    return lambda prov: prov.__setitem__(key, value)


def _put_pre(key, value):
    return lambda prov: prov["preprocess"].__setitem__(key, value)


def _del_pre(key):
    return lambda prov: prov["preprocess"].pop(key)


MANY_NAMES = json.dumps([f"c{i}" for i in range(200_000)])

# (case id, tampering, a word the one-line message must hold)
CASES = [
    # root attributes
    ("format_version-str", _attr("format_version", "abc"), "format_version"),
    ("format_version-0", _attr("format_version", 0), "format_version"),
    ("format_version-float", _attr("format_version", 1.5), "format_version"),
    ("format_version-missing", _del_attr("format_version"), "format_version"),
    ("task-unknown", _attr("task", "regression"), "task"),
    ("task-int", _attr("task", 3), "task"),
    ("task-missing", _del_attr("task"), "task"),
    ("task-binary-3-names", _attr("task", "binary"), "binary"),
    ("task-multilabel-1d-labels", _attr("task", "multilabel"), "task"),
    ("label_names-not-json", _attr("label_names", '["benign", "mal'), "label_names"),
    ("label_names-json-object", _attr("label_names", '{"benign": 0}'), "label_names"),
    ("label_names-not-strings", _attr("label_names", "[0, 1, 2]"), "label_names"),
    ("label_names-too-short", _attr("label_names", '["benign", "malignant"]'), "rows/label"),
    ("label_names-one", _attr("label_names", '["benign"]'), "label_names"),
    ("label_names-duplicate", _attr("label_names", '["benign", "benign", "normal"]'), "label_names"),
    ("label_names-empty-name", _attr("label_names", '["benign", "", "normal"]'), "label_names"),
    ("label_names-200000", _attr("label_names", MANY_NAMES), "label_names"),
    ("label_names-array", _attr("label_names", np.array([1, 2, 3])), "label_names"),
    ("label_names-missing", _del_attr("label_names"), "label_names"),
    ("n_rows-wrong", _attr("n_rows", N + 1), "n_rows"),
    ("n_rows-str", _attr("n_rows", "abc"), "n_rows"),
    ("layout-unknown", _attr("layout", "zip"), "layout"),
    ("dataset_root-int", _attr("dataset_root", 5), "dataset_root"),
    ("manifest-array", _attr("manifest", np.array([1.0, 2.0])), "manifest"),
    # rows
    ("rows-missing", _delete("rows"), "rows"),
    ("rows-dataset", _both(_delete("rows"), lambda f: f.create_dataset("rows", data=np.zeros(3))), "rows"),
    ("id-missing", _delete("rows/id"), "rows/id"),
    ("id-ints", _replace("rows/id", np.arange(N)), "rows/id"),
    ("id-short", _with("rows/id", lambda v: v[:-1], dtype=STR), "rows/id"),
    ("id-scalar", _replace("rows/id", b"one id", dtype=STR), "rows/id"),
    ("id-duplicate", _with("rows/id", lambda v: np.concatenate([v[:1], v[:-1]]), dtype=STR), "rows/id"),
    ("id-empty", _with("rows/id", lambda v: np.concatenate([[b""], v[1:]]), dtype=STR), "rows/id"),
    ("id-huge", _huge("rows/id", (10**12,), STR), "rows/id"),
    ("source-missing", _delete("rows/source"), "rows/source"),
    ("source-floats", _replace("rows/source", np.zeros(N)), "rows/source"),
    ("source-long", _with("rows/source", lambda v: np.concatenate([v, v[:1]]), dtype=STR), "rows/source"),
    ("label-minus-1", _set_item("rows/label", 5, -1), "rows/label"),
    ("label-n_labels", _set_item("rows/label", 5, len(CLASSES)), "rows/label"),
    ("label-huge-value", _set_item("rows/label", 0, 2**40), "rows/label"),
    ("label-float", _with("rows/label", lambda v: v.astype(np.float64)), "rows/label"),
    ("label-strings", _replace("rows/label", _strings(["0"] * N), dtype=STR), "rows/label"),
    ("label-short", _with("rows/label", lambda v: v[:-2]), "rows/label"),
    ("label-2d-multiclass", _with("rows/label", lambda v: np.eye(3, dtype=np.int8)[v]), "task"),
    ("label-missing", _delete("rows/label"), "rows/label"),
    ("label-huge", _huge("rows/label", (10**12,), np.int64), "rows/label"),
    ("multilabel-value-2", _both(_attr("task", "multilabel"),
                                 _with("rows/label", lambda v: np.eye(3, dtype=np.int8)[v] * 2)), "rows/label"),
    ("multilabel-columns", _both(_attr("task", "multilabel"),
                                 _with("rows/label", lambda v: np.eye(4, dtype=np.int8)[v])), "rows/label"),
    ("group-short", _replace("rows/group", _strings(["p"] * (N - 1)), dtype=STR), "rows/group"),
    ("group-ints", _replace("rows/group", np.arange(N)), "rows/group"),
    ("split-long", _replace("rows/split", _strings(["train"] * (N + 1)), dtype=STR), "rows/split"),
    ("split-2d", _replace("rows/split", _strings(["train"] * (2 * N)).reshape(N, 2), dtype=STR), "rows/split"),
    ("sha256-short", _replace("rows/sha256", _strings(["0" * 64] * (N - 1)), dtype=STR), "rows/sha256"),
    ("sha256-not-hex", _replace("rows/sha256", _strings(["xyz"] + ["0" * 64] * (N - 1)), dtype=STR), "rows/sha256"),
    ("sha256-upper", _replace("rows/sha256", _strings(["A" * 64] * N), dtype=STR), "rows/sha256"),
    ("sha256-ints", _replace("rows/sha256", np.zeros(N, np.int64)), "rows/sha256"),
    ("file_stat-3-cols", _replace("rows/file_stat", np.zeros((N, 3), np.int64)), "rows/file_stat"),
    ("file_stat-1d", _replace("rows/file_stat", np.zeros(N, np.int64)), "rows/file_stat"),
    ("file_stat-float", _replace("rows/file_stat", np.zeros((N, 2))), "rows/file_stat"),
    ("file_stat-negative-size", _replace("rows/file_stat", np.full((N, 2), -5, np.int64)), "rows/file_stat"),
    # models
    ("models-dataset", _models_as_dataset, "models"),
    ("model-dataset", _model_as_dataset, KEY),
    ("embedding-missing", _delete(f"{M}/embedding"), "embedding"),
    ("embedding-nan", _set_item(f"{M}/embedding", (3, 7), np.nan), "embedding"),
    ("embedding-inf", _set_item(f"{M}/embedding", (N - 1, 0), np.inf), "embedding"),
    ("embedding-minus-inf", _set_item(f"{M}/embedding", (0, 0), -np.inf), "embedding"),
    ("embedding-float64", _with(f"{M}/embedding", lambda v: v.astype(np.float64)), "embedding"),
    ("embedding-rows", _with(f"{M}/embedding", lambda v: v[:-1]), "embedding"),
    ("embedding-1d", _with(f"{M}/embedding", lambda v: v[:, 0]), "embedding"),
    ("embedding-huge", _huge(f"{M}/embedding", (N, 10**11), np.float32), "embedding"),
    ("state-7", _set_item(f"{M}/state", 2, 7), "state"),
    ("state-minus-1", _set_item(f"{M}/state", 2, -1), "state"),
    ("state-float", _with(f"{M}/state", lambda v: v.astype(np.float32)), "state"),
    ("state-short", _with(f"{M}/state", lambda v: v[:-1]), "state"),
    ("state-missing", _delete(f"{M}/state"), "state"),
    ("reason-missing", _delete(f"{M}/reason"), "reason"),
    ("reason-ints", _replace(f"{M}/reason", np.zeros(N, np.int8)), "reason"),
    ("reason-short", _replace(f"{M}/reason", _strings([""] * 3), dtype=STR), "reason"),
    ("dim-wrong", _attr("dim", 7, M), "dim"),
    ("dim-str", _attr("dim", "1280", M), "dim"),
    ("dim-missing", _del_attr("dim", M), "dim"),
    ("provenance-missing", _del_attr("provenance", M), "provenance"),
    ("provenance-not-json", _attr("provenance", "{encoder: mobilenet", M), "provenance"),
    ("provenance-list", _attr("provenance", "[1, 2]", M), "provenance"),
    ("provenance-int", _attr("provenance", 5, M), "provenance"),
    ("provenance-no-encoder", _provenance(_pop("encoder")), "encoder"),
    ("provenance-encoder-int", _provenance(_put("encoder", 3)), "encoder"),
    ("provenance-no-preprocess", _provenance(_pop("preprocess")), "preprocess"),
    ("provenance-preprocess-str", _provenance(_put("preprocess", "resize 64")), "preprocess"),
    ("provenance-preprocess-no-crop", _provenance(_del_pre("crop")), "preprocess"),
    ("provenance-preprocess-crop-str", _provenance(_put_pre("crop", "64")), "preprocess"),
    ("provenance-preprocess-mean-nan", _provenance(_put_pre("mean", [float("nan"), 0.5, 0.5])), "preprocess"),
    ("provenance-preprocess-std-short", _provenance(_put_pre("std", [0.5])), "preprocess"),
    ("provenance-no-dim", _provenance(_pop("dim")), "dim"),
    ("provenance-dim-wrong", _provenance(_put("dim", 512)), "dim"),
    ("provenance-weights_source-int", _provenance(_put("weights_source", 1)), "weights_source"),
    ("provenance-weights_sha256-int", _provenance(_put("weights_sha256", 12345)), "weights_sha256"),
    ("index_file-parent", _attr("index_file", "../other.faiss", M), "index_file"),
    ("index_file-absolute", _attr("index_file", "/etc/passwd", M), "index_file"),
    ("index_file-suffix", _attr("index_file", "mobilenet-v2.bin", M), "index_file"),
    ("index_file-int", _attr("index_file", 3, M), "index_file"),
    ("index_type-int", _attr("index_type", 1, M), "index_type"),
    ("index_sha256-short", _attr("index_sha256", "abc", M), "index_sha256"),
    ("index_sha256-missing", _del_attr("index_sha256", M), "index_sha256"),
    ("index_ntotal-str", _attr("index_ntotal", "abc", M), "index_ntotal"),
    ("index_ntotal-negative", _attr("index_ntotal", -1, M), "index_ntotal"),
    ("index_ntotal-float", _attr("index_ntotal", 1.5, M), "index_ntotal"),
    ("index_ntotal-too-many", _attr("index_ntotal", N + 5, M), "index_ntotal"),
    ("index_recall-above-one", _attr("index_recall_at_10", 1.5, M), "index_recall_at_10"),
    ("index_recall-str", _attr("index_recall_at_10", "high", M), "index_recall_at_10"),
    ("index_search_params-not-json", _attr("index_search_params", "{efSearch", M), "index_search_params"),
    ("index_search_params-float", _attr("index_search_params", "{\"efSearch\": 1.5}", M), "index_search_params"),
    ("index_tuning_queries-negative", _attr("index_tuning_queries", -3, M), "index_tuning_queries"),
    ("index_built-int", _attr("index_built", 20240101, M), "index_built"),
]


def _damaged_copy(built, tmp_path, tamper):
    ds, store = built
    copy = tmp_path / "idx"
    shutil.copytree(store, copy)
    with h5py.File(copy / "store.h5", "a") as f:
        tamper(f)
    return ds, copy


@pytest.mark.parametrize("tamper, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damaged_store_is_refused_with_one_line(built, tmp_path, tamper, field):
    ds, store = _damaged_copy(built, tmp_path, tamper)
    refused_by_each(_commands(ds, store), store, field, prefix="medsearch: error: '")


def test_untampered_store_passes(built, tmp_path):
    ds, store = _damaged_copy(built, tmp_path, lambda f: None)
    accepted_by_each(_commands(ds, store))
    assert "benign" in run_cli("info", store).output


def test_foreign_format_and_newer_version(built, tmp_path):
    ds, store = _damaged_copy(built, tmp_path, _attr("format", "something-else"))
    res = run_cli("info", store)
    assert res.exit_code == 2 and "not a medsearch store" in res.output and res.output.count("\n") == 1
    ds, newer = _damaged_copy(built, tmp_path / "v2", _attr("format_version", 3))
    res = run_cli("info", newer)
    assert res.exit_code == 2 and "upgrade medsearch" in res.output and res.output.count("\n") == 1


def test_optional_fields_absent_or_well_formed_are_accepted(built, tmp_path):
    good = _both(_replace("rows/sha256", _strings(["ab" * 32] + [""] * (N - 1)), dtype=STR),
                 _replace("rows/file_stat", np.array([[123, 1_700_000_000_000_000_000]] + [[-1, -1]] * (N - 1))),
                 _del_attr("manifest"), _del_attr("n_rows"))
    ds, store = _damaged_copy(built, tmp_path, good)
    res = run_cli("info", store)
    assert res.exit_code == 0, res.output
