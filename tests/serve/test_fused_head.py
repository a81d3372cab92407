"""The web API shows the head saved last for the searched model, a fusion's dvme head too: the same probabilities
`query --head` gives for the same stored case."""
import shutil

import pytest

from medsearch.evaluation.evaluate import evaluate
from medsearch.search.query import query
from medsearch.storage.store import read_store

from .conftest import MODELS

FUSED = "+".join(MODELS)
CASE = "test_000.png"


@pytest.fixture(scope="module")
def store_with_dvme_head(served_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("fused-head") / "index"
    shutil.copytree(served_store, out)
    r = evaluate(str(out), models=[FUSED], heads=("dvme",), knn=False, retrieval=False, save_head="dvme", folds=2,
                 n_boot=20, n_jobs=1, progress=False, report_dir=out.parent / "rep")
    return out, r.models[FUSED].saved_head


def test_the_api_answers_a_fused_search_with_its_dvme_head(store_with_dvme_head):
    from fastapi.testclient import TestClient

    from medsearch.serve import create_app

    out, head = store_with_dvme_head
    with TestClient(create_app([out]), base_url="http://127.0.0.1") as client:
        fused = client.get("/api/indexes/index/search", params={"id": CASE, "model": FUSED, "k": 3})
        single = client.get("/api/indexes/index/search", params={"id": CASE, "model": MODELS[0], "k": 3})
    assert fused.status_code == single.status_code == 200, fused.text
    got = fused.json()["head"]
    assert got["name"] == "dvme" and single.json()["head"]["name"] == "lr"  # each model its own saved head
    data = read_store(out)
    image = f"{data.attrs['dataset_root']}/{data.sources[data.ids.index(CASE)]}"
    want = query([image], index_dir=str(out), model=MODELS[0], head=head)[0].head
    assert got["probabilities"] == pytest.approx(want.probabilities, abs=2e-3)
