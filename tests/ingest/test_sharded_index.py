"""`index --shards 3` on a tiny dataset: the store records three row-range shard files and `query` answers as
the unsharded store does; images added go into the last shard in place, images removed leave their shard,
`compact` renumbers the shards and removes the old files; a deleted or damaged shard file is refused in one
line; another shard count rebuilds, and `--shards 1` is the single-file format again."""
from __future__ import annotations

import json
import shutil

import pytest

from medsearch.ingest.compact import compact, remove_leftover_index_files
from medsearch.search.query import query
from medsearch.storage.store import read_store
from medsearch.storage.summary import store_summary

from ..conftest import index_tiny, make_image, raises_one_line

pytestmark = pytest.mark.usefixtures("one_blas_thread")

INDEX_TYPES = ["flat", "HNSW32", "IVF4,Flat"]


def _dataset(root, per_class=20):
    for c, name in enumerate(("benign", "malignant")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(root / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    return root


def _answers(out, images, k):
    return [[(n.id, n.similarity) for n in r.neighbours]
            for r in query([str(p) for p in images], index_dir=str(out), k=k, exclude_self=False)]


def _shards(out):
    return json.loads(read_store(out).models["tiny"].attrs["index_shards"])


def _index_files(out):
    return sorted(p.name for p in out.iterdir() if ".faiss" in p.name)


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_sharded_store_answers_as_unsharded_through_adds_removals_and_compaction(tmp_path, tiny, index_type):
    ds = _dataset(tmp_path / "ds")
    one, three = tmp_path / "one", tmp_path / "three"
    probes = [ds / "benign" / "benign_01.png", ds / "malignant" / "malignant_03.png"]

    def both(**kw):
        index_tiny(ds, one, index_type=index_type, **kw)
        return index_tiny(ds, three, index_type=index_type, shards=3, **kw)

    def same_answers(k):  # every row (k = all): approximate indexes search exhaustively, in near-tie order
        got, want = _answers(three, probes, k), _answers(one, probes, k)
        assert got == want if index_type == "flat" else [sorted(a) for a in got] == [sorted(a) for a in want]
        assert [[s for _, s in a] for a in got] == [[s for _, s in a] for a in want]

    both()
    records = _shards(three)
    assert [(r["first_row"], r["end_row"]) for r in records] == [(0, 14), (14, 27), (27, 40)]
    assert [r["ntotal"] for r in records] == [14, 13, 13] and _index_files(three) == [
        "tiny.shard-0-of-3.faiss", "tiny.shard-1-of-3.faiss", "tiny.shard-2-of-3.faiss"]
    assert "index_shards" not in read_store(one).models["tiny"].attrs
    same_answers(40)
    assert store_summary(str(three)).models["tiny"].index["shard_count"] == 3

    built = read_store(three).models["tiny"].attrs["index_built"]
    for i in range(20, 25):  # new rows: the highest row numbers, so the last shard
        make_image(ds / "benign" / f"benign_{i:02d}.png", 5 + i, seed=500 + i)
    both()
    m = read_store(three).models["tiny"]
    after = _shards(three)
    assert m.attrs["index_built"] == built and m.index_is_current()       # updated in place
    assert [r["ntotal"] for r in after] == [14, 13, 18] and after[-1]["end_row"] == 45
    assert [r["sha256"] for r in after[:2]] == [r["sha256"] for r in records[:2]]  # untouched shards kept
    same_answers(45)

    for p in [ds / "benign" / f"benign_{i:02d}.png" for i in (2, 5, 16)]:
        shutil.move(p, tmp_path / p.name)
    both(auto_compact=False)
    m = read_store(three).models["tiny"]
    assert m.attrs["index_built"] == built and m.index_is_current()
    held = [r["ntotal"] for r in _shards(three)]   # rows 2 and 5 left shard 0, row 16 shard 1 (HNSW: filtered)
    assert held == ([14, 13, 18] if index_type == "HNSW32" else [12, 12, 18])
    same_answers(42)
    assert compact(str(one)).rows_after == compact(str(three)).rows_after == 42
    m = read_store(three).models["tiny"]
    assert m.index_is_current() and _shards(three)[-1]["end_row"] == 42
    assert _index_files(three) == sorted(r["file"] for r in _shards(three))       # old shard files gone
    assert all(name.startswith("tiny.g") for name in _index_files(three))
    same_answers(42)


def test_a_deleted_or_damaged_shard_is_refused_in_one_line_and_index_rebuilds_it(tmp_path, tiny):
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "idx"
    index_tiny(ds, out, shards=3)
    probe = [ds / "benign" / "benign_01.png"]
    want = _answers(out, probe, 10)
    middle = out / "tiny.shard-1-of-3.faiss"
    keep = middle.read_bytes()
    middle.unlink()
    line = raises_one_line(lambda: _answers(out, probe, 10))
    assert str(middle) in line and "missing" in line and "medsearch index" in line
    middle.write_bytes(keep[:-100])
    assert str(middle) in raises_one_line(lambda: _answers(out, probe, 10))
    shutil.copy(out / "tiny.shard-0-of-3.faiss", middle)          # a foreign shard in its place
    assert str(middle) in raises_one_line(lambda: _answers(out, probe, 10))
    index_tiny(ds, out, shards=3)                                  # warns and rebuilds every shard
    assert _answers(out, probe, 10) == want


def test_another_shard_count_rebuilds_and_one_shard_is_the_single_file_format(tmp_path, tiny):
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "idx"
    index_tiny(ds, out, shards=3)
    probe = [ds / "malignant" / "malignant_07.png"]
    want = _answers(out, probe, 40)
    index_tiny(ds, out, shards=2)
    assert [r["file"] for r in _shards(out)] == ["tiny.shard-0-of-2.faiss", "tiny.shard-1-of-2.faiss"]
    assert _answers(out, probe, 40) == want
    index_tiny(ds, out)
    data = read_store(out)
    a = data.models["tiny"].attrs
    assert "index_shards" not in a and a["index_file"] == "tiny.faiss" and a["index_ntotal"] == 40
    assert _answers(out, probe, 40) == want
    remove_leftover_index_files(out, data)    # what the next writer does: unlisted shard files go, never listed ones
    assert _index_files(out) == ["tiny.faiss"]


def test_a_damaged_shard_record_in_the_manifest_is_refused_when_the_store_is_read(tmp_path, tiny):
    """Not only when the index is opened: `info` and every command refuse the store whole, in one line."""
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "idx"
    index_tiny(ds, out, shards=3)
    raw = json.loads((out / "store.json").read_text())
    records = json.loads(raw["models"]["tiny"]["index_shards"])
    records[1]["first_row"] += 1  # a gap between shard 0 and shard 1
    raw["models"]["tiny"]["index_shards"] = json.dumps(records)
    (out / "store.json").write_text(json.dumps(raw))
    line = raises_one_line(lambda: read_store(out))
    assert "store.json' is damaged: models/tiny index_shards: shard 1 covers rows [" in line
