import faiss
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.faiss_index import auto_index_type, build_index, load_index, normalize, save_index, search


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


def test_auto_choice_by_size():
    assert auto_index_type(10_000, 512) == "Flat"
    assert auto_index_type(500_000, 512) == "HNSW32"
    assert auto_index_type(5_000_000, 512).startswith("IVF")


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
