import faiss
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.faiss_index import (DEFAULT_MAX_INDEX_MEMORY, RECALL_TARGET, auto_index_type, build_index,
                                           build_tuned_index, index_memory_estimate, load_index, normalize,
                                           quality_attrs, save_index, search)


def _data(n=300, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_flat_is_exact_cosine_with_store_row_ids():
    x = _data()
    rows = np.arange(1000, 1300)
    idx = build_index(x, rows)
    sims, ids = search(idx, x[:5], 3)
    assert (ids[:, 0] == rows[:5]).all() and np.allclose(sims[:, 0], 1, atol=1e-5)
    xn = normalize(x)
    brute = np.argsort(-(xn[:5] @ xn.T), axis=1)[:, :3]
    assert (ids == rows[brute]).all()


@pytest.mark.parametrize("kind", ["HNSW32", "IVF8,Flat", "auto"])
def test_factory_types(kind):
    x = _data()
    idx = build_index(x, np.arange(300), kind)
    _, ids = search(idx, x[:20], 1)
    assert (ids[:, 0] == np.arange(20)).mean() > 0.9


def test_auto_choice_by_size_and_memory():
    assert auto_index_type(10_000, 512) == "Flat"
    assert auto_index_type(150_000, 256) == "HNSW32"                  # about 0.2 GB: fits the 1 GiB default
    assert auto_index_type(500_000, 512, 4 << 30) == "HNSW32"
    assert auto_index_type(10_000, 512, 10_000_000) == "IVF256,PQ64"  # the flat vectors (20 MB) do not fit
    big = auto_index_type(1_000_000, 1280)
    assert big == "IVF4000_HNSW32,PQ64" and index_memory_estimate(big, 1_000_000, 1280) < 200e6
    assert index_memory_estimate("HNSW32", 1_000_000, 1280) > DEFAULT_MAX_INDEX_MEMORY
    assert auto_index_type(5_000_000, 512).startswith("IVF4096_HNSW32,PQ")
    assert auto_index_type(1_000_000, 1280, 60_000_000).endswith(",PQ20")  # fewer code bytes to fit
    with pytest.raises(MedsearchError, match="--max-memory"):
        auto_index_type(1_000_000, 1280, 1_000_000)
    with pytest.raises(MedsearchError, match="--max-memory"):
        auto_index_type(1_000, 16, 0)


@pytest.mark.parametrize("bad", [0, -0.5, 1.01, float("nan"), "0.9", True, None])
def test_recall_target_is_checked(bad):
    with pytest.raises(MedsearchError, match="--recall-target"):
        build_tuned_index(_data(), np.arange(300), "HNSW32", recall_target=bad)


def test_bad_type_and_too_few_points():
    with pytest.raises(MedsearchError, match="does not understand"):
        build_index(_data(), np.arange(300), "NoSuchIndex")
    with pytest.raises(MedsearchError, match="needs at least"):
        build_index(_data(50), np.arange(50), "IVF256,Flat")


def test_save_load_validates(tmp_path):
    x = _data()
    path = tmp_path / "m.faiss"
    sha = save_index(build_index(x, np.arange(300)), path)
    assert load_index(path, dim=16, ntotal=300, sha256=sha).ntotal == 300
    with pytest.raises(MedsearchError, match="holds 300 vectors"):
        load_index(path, dim=16, ntotal=299, sha256=sha)
    faiss.write_index(build_index(x[:10], np.arange(10)), str(path))
    with pytest.raises(MedsearchError, match="does not match the store"):
        load_index(path, dim=16, ntotal=300, sha256=sha)
    path.write_bytes(b"garbage")
    with pytest.raises(MedsearchError, match="cannot read index"):
        load_index(path, dim=16, ntotal=300, sha256=None)


def _clustered(n, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 50, d))
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.7, size=(n, d))).astype(np.float32)


def _recall(index, queries, x, k=10):
    return _recall_of(index.search(normalize(queries), k)[1], queries, x, k)


def _recall_of(got, queries, x, k=10):
    truth = faiss.IndexFlatIP(x.shape[1])
    truth.add(normalize(x))
    want = truth.search(normalize(queries), k)[1]
    return float(np.mean([np.intersect1d(a, b).size / k for a, b in zip(got, want)]))


@pytest.mark.parametrize("kind, knob", [("HNSW32", "efSearch"), ("IVF128,Flat", "nprobe")])
def test_approximate_index_is_tuned_to_the_recall_target_and_says_so(kind, knob):
    both = _clustered(20_500)
    x, fresh = both[:20_000], both[20_000:]  # the same clusters; the last 500 are never added to the index
    index, quality = build_tuned_index(x, np.arange(20_000), kind)
    assert index.ntotal == 20_000 and not quality.exact and quality.queries == 1000  # half of 2000 held out
    assert quality.recall_at_10 >= RECALL_TARGET and set(quality.search_params) == {knob}
    assert _recall(index, fresh, x) >= RECALL_TARGET - 0.03  # the recorded figure holds for new queries
    assert quality_attrs(quality, index)["index_recall_at_10"] == quality.recall_at_10


def test_an_index_that_cannot_reach_the_target_records_what_it_reached():
    x = _clustered(20_000)
    index, quality = build_tuned_index(x, np.arange(20_000), "IVF64,PQ1")  # 1 byte a vector: very coarse
    assert not quality.exact and quality.recall_at_10 < RECALL_TARGET
    assert quality.search_params == {"nprobe": 64, "rerank": 400}  # every list, deepest re-rank: the most it can do
    fresh = search(index, x[:300], 10, params=quality.search_params, read_rows=lambda r: x[r])[1]
    assert abs(_recall_of(fresh, x[:300], x) - quality.recall_at_10) < 0.1


def test_flat_is_exact_with_nothing_to_tune():
    index, quality = build_tuned_index(_data(), np.arange(300), "flat")
    assert quality.exact and quality.recall_at_10 == 1.0 and quality.search_params == {} and quality.queries == 0


def test_exact_neighbours_by_slices_equal_faiss_and_leave_the_held_rows_out():
    from medsearch.storage.index_build import TopK

    x = normalize(_clustered(5_000))
    skip = np.zeros(5_000, dtype=bool)
    skip[::97] = True
    queries = x[skip][:50]
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x[~skip])
    want = np.flatnonzero(~skip)[flat.search(queries, 10)[1]]
    top = TopK(queries, 10)
    for start in range(0, 5_000, 1_500):  # several slice boundaries
        top.update(x[start:start + 1_500], start, skip[start:start + 1_500])
    assert all(set(g) == set(w) for g, w in zip(top.rows, want)) and not skip[top.rows].any()
