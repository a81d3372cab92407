"""Indexes changed in place (rows added, removed, renumbered) answer like a fresh build over the same rows, and
rows that must not come back never do, while k answers still come back."""
import faiss
import numpy as np
import pytest

from medsearch.storage.faiss_index import (add_to_index, build_tuned_index, needs_retrain, normalize,
                                           remove_from_index, renumber_index, search)

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _clustered(n, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 50, d))
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.7, size=(n, d))).astype(np.float32)


def _exact(x, rows, queries, k=10):
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(normalize(x[rows]))
    sims, pos = flat.search(normalize(queries), k)
    return sims, rows[pos]


X = _clustered(3_000)
Q = _clustered(3_000, seed=1)[:30]


@pytest.mark.parametrize("kind", ["HNSW32", "IVF32,Flat", "IVF32,PQ8", "flat"])
def test_excluded_rows_never_come_back_and_k_answers_still_do(kind):
    index, quality = build_tuned_index(X, np.arange(3_000), kind)
    _, nearest = _exact(X, np.arange(3_000), Q, 20)
    exclude = np.union1d(nearest.reshape(-1), np.arange(0, 3_000, 7))   # each query's 20 best, and more
    sims, ids = search(index, Q, 10, params=quality.search_params, read_rows=lambda r: X[r], exclude_rows=exclude)
    assert ids.shape == (30, 10) and (ids >= 0).all() and not np.isin(ids, exclude).any()
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_flat_remove_add_renumber_answer_exactly_like_a_fresh_build():
    rows = np.arange(3_000)
    index, _ = build_tuned_index(X[:2_500], rows[:2_500], "flat")
    gone = np.random.default_rng(0).choice(2_500, 300, replace=False)
    assert remove_from_index(index, gone)
    add_to_index(index, X[2_500:], rows[2_500:])
    kept = np.setdiff1d(rows, gone)
    assert index.ntotal == kept.size
    sims, ids = search(index, Q, 10)
    want_sims, want_ids = _exact(X, kept, Q)
    assert (ids == want_ids).all() and np.allclose(sims, want_sims, atol=1e-6)
    old_to_new = np.full(3_000, -1)
    old_to_new[kept] = np.arange(kept.size)          # the store compacts: rows shift down
    assert renumber_index(index, old_to_new)
    _, ids = search(index, Q, 10)
    assert (ids == old_to_new[want_ids]).all()
    add_to_index(index, X[gone[:5]], np.arange(kept.size, kept.size + 5))   # the reverse map was rebuilt
    assert remove_from_index(index, [0]) and index.ntotal == kept.size + 4


def test_ivf_remove_add_renumber_in_place_searched_exhaustively_is_exact():
    rows = np.arange(3_000)
    index, _ = build_tuned_index(X[:2_500], rows[:2_500], "IVF32,Flat")
    gone = np.arange(0, 2_500, 9)
    assert remove_from_index(index, gone)
    add_to_index(index, X[2_500:], rows[2_500:])
    kept = np.setdiff1d(rows, gone)
    every = {"nprobe": 32}
    _, ids = search(index, Q, 10, params=every)
    assert (ids == _exact(X, kept, Q)[1]).all()
    old_to_new = np.full(3_000, -1)
    old_to_new[kept] = np.arange(kept.size)
    assert renumber_index(index, old_to_new)
    assert (search(index, Q, 10, params=every)[1] == old_to_new[_exact(X, kept, Q)[1]]).all()


def test_hnsw_cannot_remove_in_place_so_it_filters_and_refuses_a_lossy_renumbering():
    index, quality = build_tuned_index(X, np.arange(3_000), "HNSW32")
    gone = np.arange(0, 3_000, 3)
    assert not remove_from_index(index, gone) and index.ntotal == 3_000
    old_to_new = np.arange(3_000)
    old_to_new[gone] = -1
    assert not renumber_index(index, old_to_new)          # the removed rows are still inside: rebuild
    assert renumber_index(index, np.arange(3_000)[::-1])  # a plain permutation is fine
    _, ids = search(index, X[:5], 1, params=quality.search_params)
    assert (ids[:, 0] == 2_999 - np.arange(5)).all()


def test_an_ivf_index_is_retrained_past_the_stated_factor():
    ivf, quality = build_tuned_index(X, np.arange(3_000), "IVF32,Flat")
    flat, _ = build_tuned_index(X, np.arange(3_000), "flat")
    assert quality.trained_rows == 3_000
    assert not needs_retrain(ivf, quality.trained_rows, 12_000) and needs_retrain(ivf, quality.trained_rows, 12_001)
    assert needs_retrain(ivf, 3_000, 6_001, factor=2) and not needs_retrain(flat, 0, 10**9)


def test_adding_a_row_the_index_holds_is_refused():
    from medsearch.errors import MedsearchError

    for kind in ("flat", "IVF32,Flat"):
        index, _ = build_tuned_index(X, np.arange(3_000), kind)
        with pytest.raises(MedsearchError, match="row 7 is in the index"):
            add_to_index(index, X[:2], [3_000, 7])


def test_hnsw_returns_k_rows_when_k_exceeds_the_tuned_ef_search():
    """FAISS's HNSW gives at most efSearch results; a search for more explores k deep instead of padding with -1."""
    import faiss

    from medsearch.storage.index_search import search

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    inner = faiss.IndexHNSWFlat(16, 32, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(x / np.linalg.norm(x, axis=1, keepdims=True), np.arange(3000))
    sims, ids = search(index, x[:5], 500, params={"efSearch": 16})
    assert ids.shape == (5, 500) and (ids >= 0).all() and all(np.unique(r).size == 500 for r in ids)
    sims, ids = search(index, x[:5], 500, params={"efSearch": 16}, exclude_rows=np.arange(100))
    assert (ids >= 100).all()
