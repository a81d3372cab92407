"""The build reads the stored vectors a bounded slice at a time: it must equal an in-memory build."""
import numpy as np
import pytest

import medsearch.storage.index_build as B
from medsearch.storage.faiss_index import build_tuned_index, normalize, search


class LazyRows:
    """A store's embeddings read by rows: slices and increasing positions only, never the whole matrix."""

    def __init__(self, x):
        self._x, self.shape, self.most = x, x.shape, 0

    def __getitem__(self, key):
        if not isinstance(key, slice):
            key = np.asarray(key)
            assert key.ndim == 1 and (np.diff(key) > 0).all(), "positions must increase (HDF5)"
        out = np.array(self._x[key])
        self.most = max(self.most, out.shape[0])
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole matrix was read")


def _clustered(n, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 50, d))
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.7, size=(n, d))).astype(np.float32)


def test_streaming_flat_build_equals_the_in_memory_one(monkeypatch):
    monkeypatch.setattr(B, "ADD_CHUNK_ROWS", 700)
    x = _clustered(3_000)
    rows = np.arange(3_000) * 2 + 5
    lazy = LazyRows(x)
    streamed, _ = build_tuned_index(lazy, rows, "flat")
    whole, _ = build_tuned_index(x, rows, "flat")
    assert lazy.most <= 700
    a, b = search(streamed, x[:40], 10), search(whole, x[:40], 10)
    assert (a[1] == b[1]).all() and np.array_equal(a[0], b[0])


def test_ivf_pq_build_reads_bounded_slices_and_reranks_through_the_reader(monkeypatch):
    monkeypatch.setattr(B, "ADD_CHUNK_ROWS", 4_096)
    monkeypatch.setattr(B, "TRAIN_ROWS_MAX", 6_000)
    monkeypatch.setattr(B, "EXACT_BLOCK_ELEMENTS", 1_000 * 1_024)
    x = _clustered(20_000)
    lazy = LazyRows(x)
    index, quality = build_tuned_index(lazy, np.arange(20_000), "auto", max_memory=500_000)
    assert quality.trained_rows == 20_000 and "rerank" in quality.search_params
    assert lazy.most <= 8_192          # the training sample (6,000) and re-rank reads; slices of 1,024 to add
    whole, quality_whole = build_tuned_index(x, np.arange(20_000), "auto", max_memory=500_000)
    assert quality.search_params == quality_whole.search_params
    assert quality.recall_at_10 == pytest.approx(quality_whole.recall_at_10)


def test_row_ids_must_match_the_vectors():
    from medsearch.errors import MedsearchError

    x = normalize(_clustered(500))
    with pytest.raises(MedsearchError, match="distinct"):
        build_tuned_index(x, np.zeros(500), "flat")
    with pytest.raises(MedsearchError, match="499 row ids for 500"):
        build_tuned_index(x, np.arange(499), "flat")
