"""A sharded index answers as one index would: exact shards give the single index's neighbours in its order
(for queries whose top similarities are distinct, so that one order is right), with and without excluded
rows, over even and uneven row ranges, read whole or memory-mapped from their files; approximate shards reach
the recall@10 recorded for their merged answer; a missing, truncated or foreign shard file, and a damaged
shard record, are refused in one line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medsearch.storage.index_build import build_tuned_index
from medsearch.storage.index_search import search
from medsearch.storage.index_shards import is_sharded, shard_bounds, shard_of, shards_of
from medsearch.storage.shard_files import open_index, save_shards

from ..conftest import raises_one_line

N, DIM, K = 100_000, 64, 20


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    q = rng.standard_normal((60, DIM)).astype(np.float32)
    return x, q


@pytest.fixture(scope="module")
def single(vectors):
    return build_tuned_index(vectors[0], np.arange(N), "flat")[0]


def _uneven(shards):
    bounds = shard_bounds(np.arange(N), N, shards)
    bounds[1] = bounds[1] // 5          # a small first shard, a large second one
    return bounds


@pytest.mark.parametrize("bounds", [shard_bounds(np.arange(N), N, 2), _uneven(3), _uneven(7)],
                         ids=["2-even", "3-uneven", "7-uneven"])
def test_exact_shards_return_the_single_indexs_neighbours_in_order(vectors, single, bounds, tmp_path):
    x, q = vectors
    sharded, quality = build_tuned_index(x, np.arange(N), "flat", bounds=bounds)
    assert is_sharded(sharded) and quality.exact and sharded.ntotal == N
    assert [s.ntotal for s in shards_of(sharded)] == np.diff(bounds).tolist()
    mapped = open_index(tmp_path, save_shards(tmp_path, sharded, bounds, "m"), dim=DIM, mmap=True)
    excluded = np.random.default_rng(1).choice(N, N // 3, replace=False)
    for exclude in (None, excluded):
        want_sims, want_ids = search(single, q, K, exclude_rows=exclude)
        distinct = (np.diff(want_sims, axis=1) < -1e-5).all(axis=1)   # one right order: no near-ties
        assert distinct.sum() >= len(q) // 2
        for index in (sharded, mapped):
            sims, ids = search(index, q, K, exclude_rows=exclude)
            assert np.array_equal(ids[distinct], want_ids[distinct])
            assert np.abs(sims - want_sims).max() <= 1e-5
            if exclude is not None:
                assert not np.isin(ids, exclude).any()


def _clustered(rng, n, centres):
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, centres.shape[1]))
    return x.astype(np.float32)


@pytest.mark.parametrize("spec", ["HNSW16", "IVF64,Flat"])
def test_approximate_shards_reach_the_recall_they_record(spec, tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((200, 32))
    n = 20_000
    x = _clustered(rng, n, centres)
    bounds = shard_bounds(np.arange(n), n, 3)
    sharded, quality = build_tuned_index(x, np.arange(n), spec, bounds=bounds, recall_target=0.9)
    assert not quality.exact and quality.queries == 1000 and quality.recall_at_10 >= 0.9
    index = open_index(tmp_path, save_shards(tmp_path, sharded, bounds, "m"), dim=32, mmap=True)
    fresh = _clustered(rng, 1000, centres)                      # other queries, not in the store
    truth = search(build_tuned_index(x, np.arange(n), "flat")[0], fresh, 10)[1]
    found = search(index, fresh, 10, params=quality.search_params)[1]
    measured = np.mean([np.intersect1d(f, t).size / 10 for f, t in zip(found, truth)])
    assert abs(measured - quality.recall_at_10) <= 0.03, (measured, quality)


def test_bounds_route_rows_and_allow_more_shards_than_rows():
    rows = np.array([0, 2, 3, 7, 8, 9])
    bounds = shard_bounds(rows, 12, 3)
    assert bounds.tolist() == [0, 3, 8, 12]
    assert shard_of([0, 2, 3, 7, 8, 11, 20], bounds).tolist() == [0, 0, 1, 1, 2, 2, 2]   # 20: a new row, last shard
    assert shard_bounds(np.array([4]), 5, 3).tolist() == [0, 5, 5, 5]
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    index, _ = build_tuned_index(x, [1, 3], "flat", bounds=shard_bounds(np.array([1, 3]), 4, 4))
    assert [s.ntotal for s in shards_of(index)] == [1, 0, 1, 0]
    assert search(index, x, 2)[1][:, 0].tolist() == [1, 3]


@pytest.fixture
def saved(tmp_path):
    x = np.random.default_rng(2).standard_normal((3000, 16)).astype(np.float32)
    bounds = shard_bounds(np.arange(3000), 3000, 3)
    attrs = save_shards(tmp_path, build_tuned_index(x, np.arange(3000), "flat", bounds=bounds)[0], bounds, "m")
    return tmp_path, attrs


def test_missing_truncated_or_foreign_shard_files_are_refused_in_one_line(saved):
    folder, attrs = saved
    files = [r["file"] for r in json.loads(attrs["index_shards"])]
    assert files == ["m.shard-0-of-3.faiss", "m.shard-1-of-3.faiss", "m.shard-2-of-3.faiss"]
    assert open_index(folder, attrs, dim=16, verify=True).ntotal == 3000
    shutil.copy(folder / files[0], folder / "keep")
    shutil.copy(folder / files[2], folder / files[0])           # a foreign shard (same size, other rows)
    assert files[0] in raises_one_line(lambda: open_index(folder, attrs, dim=16, mmap=True))
    with open(folder / files[0], "r+b") as f:
        f.truncate(1000)
    line = raises_one_line(lambda: open_index(folder, attrs, dim=16, mmap=True))
    assert files[0] in line and "rebuild" in line
    shutil.move(folder / "keep", folder / files[0])
    (folder / files[1]).unlink()
    line = raises_one_line(lambda: open_index(folder, attrs, dim=16))
    assert files[1] in line and "missing" in line and "medsearch index" in line


@pytest.mark.parametrize("damage", [
    lambda r: r[1].update(first_row=r[1]["first_row"] + 1),     # rows not contiguous
    lambda r: r[0].update(ntotal=r[0]["ntotal"] + 1),            # counts not summing to index_ntotal
    lambda r: r[2].update(file="../elsewhere.faiss"),            # not a plain shard file name
    lambda r: r[0].pop("fingerprint"),                           # a field missing
])
def test_a_damaged_shard_record_is_refused_in_one_line(saved, damage):
    folder, attrs = saved
    records = json.loads(attrs["index_shards"])
    damage(records)
    attrs = attrs | {"index_shards": json.dumps(records)}
    assert "index_shards" in raises_one_line(lambda: open_index(folder, attrs, dim=16))
