import json
import multiprocessing as mp

import h5py
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.store import (EMBEDDED, PENDING, SKIPPED, Journal, ModelData, StoreData, WriterLock, read_store,
                             store_path, write_store)


def _store(n=5, dim=4, task="multiclass"):
    labels = np.arange(n) % 3 if task != "multilabel" else (np.arange(n * 2).reshape(n, 2) % 2)
    data = StoreData([f"id{i}" for i in range(n)], [f"img/{i}.png" for i in range(n)], labels,
                     ["a", "b", "c"] if task != "multilabel" else ["x", "y"], task,
                     groups=[f"p{i // 2}" for i in range(n)], attrs={"dataset_root": "/data"})
    data.models["m"] = ModelData(np.zeros((n, dim), np.float32), np.full(n, PENDING, np.int8), [""] * n,
                                 {"provenance": json.dumps({"encoder": "m"})})
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
    assert (back.models["m"].embedding == data.models["m"].embedding).all()
    assert back.models["m"].usable().tolist() == [2]
    # readable with h5py alone, as documented
    with h5py.File(store_path(tmp_path)) as f:
        assert f.attrs["format"] == "medsearch-store" and f["models/m/embedding"].shape == (5, 4)


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
    with h5py.File(store_path(tmp_path), "a") as f:
        del f["models/m/embedding"]
        f["models/m/embedding"] = np.zeros((3, 4), np.float32)
    with pytest.raises(MedsearchError, match="damaged"):
        read_store(tmp_path)


def test_journal_replay_and_validation(tmp_path):
    data = _store()
    write_store(data, tmp_path)
    j = Journal(tmp_path, "m")
    j.append(np.array([0, 1]), ["id0", "id1"], np.ones((2, 4)), np.array([EMBEDDED, SKIPPED]), ["", "bad file"])
    j.append(np.array([3]), ["WRONG"], np.ones((1, 4)), np.array([EMBEDDED]), [""])  # rows of another store
    (j.dir / "part-000000099.npz").write_bytes(b"garbage")
    assert len(j.parts()) == 3
    assert Journal(tmp_path, "m").replay(data, "m") == 2
    m = data.models["m"]
    assert m.state.tolist() == [EMBEDDED, SKIPPED, PENDING, PENDING, PENDING] and m.reason[1] == "bad file"
    j.clear()
    assert j.parts() == []


def _try_lock(path, q):
    try:
        with WriterLock(path):
            q.put("got it")
    except MedsearchError as exc:
        q.put(str(exc))


def test_second_writer_is_refused(tmp_path):
    with WriterLock(tmp_path):
        q = mp.get_context("fork").Queue()
        p = mp.get_context("fork").Process(target=_try_lock, args=(tmp_path, q))
        p.start()
        p.join(10)
        assert "another medsearch process" in q.get(timeout=5)
    with WriterLock(tmp_path):  # released, so it can be taken again
        pass


def test_readers_keep_their_snapshot(tmp_path):
    data = _store()
    write_store(data, tmp_path)
    with h5py.File(store_path(tmp_path), "r") as reader:
        data.models["m"].embedding[:] = 7
        write_store(data, tmp_path)  # atomic replace while a reader has the old file open
        assert (reader["models/m/embedding"][()] == 0).all()
    assert (read_store(tmp_path).models["m"].embedding == 7).all()
