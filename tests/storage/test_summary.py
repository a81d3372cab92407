"""The store summary: counts per label, group, split and state, each model's index and provenance; to_json is
the dict `medsearch info --json` prints (key names and order included), and the text names every count."""
import json

import numpy as np
import pytest

from medsearch.cli.info import format_store_summary
from medsearch.errors import MedsearchError
from medsearch.storage.schema import EMBEDDED, PENDING, SKIPPED, ZERO_FILLED
from medsearch.storage.store import read_store, write_store
from medsearch.storage.summary import ModelSummary, StoreSummary, store_summary

from ..conftest import make_store


def test_summary_counts_and_json_keys(tmp_path):
    path = make_store(tmp_path / "s", n=30, dim=8, groups_of=3, official=True)
    data = read_store(path)
    data.models["m1"].state[:4] = [ZERO_FILLED, SKIPPED, SKIPPED, PENDING]
    data.models["m1"].attrs.update(index_file="m1.faiss", index_type="Flat", index_sha256="0" * 64,
                                   index_ntotal=27, index_built="2024-01-01T00:00:00+0000")
    write_store(data, path)
    summary = store_summary(str(path))
    assert isinstance(summary, StoreSummary) and isinstance(summary.models["m1"], ModelSummary)
    out = summary.to_json()
    assert list(out) == ["store", "rows", "task", "labels", "groups", "splits", "dataset_root", "created",
                         "updated", "models", "format_version", "segments", "removed"]
    assert out["format_version"] == 2 and out["segments"] == 1 and out["removed"] == 0 and "verified" not in out
    assert out["rows"] == 30 and out["labels"] == {"a": 10, "b": 10, "c": 10} and out["groups"] == 10
    assert out["splits"] == {"test": 6, "val": 6, "train": 18}
    m = out["models"]["m1"]
    assert list(m) == ["dim", "embedded", "zero-filled", "skipped", "pending", "index", "provenance"]
    assert (m["embedded"], m["zero-filled"], m["skipped"], m["pending"]) == (26, 1, 2, 1)
    assert m["index"] == {"file": "m1.faiss", "type": "Flat", "sha256": "0" * 64, "ntotal": 27,
                          "built": "2024-01-01T00:00:00+0000"}
    assert m["provenance"]["encoder"] == "synthetic-m1" and json.loads(json.dumps(out)) == out
    text = format_store_summary(summary)
    assert "rows: 30  task: multiclass" in text and "groups: 10 distinct" in text
    assert "model m1: dim 8, embedded 26, zero-filled 1, skipped 2, pending 1" in text
    assert "index m1.faiss (Flat, 27 vectors, exact)" in text


def test_a_store_without_groups_or_splits_says_none(tmp_path):
    path = make_store(tmp_path / "s", "multilabel", n=12, dim=4)
    out = store_summary(str(path)).to_json()
    assert out["groups"] is None and out["splits"] is None
    labels = read_store(path).labels
    assert out["labels"] == dict(zip(["a", "b", "c"], np.asarray(labels).sum(0).tolist()))
    assert out["models"]["m1"]["embedded"] == 12 == int((read_store(path).models["m1"].state == EMBEDDED).sum())
    assert "groups:" not in format_store_summary(store_summary(str(path)))


def test_verify_reads_every_embedding_and_hashes_the_index(tmp_path):
    """`info --verify` refuses a stored NaN that a plain `info` (metadata only) does not read."""
    import h5py

    path = make_store(tmp_path / "s", n=30)
    assert store_summary(str(path), verify=True).verified
    (segment,) = (path / "segments").iterdir()
    with h5py.File(segment, "a") as f:
        f["models/m1/embedding"][17, 2] = np.nan
    assert store_summary(str(path)).rows == 30  # metadata only
    with pytest.raises(MedsearchError, match=r"is damaged: seg-\d+\.h5:models/m1/embedding holds a value that is not finite"):
        store_summary(str(path), verify=True)
