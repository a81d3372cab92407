"""Approximate indexes tuned to a recall target, including IVF-PQ whose candidates are re-ranked exactly from
the stored vectors; the recorded recall must hold for queries that were never in the index."""
import faiss
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.faiss_index import (RECALL_TARGET, auto_index_type, build_tuned_index, normalize,
                                           quality_attrs, search)


def _clustered(n, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 50, d))
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.7, size=(n, d))).astype(np.float32)


def _truth(x, queries, k=10):
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(normalize(x))
    return flat.search(normalize(queries), k)[1]


def _recall(found, truth):
    return float(np.mean([np.intersect1d(f, t).size / truth.shape[1] for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    both = _clustered(20_500)
    return both[:20_000], both[20_000:]  # the same clusters; the last 500 are never added


@pytest.fixture(scope="module")
def pq_built(data):
    return build_tuned_index(data[0], np.arange(20_000), "auto", max_memory=500_000)


def test_auto_with_a_small_memory_budget_is_ivf_pq_reranked_to_the_target(data, pq_built):
    x, fresh = data
    assert auto_index_type(20_000, 32, 500_000) == "IVF512,PQ8"   # HNSW (9 MB) and 16-byte codes do not fit
    index, quality = pq_built
    assert quality.spec == "IVF512,PQ8" and not quality.exact and index.ntotal == 20_000
    params = quality.search_params
    assert set(params) == {"nprobe", "rerank"} and params["rerank"] > 0
    assert quality.recall_at_10 >= RECALL_TARGET
    truth = _truth(x, fresh)
    reranked = search(index, fresh, 10, params=params, read_rows=lambda rows: x[rows])
    assert _recall(reranked[1], truth) >= RECALL_TARGET - 0.03
    plain = search(index, fresh, 10, params={"nprobe": params["nprobe"]})[1]
    assert _recall(plain, truth) < _recall(reranked[1], truth) - 0.1     # re-ranking is what reaches it
    xs = normalize(x)                                                     # sims are exact cosines, best first
    got = np.einsum("ij,ij->i", normalize(fresh[:, None, :].repeat(10, 1).reshape(-1, 32)),
                    xs[reranked[1].reshape(-1)]).reshape(-1, 10)
    assert np.allclose(got, reranked[0], atol=1e-5) and (np.diff(reranked[0], axis=1) <= 1e-6).all()
    attrs = quality_attrs(quality, index)
    assert attrs["index_spec"] == "IVF512,PQ8" and attrs["index_trained_rows"] == 20_000
    assert 16 <= attrs["index_bytes_per_vector"] < 25      # 8 code bytes, 8 id bytes, the centroids shared


def test_rerank_needs_the_stored_vectors(data, pq_built):
    x, fresh = data
    index, quality = pq_built
    with pytest.raises(MedsearchError, match="read_rows"):
        search(index, fresh, 10, params=quality.search_params)
    with pytest.raises(MedsearchError, match="does not apply"):
        search(index, fresh, 10, params={"efSearch": 64})
    with pytest.raises(MedsearchError, match="not .*medsearch index"):
        search(index, fresh, 10, params=quality.search_params, read_rows=lambda rows: x[rows][:, :8])


def test_the_099_target_is_reached_and_recorded(data):
    x, fresh = data
    index, quality = build_tuned_index(x, np.arange(20_000), "HNSW32", recall_target=0.99)
    assert quality.recall_target == 0.99 and quality.recall_at_10 >= 0.99
    assert _recall(search(index, fresh, 10, params=quality.search_params)[1], _truth(x, fresh)) >= 0.97
    assert quality_attrs(quality, index)["index_recall_target"] == 0.99


def test_rerank_depth_scales_with_k(data, pq_built):
    x, fresh = data
    index, quality = pq_built
    asked = []

    def read_rows(rows):
        asked.append(rows.size)
        return x[rows]
    sims, ids = search(index, fresh[:1], 50, params=quality.search_params, read_rows=read_rows)
    assert ids.shape == (1, 50) and (ids >= 0).all()
    assert asked[0] >= min(5 * quality.search_params["rerank"], 20_000) * 0.9   # R candidates per 10 asked


def test_a_graph_searched_coarse_quantizer_is_tuned_and_reranked_too(data):
    x, fresh = data                          # what auto builds from 1,024 lists on (IVF{nlist}_HNSW32,PQ{m})
    index, quality = build_tuned_index(x, np.arange(20_000), "IVF64_HNSW32,PQ8")
    assert quality.recall_at_10 >= RECALL_TARGET and "rerank" in quality.search_params
    found = search(index, fresh, 10, params=quality.search_params, read_rows=lambda rows: x[rows])[1]
    assert _recall(found, _truth(x, fresh)) >= RECALL_TARGET - 0.03
