"""The journal: parts written atomically, replayed only when they fit the store, numbered on after a restart."""
import json

import numpy as np

from medsearch.storage.journal import Journal
from medsearch.storage.schema import EMBEDDED, PENDING, SKIPPED
from medsearch.storage.store import ModelData, StoreData, write_store

PREPROCESS = {"resize": 64, "crop": 64, "interpolation": "bilinear", "norm": "mean-std",
              "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _store(n=5, dim=4):
    """Rows id0..id{n-1} of 3 classes, one model 'm' with every row pending."""
    data = StoreData([f"id{i}" for i in range(n)], [f"img/{i}.png" for i in range(n)], np.arange(n) % 3,
                     ["a", "b", "c"], "multiclass", attrs={"dataset_root": "/data"})
    data.models["m"] = ModelData(np.zeros((n, dim), np.float32), np.full(n, PENDING, np.int8), [""] * n,
                                 {"provenance": json.dumps({"encoder": "m", "preprocess": PREPROCESS, "dim": dim})})
    return data


def test_journal_replay_and_validation(tmp_path):
    data = _store()
    write_store(data, tmp_path)
    j = Journal(tmp_path, "m")
    j.append(np.array([0, 1]), ["id0", "id1"], np.ones((2, 4)), np.array([EMBEDDED, SKIPPED]), ["", "bad file"])
    j.append(np.array([3]), ["WRONG"], np.ones((1, 4)), np.array([EMBEDDED]), [""])  # rows of another store
    j.append(np.array([2]), ["id2"], np.full((1, 4), np.nan), np.array([EMBEDDED]), [""])  # an encoder's NaN
    j.append(np.array([4]), ["id4"], np.ones((1, 4)), np.array([7]), [""])  # a state no run writes
    (j.dir / "part-000000099.npz").write_bytes(b"garbage")
    assert len(j.parts()) == 5
    assert Journal(tmp_path, "m").replay(data, "m") == 2
    m = data.models["m"]
    assert m.state.tolist() == [EMBEDDED, SKIPPED, PENDING, PENDING, PENDING] and m.reason[1] == "bad file"
    j.clear()
    assert j.parts() == []




def test_a_new_journal_numbers_its_parts_after_those_left_by_a_killed_run(tmp_path):
    data = _store()
    first = Journal(tmp_path, "m")
    first.append(np.array([0]), ["id0"], np.ones((1, 4)), np.array([EMBEDDED]), [""])
    first.append(np.array([1]), ["id1"], np.ones((1, 4)), np.array([EMBEDDED]), [""])
    resumed = Journal(tmp_path, "m")
    resumed.append(np.array([2]), ["id2"], np.ones((1, 4)), np.array([EMBEDDED]), [""])
    assert [p.name for p in resumed.parts()] == [f"part-00000000{i}.npz" for i in (1, 2, 3)]
    assert resumed.replay(data, "m") == 3 and data.models["m"].state.tolist()[:3] == [EMBEDDED] * 3
    assert not [p for p in resumed.dir.iterdir() if ".tmp-" in p.name]  # each part was swapped in whole


def test_clearing_a_journal_that_was_never_written_is_harmless(tmp_path):
    j = Journal(tmp_path, "m")
    j.clear()
    assert j.parts() == [] and not j.dir.exists()


def test_fingerprints_taken_while_embedding_are_replayed_with_their_batch(tmp_path):
    """Rows read from a URI are fingerprinted by the worker that read them: a driver killed after journaling
    their batch must not lose the fingerprints; a part whose fingerprints are not sha256 digests is refused."""
    data = _store()
    data.sha256 = [""] * 5
    write_store(data, tmp_path)
    j = Journal(tmp_path, "m")
    j.append(np.array([0, 1]), ["id0", "id1"], np.ones((2, 4)), np.array([EMBEDDED, EMBEDDED]), ["", ""],
             ["a" * 64, ""])
    j.append(np.array([2]), ["id2"], np.ones((1, 4)), np.array([EMBEDDED]), [""], ["not a digest"])
    assert Journal(tmp_path, "m").replay(data, "m") == 2
    assert data.sha256 == ["a" * 64, "", "", "", ""] and data.models["m"].state[2] == PENDING
