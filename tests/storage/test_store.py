"""The store: round trip, foreign and damaged files refused, fingerprints optional, nothing damaged written,
readers keep their snapshot. The journal and the writer lock have their own test files."""
import json

import h5py
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.schema import EMBEDDED, PENDING
from medsearch.storage.store import ModelData, StoreData, provenance, read_store, store_path, write_store
from ..conftest import store_files


PREPROCESS = {"resize": 64, "crop": 64, "interpolation": "bilinear", "norm": "mean-std",
              "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _store(n=5, dim=4, task="multiclass"):
    labels = np.arange(n) % 3 if task != "multilabel" else (np.arange(n * 2).reshape(n, 2) % 2)
    data = StoreData([f"id{i}" for i in range(n)], [f"img/{i}.png" for i in range(n)], labels,
                     ["a", "b", "c"] if task != "multilabel" else ["x", "y"], task,
                     groups=[f"p{i // 2}" for i in range(n)], attrs={"dataset_root": "/data"})
    data.models["m"] = ModelData(np.zeros((n, dim), np.float32), np.full(n, PENDING, np.int8), [""] * n,
                                 {"provenance": json.dumps({"encoder": "m", "preprocess": PREPROCESS, "dim": dim})})
    return data


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_round_trip(tmp_path, task):
    data = _store(task=task)
    data.sources[1] = "img/caf\udce9.png"  # a non-UTF-8 file name, as os.listdir returns it
    data.models["m"].embedding[2] = [1, 2, 3, 4]
    data.models["m"].state[2] = EMBEDDED
    write_store(data, tmp_path)
    back = read_store(tmp_path)
    assert back.ids == data.ids and back.sources == data.sources and back.groups == data.groups
    assert (back.labels == data.labels).all() and back.task == task
    assert (back.models["m"].embedding[:] == data.models["m"].embedding).all()
    assert back.models["m"].usable().tolist() == [2]
    # readable with json and h5py alone, as documented
    assert json.loads((tmp_path / "store.json").read_text())["format"] == "medsearch-store"
    with h5py.File(_segment(tmp_path)) as f:
        assert f["models/m/embedding"].shape == (5, 4) and f["rows/row"][()].tolist() == list(range(5))


def _segment(folder):
    """The store's only segment file."""
    (segment,) = (folder / "segments").iterdir()
    return segment


def test_foreign_and_damaged_files_are_refused(tmp_path):
    with pytest.raises(MedsearchError, match="no medsearch store"):
        read_store(tmp_path)
    store_path(tmp_path).write_bytes(b"not hdf5 at all")
    with pytest.raises(MedsearchError, match="not a readable medsearch store"):
        read_store(tmp_path)
    with h5py.File(store_path(tmp_path), "w") as f:
        f["x"] = 1
    with pytest.raises(MedsearchError, match="not a medsearch store"):
        read_store(tmp_path)
    write_store(_store(), tmp_path)
    assert not store_path(tmp_path).exists()  # the format-1 file is replaced by format 2
    with h5py.File(_segment(tmp_path), "a") as f:
        del f["models/m/embedding"]
        f["models/m/embedding"] = np.zeros((3, 4), np.float32)
    with pytest.raises(MedsearchError, match="damaged"):
        read_store(tmp_path)


def test_content_fingerprints_round_trip_and_are_optional(tmp_path):
    data = _store()
    assert data.sha256 is None and data.file_stat is None
    write_store(data, tmp_path)
    back = read_store(tmp_path)
    assert back.sha256 is None and back.file_stat is None  # a store written before they were recorded
    with h5py.File(_segment(tmp_path)) as f:
        assert "sha256" not in f["rows"] and "file_stat" not in f["rows"]
    data.sha256 = ["ab" * 32, "", "0" * 64, "f" * 64, ""]
    data.file_stat = np.array([[10, 1_700_000_000_123_456_789], [-1, -1], [0, 5], [7, 8], [-1, -1]], np.int64)
    write_store(data, tmp_path)
    back = read_store(tmp_path)
    assert back.sha256 == data.sha256
    assert back.file_stat.dtype == np.int64 and (back.file_stat == data.file_stat).all()
    assert provenance(back.models["m"])["encoder"] == "m"


@pytest.mark.parametrize("damage, match", [
    (lambda d: setattr(d, "sha256", ["0" * 64] * 4), "rows/sha256 holds 4 entries for 5 rows"),
    (lambda d: setattr(d, "sha256", ["0" * 63 + "G"] + [""] * 4), "rows/sha256 holds '0+G' at row 0"),
    (lambda d: setattr(d, "file_stat", np.zeros((5, 3), np.int64)), "rows/file_stat has shape"),
    (lambda d: d.labels.__setitem__(2, -1), r"rows/label holds -1 at row 2 \(labels must be 0..2 for 3 label_names\)"),
    (lambda d: d.models["m"].embedding.__setitem__((4, 1), np.nan), "embedding holds nan at row 4, column 1"),
    (lambda d: d.ids.__setitem__(3, "id0"), "rows/id holds 'id0' twice"),
    (lambda d: d.models["m"].attrs.update(provenance='{"encoder": "m"}'), "provenance lacks preprocess"),
])
def test_a_store_that_would_not_open_is_not_written(tmp_path, damage, match):
    write_store(_store(), tmp_path)
    before = store_files(tmp_path)
    data = _store()
    damage(data)
    with pytest.raises(MedsearchError, match="refusing to write .*, it would be damaged: .*" + match):
        write_store(data, tmp_path)
    assert store_files(tmp_path) == before  # the previous store is untouched


def test_label_minus_one_is_refused_not_shown_as_the_last_class(tmp_path):
    write_store(_store(), tmp_path)
    with h5py.File(_segment(tmp_path), "a") as f:
        f["rows/label"][1] = -1
    with pytest.raises(MedsearchError, match=r"is damaged: rows/label holds -1 at row 1 .*; move it aside and rebuild"):
        read_store(tmp_path)


def test_an_index_older_than_its_rows_is_accepted(tmp_path):
    """An interrupted `index` run commits rows embedded after the FAISS index was built (or sent back to
    pending): index_ntotal may then differ from the usable rows; the next run rebuilds the index."""
    data = _store()
    data.models["m"].state[:] = EMBEDDED
    data.models["m"].attrs.update(index_file="m.faiss", index_type="flat", index_sha256="0" * 64, index_ntotal=3,
                                  index_built="2024-01-01T00:00:00+0000")
    write_store(data, tmp_path)
    data.models["m"].state[:] = PENDING
    write_store(data, tmp_path)
    assert read_store(tmp_path).models["m"].attrs["index_ntotal"] == 3
    data.models["m"].attrs["index_ntotal"] = 6
    with pytest.raises(MedsearchError, match=r"index_ntotal is 6, not a count of rows \(0..5\)"):
        write_store(data, tmp_path)


def test_non_finite_embeddings_are_located_past_the_first_chunk(tmp_path):
    data = _store(n=2500, dim=2048)
    data.models["m"].embedding[2300, 17] = -np.inf
    with pytest.raises(MedsearchError, match="embedding holds -inf at row 2300, column 17"):
        write_store(data, tmp_path)


def test_readers_keep_their_snapshot(tmp_path):
    data = _store()
    write_store(data, tmp_path)
    reader = read_store(tmp_path)
    data.models["m"].embedding = np.full((5, 4), 7, np.float32)
    write_store(data, tmp_path)  # new segments and manifest; the old segments are deleted, the reader has them open
    assert len(list((tmp_path / "segments").iterdir())) == 1
    assert (reader.models["m"].embedding[:] == 0).all()
    assert (read_store(tmp_path).models["m"].embedding[:] == 7).all()


def test_a_commit_with_nothing_changed_writes_nothing(tmp_path, monkeypatch):
    """commit_store on an unchanged store keeps its manifest (no new generation), even seconds later."""
    import time
    from medsearch.storage import segmented
    from medsearch.storage.store import commit_store

    write_store(_store(), tmp_path)
    data = read_store(tmp_path)
    before = (tmp_path / "store.json").read_bytes()
    monkeypatch.setattr(time, "strftime", lambda *a: "2099-01-01T00:00:00+0000")  # a later second
    commit_store(data, tmp_path)
    assert (tmp_path / "store.json").read_bytes() == before and data.origin.manifest.generation == 1
    data.labels[0] = (data.labels[0] + 1) % 3
    data.touch(0)
    commit_store(data, tmp_path)
    assert data.origin.manifest.generation == 2 and len(data.origin.manifest.segments) == 2
    assert segmented.read_segmented(tmp_path).labels[0] == data.labels[0]
