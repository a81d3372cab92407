"""The server searches a sharded store (`index --shards 3`) transparently: its API answers as it does on the
same store indexed unsharded, with and without filters (rows left out inside each shard's search)."""
from __future__ import annotations

import pytest

from ..conftest import index_tiny, make_image

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.mark.parametrize("index_type", ["flat", "HNSW32"])
def test_api_answers_the_same_on_a_sharded_store(tmp_path, tiny, index_type):
    from fastapi.testclient import TestClient

    from medsearch.serve import create_app

    ds = tmp_path / "ds"
    for c, name in enumerate(("benign", "malignant")):
        (ds / name).mkdir(parents=True)
        for i in range(15):
            make_image(ds / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    index_tiny(ds, tmp_path / "one", index_type=index_type)
    index_tiny(ds, tmp_path / "three", index_type=index_type, shards=3)
    with TestClient(create_app([tmp_path / "one", tmp_path / "three"]), base_url="http://127.0.0.1") as client:
        def neighbours(name, **params):
            res = client.get(f"/api/indexes/{name}/search", params={"id": "benign/benign_03.png"} | params)
            assert res.status_code == 200, res.text
            return sorted((n["id"], n["similarity"]) for n in res.json()["neighbours"])

        for params in ({"k": 29}, {"k": 10, "label": "malignant"}):
            got = neighbours("three", **params)
            assert got == neighbours("one", **params) and len(got) == params["k"]
        assert all(i.startswith("malignant/") for i, _ in neighbours("three", k=10, label="malignant"))
