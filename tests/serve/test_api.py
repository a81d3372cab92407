"""The JSON API on a small real store: answers agree with `query` (the CLI's library call), filters and
options do what they say, and a store committed while the server runs is picked up."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from medsearch.search.query import query
from medsearch.storage.store import read_store

from .conftest import MODELS

LITE0, LITE1 = MODELS
FUSED = f"{LITE0}+{LITE1}"
CASE = "test_000.png"


def _image_path(store, case_id):
    data = read_store(store)
    return f"{data.attrs['dataset_root']}/{data.sources[data.ids.index(case_id)]}"


def _search(client, **params):
    res = client.get("/api/indexes/index/search", params=params)
    assert res.status_code == 200, res.text
    return res.json()


def test_summary_lists_rows_labels_splits_models_and_reports(client):
    s = client.get("/api/indexes/index").json()
    assert s["n_rows"] == 48 and sum(s["label_counts"].values()) == 48
    assert s["splits"] == {"train": 32, "val": 8, "test": 8}
    assert set(s["models"]) == set(MODELS) and FUSED in s["model_choices"]
    assert all(m["head"] == "lr" for m in s["models"].values())
    assert len(s["reports"]) == 1
    assert client.get("/api/indexes").json()[0]["name"] == "index"


def test_search_by_id_and_by_upload_agree_with_query(client, served_store):
    path = _image_path(served_store, CASE)
    want = query([path], index_dir=str(served_store), model=LITE0, k=6,
                 head=str(served_store / "heads" / f"{LITE0}-lr.npz"))[0].to_json()
    by_id = _search(client, id=CASE, model=LITE0, k=6)
    with open(path, "rb") as f:
        res = client.post("/api/indexes/index/search", params={"model": LITE0, "k": 6},
                          files={"image": ("q.png", f.read(), "image/png")})
    by_upload = res.json()
    for got in (by_id, by_upload):
        assert [n["id"] for n in got["neighbours"]] == [n["id"] for n in want["neighbours"]]
        assert np.allclose([n["similarity"] for n in got["neighbours"]],
                           [n["similarity"] for n in want["neighbours"]], atol=2e-3)
        assert got["self_ids"] == want["self_ids"] == [CASE]
        assert set(want) <= set(got)  # the fields of `query --json`, and a few more
        assert got["vote"] == pytest.approx(want["vote"], abs=2e-3)
        assert got["head"]["probabilities"] == pytest.approx(want["head"]["probabilities"], abs=2e-3)
        assert all(n["split"] in ("train", "val", "test") for n in got["neighbours"])


def test_filters_keep_only_the_asked_labels_and_splits(client):
    got = _search(client, id=CASE, k=10, label="malignant", split=["train", "val"])
    assert len(got["neighbours"]) == 10
    assert all(n["labels"] == ["malignant"] and n["split"] in ("train", "val") for n in got["neighbours"])
    assert _search(client, id=CASE, k=5, split="test")["neighbours"][0]["split"] == "test"


def test_exclude_patient_leaves_out_the_querys_patient(client, served_store):
    data = read_store(served_store)
    group = data.groups[data.ids.index(CASE)]
    mates = {i for i, g in zip(data.ids, data.groups) if g == group} - {CASE}
    assert mates
    everything = _search(client, id=CASE, k=47, include_self=True)
    assert mates <= {n["id"] for n in everything["neighbours"]}
    got = _search(client, id=CASE, k=40, exclude_patient=True)
    assert got["excluded_groups"] == [group]
    assert not mates & {n["id"] for n in got["neighbours"]} and len(got["neighbours"]) == 40


def test_fusion_ranks_by_the_mean_of_the_models_cosines(client, served_store):
    data = read_store(served_store)
    got = _search(client, id=CASE, model=FUSED, k=5)
    q = data.ids.index(CASE)

    def cos(key, r):
        e = np.asarray(data.models[key].embedding[[q, r]], dtype=np.float64)
        return float(e[0] @ e[1] / np.linalg.norm(e[0]) / np.linalg.norm(e[1]))
    for n in got["neighbours"]:
        assert n["similarity"] == pytest.approx((cos(LITE0, n["row"]) + cos(LITE1, n["row"])) / 2, abs=2e-3)
    assert got["model"] == FUSED and len(got["neighbours"]) == 5


def test_region_search_encodes_the_crop(client, served_store):
    whole = _search(client, id=CASE, k=5)
    region = _search(client, id=CASE, k=5, crop="0,0,0.5,0.5")
    assert region["filters"]["crop"] == [0, 0, 0.5, 0.5] and len(region["neighbours"]) == 5
    assert [n["similarity"] for n in region["neighbours"]] != [n["similarity"] for n in whole["neighbours"]]
    img = Image.open(_image_path(served_store, CASE)).convert("RGB")
    buf = io.BytesIO()
    img.crop((0, 0, img.width // 2, img.height // 2)).save(buf, format="PNG")
    cropped = client.post("/api/indexes/index/search", params={"k": 5}, content=buf.getvalue(),
                          headers={"content-type": "image/png"}).json()
    assert [n["id"] for n in cropped["neighbours"]] == [n["id"] for n in region["neighbours"]]


def test_csv_download_has_the_neighbours_in_order(client):
    res = client.get("/api/indexes/index/search", params={"id": CASE, "k": 4, "format": "csv"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(res.text)))
    assert [r["id"] for r in rows] == [n["id"] for n in _search(client, id=CASE, k=4)["neighbours"]]


def test_case_cases_and_thumbnail(client):
    case = client.get("/api/indexes/index/case", params={"id": CASE}).json()
    assert case["split"] == "test" and case["group"] and case["labels"]
    page = client.get("/api/indexes/index/cases", params={"label": "benign", "limit": 5, "offset": 2}).json()
    assert page["total"] == 24 and len(page["cases"]) == 5 and all(c["labels"] == ["benign"] for c in page["cases"])
    res = client.get("/api/indexes/index/thumbnail", params={"id": CASE, "size": 32})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(res.content)).size) <= 64


def test_eval_reports(client):
    names = client.get("/api/indexes/index/reports").json()
    report = client.get(f"/api/indexes/index/reports/{names[0]}").json()
    assert set(report["models"]) == set(MODELS)
    res = client.get(f"/api/indexes/index/reports/{names[0]}/roc", params={"model": LITE0})
    assert res.status_code == 200 and res.content.startswith(b"\x89PNG")
    curves = client.get(f"/api/indexes/index/reports/{names[0]}/curves", params={"model": LITE0})
    assert curves.status_code == 200 and curves.content.startswith(b"\x89PNG") and curves.content != res.content


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/indexes/{index}/search", "/api/indexes/{index}/thumbnail", "/api/indexes/{index}/case"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/api/indexes/{index}/search"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 404  # FastAPI's docs page loads from a CDN: off


def test_a_store_committed_while_serving_is_picked_up(tmp_path):
    from fastapi.testclient import TestClient

    from medsearch.serve import create_app
    from tests.conftest import make_store

    make_store(tmp_path / "s", n=150)
    c = TestClient(create_app([tmp_path / "s"]), base_url="http://127.0.0.1")
    before = c.get("/api/indexes/s").json()
    assert before["n_rows"] == 150 and c.get("/api/indexes/s/case", params={"id": "img0155"}).status_code == 404
    make_store(tmp_path / "s", n=160, seed=1)
    after = c.get("/api/indexes/s").json()
    assert after["n_rows"] == 160 and after["generation"] != before["generation"]
    assert c.get("/api/indexes/s/case", params={"id": "img0155"}).status_code == 200


def test_thumbnails_and_queries_of_an_npz_store(tmp_path):
    """An .npz store (the demo's layout) has no image files: thumbnails come from its arrays."""
    from fastapi.testclient import TestClient

    from medsearch.demo import demo_file
    from medsearch.ingest.indexing import index_dataset
    from medsearch.serve import create_app

    with np.load(demo_file("breastmnist"), allow_pickle=False) as z:
        small = {f"{s}_{part}": z[f"{s}_{part}"][:n] for s, n in (("train", 12), ("val", 4), ("test", 4))
                 for part in ("images", "labels")}
    np.savez(tmp_path / "small.npz", **small)
    index_dataset(str(tmp_path / "small.npz"), out=str(tmp_path / "idx"), models=(LITE0,), progress=False, workers=1)
    c = TestClient(create_app([tmp_path / "idx"]), base_url="http://127.0.0.1")
    res = c.get("/api/indexes/idx/thumbnail", params={"id": "test/0"})
    assert res.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(res.content)).convert("L")), small["test_images"][0])
    got = c.get("/api/indexes/idx/search", params={"id": "test/0", "k": 3, "crop": "0,0,0.75,0.75"}).json()
    assert len(got["neighbours"]) == 3 and got["self_ids"] == ["test/0"]
