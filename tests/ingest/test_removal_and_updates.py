"""Rows follow the dataset without rebuilding what need not be: images added go into the FAISS index in place,
images deleted vanish from every search at once (removed from Flat and IVF indexes, left out of an HNSW graph's
searches), compaction drops them from the files and renumbers the rows, and a format-1 store answers the same
queries before and after its upgrade."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from medsearch.ingest.compact import compact
from medsearch.search.query import query
from medsearch.storage.store import read_store

from ..conftest import as_format1, index_tiny, make_image

INDEX_TYPES = ["flat", "HNSW32", "IVF4,Flat"]


def _dataset(root, per_class=20):
    for c, name in enumerate(("benign", "malignant")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(root / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    return root


def _answers(out, images, k=10):
    return [[(n.id, n.similarity) for n in r.neighbours] for r in query([str(p) for p in images], index_dir=str(out),
                                                                        k=k, exclude_self=False)]


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_deleted_images_vanish_from_search_at_once_then_compaction_drops_them(tmp_path, tiny, index_type):
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "idx"
    index_tiny(ds, out, index_type=index_type)
    probes = [ds / "benign" / "benign_01.png", ds / "malignant" / "malignant_03.png"]
    built = read_store(out).models["tiny"].attrs["index_built"]
    gone = [ds / "benign" / f"benign_{i:02d}.png" for i in (2, 5, 7)] + [ds / "malignant" / "malignant_04.png"]
    for p in gone:
        shutil.move(p, tmp_path / p.name)
    summary = index_tiny(ds, out, index_type=index_type, auto_compact=False)
    assert summary.changes.gone_from_dataset == 4 and summary.compaction is None
    data = read_store(out)
    m = data.models["tiny"]
    assert data.removed.sum() == 4 and m.usable().size == 36 and m.index_is_current()
    assert m.attrs["index_built"] == built  # updated in place, not rebuilt
    assert m.attrs["index_filtered"] == (4 if index_type == "HNSW32" else 0)
    gone_ids = {f"{p.parent.name}/{p.name}" for p in gone}
    answers = _answers(out, probes, k=36)
    assert all(len(a) == 36 and not gone_ids & {i for i, _ in a} for a in answers)

    result = compact(str(out))
    assert result.rows_before == 40 and result.rows_after == 36 and result.removed_rows_dropped == 4
    assert result.indexes["tiny"] == ("rebuilt" if index_type == "HNSW32" else "renumbered")
    after = read_store(out)
    assert after.removed is None and len(after) == 36 and not gone_ids & set(after.ids)
    assert after.models["tiny"].index_is_current() and after.models["tiny"].attrs["index_filtered"] == 0
    stored = b"".join(p.read_bytes() for p in (out / "segments").iterdir())
    assert not any(p.name.encode() in stored for p in gone)  # the deleted file names left the files
    if index_type != "HNSW32":  # renumbered in place: the very same answers
        assert _answers(out, probes, k=36) == answers
    else:
        assert [sorted(i for i, _ in a) for a in _answers(out, probes, k=36)] == [sorted(i for i, _ in a) for a in answers]


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_new_images_are_added_to_the_index_in_place(tmp_path, tiny, index_type):
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "idx"
    index_tiny(ds, out, index_type=index_type)
    built = read_store(out).models["tiny"].attrs["index_built"]
    for i in range(20, 25):  # a pattern of their own, so that each is its own nearest row
        make_image(ds / "benign" / f"benign_{i:02d}.png", 5 + i, seed=500 + i)
    summary = index_tiny(ds, out, index_type=index_type)
    assert summary.models["tiny"].embedded_this_run == 5
    m = read_store(out).models["tiny"]
    assert m.attrs["index_built"] == built and m.attrs["index_ntotal"] == 45 and m.index_is_current()
    new = ds / "benign" / "benign_22.png"
    (every,) = _answers(out, [new], k=45)
    found = dict(every)  # the added rows are searchable; the query's own row is (one of) its nearest
    assert all(f"benign/benign_{i}.png" in found for i in range(20, 25)) and len(every) == 45
    assert found["benign/benign_22.png"] >= every[0][1] - 1e-4
    if index_type == "flat":  # exact: the same answers as an index built from scratch
        fresh = tmp_path / "fresh"
        index_tiny(ds, fresh, index_type=index_type)
        probes = [ds / "malignant" / "malignant_00.png", new]
        assert _answers(out, probes, k=45) == _answers(fresh, probes, k=45)


def test_an_image_back_in_the_dataset_is_embedded_again(tmp_path, tiny):
    ds, out = _dataset(tmp_path / "ds", per_class=6), tmp_path / "idx"
    index_tiny(ds, out)
    p = ds / "benign" / "benign_03.png"
    shutil.move(p, tmp_path / p.name)
    index_tiny(ds, out)
    shutil.move(tmp_path / p.name, p)
    summary = index_tiny(ds, out)
    data = read_store(out)
    assert summary.models["tiny"].embedded_this_run == 1 and data.removed is None
    assert data.models["tiny"].usable().size == 12 and data.models["tiny"].index_is_current()
    (top,) = _answers(out, [p], k=1)
    assert top[0][0] == "benign/benign_03.png"


def test_a_format1_store_answers_the_same_and_is_upgraded_by_the_next_write(tmp_path, tiny):
    ds, out = _dataset(tmp_path / "ds", per_class=8), tmp_path / "idx"
    index_tiny(ds, out)
    probes = [ds / "benign" / "benign_01.png", ds / "malignant" / "malignant_05.png"]
    before, before_all = _answers(out, probes), _answers(out, probes, k=16)
    as_format1(out)
    assert (out / "store.h5").exists() and not (out / "store.json").exists()
    assert _answers(out, probes) == before  # read whole, as before format 2
    old = read_store(out)
    assert index_tiny(ds, out).models["tiny"].embedded_this_run == 0  # nothing to write: left as it is
    assert (out / "store.h5").exists() and not (out / "store.json").exists()
    make_image(ds / "benign" / "new.png", 9, seed=999)
    assert index_tiny(ds, out).models["tiny"].embedded_this_run == 1  # the next write upgrades it
    assert (out / "store.json").exists() and not (out / "store.h5").exists()
    new = read_store(out)
    assert new.ids[:16] == old.ids and (new.labels[:16] == old.labels).all()
    assert np.array_equal(new.models["tiny"].embedding[:16], old.models["tiny"].embedding)
    every = [[a for a in answer if a[0] != "benign/new.png"] for answer in _answers(out, probes, k=17)]
    assert every == before_all  # the same rows, similarities and order, the new row aside


def test_compact_upgrades_a_format1_store(tmp_path, tiny):
    ds, out = _dataset(tmp_path / "ds", per_class=5), tmp_path / "idx"
    index_tiny(ds, out)
    as_format1(out)
    result = compact(str(out))
    assert result.rows_after == 10 and (out / "store.json").exists() and not (out / "store.h5").exists()
    assert read_store(out).models["tiny"].index_is_current()


def test_index_compacts_by_itself_when_much_is_dead(tmp_path, tiny):
    ds, out = _dataset(tmp_path / "ds", per_class=10), tmp_path / "idx"
    index_tiny(ds, out)
    for i in range(5):
        (ds / "benign" / f"benign_{i:02d}.png").unlink()
    summary = index_tiny(ds, out)
    assert summary.compaction is not None and summary.compaction.removed_rows_dropped == 5
    data = read_store(out)
    assert len(data) == 15 and data.removed is None and data.models["tiny"].index_is_current()
    assert len(list((out / "segments").iterdir())) == 1


def test_auto_rebuilds_when_the_store_outgrows_its_kind_of_index(tmp_path, tiny, monkeypatch):
    """`auto` kept in place while it means the same kind of index; past exact search's size it is rebuilt as
    the approximate index `auto` now means (here with the size limit lowered to 45 rows)."""
    import medsearch.storage.index_specs as specs

    monkeypatch.setattr(specs, "AUTO_FLAT_MAX_ROWS", 45)
    ds, out = _dataset(tmp_path / "ds"), tmp_path / "idx"
    index_tiny(ds, out)
    assert read_store(out).models["tiny"].attrs["index_spec"] == "Flat"
    for i in range(20, 22):
        make_image(ds / "benign" / f"benign_{i:02d}.png", 0, seed=700 + i)
    index_tiny(ds, out)
    assert read_store(out).models["tiny"].attrs["index_spec"] == "Flat"  # 42 rows: updated in place
    for i in range(22, 30):
        make_image(ds / "benign" / f"benign_{i:02d}.png", 0, seed=700 + i)
    index_tiny(ds, out)
    m = read_store(out).models["tiny"]
    assert m.attrs["index_spec"] == "HNSW32" and m.attrs["index_ntotal"] == 50 and m.index_is_current()
