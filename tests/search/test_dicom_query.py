"""A DICOM file as the query image (issue 18, item 5): `query` and the web API read it with the store's pixel
settings (here a fixed --window that differs from the file's own), so a copy of a stored file finds that file at
similarity 1, read the way `index` read it."""
import numpy as np
import pytest
from pydicom import dcmread

from medsearch.ingest.sources import read_query_image
from medsearch.search.query import query
from medsearch.storage.store import read_store

from medsearch.ingest.indexing import index_dataset

from ..conftest import FAST, SHARED_DATA
from ..ingest.dicom.writers import busi_grey, dataset, to_12bit, write

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "breast-busi").exists(), reason="../shared/data not available")
WINDOW = "1200,700"  # centre, width: a narrow window, unlike the files' own (the whole 12-bit range)


@pytest.fixture
def windowed_store(tmp_path):
    root = tmp_path / "ds"
    for c, name in enumerate(["benign", "malignant"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            arr = to_12bit(busi_grey(4 * c + i))
            write(root / name / f"{i}.dcm", dataset(arr, bits_stored=12, WindowCenter=2048, WindowWidth=4096), arr=arr)
    index_dataset(str(root), out=str(tmp_path / "out"), models=("mobilenet-v2",), random_init=True, progress=False,
                  window=WINDOW, **FAST)
    copy = dcmread(root / "malignant" / "2.dcm")
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    copy.save_as(tmp_path / "q.dcm")  # other bytes (not the stored file itself), the same pixels
    return tmp_path / "out", tmp_path / "q.dcm"


def test_query_reads_a_dicom_query_with_the_store_s_window(windowed_store):
    out, q = windowed_store
    attrs = read_store(out).attrs
    as_stored, as_file = np.asarray(read_query_image(str(q), attrs)), np.asarray(read_query_image(str(q), {}))
    assert np.abs(as_stored.astype(int) - as_file.astype(int)).mean() > 10  # the two windows differ
    top = query([str(q)], index_dir=str(out), k=3)[0].neighbours[0]
    assert top.id == "malignant/2.dcm" and top.similarity == pytest.approx(1.0, abs=1e-4)


def test_the_web_api_reads_an_uploaded_dicom_with_the_store_s_window(windowed_store):
    from fastapi.testclient import TestClient

    from medsearch.serve import create_app

    out, q = windowed_store
    with TestClient(create_app([out]), base_url="http://127.0.0.1") as client:
        res = client.post("/api/indexes/out/search", params={"k": 3},
                          files={"image": ("q.dcm", q.read_bytes(), "application/dicom")})
    assert res.status_code == 200, res.text
    top = res.json()["neighbours"][0]
    assert top["id"] == "malignant/2.dcm" and top["similarity"] == pytest.approx(1.0, abs=1e-4)
