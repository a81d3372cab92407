"""The server's header filter (``where``): the API and the page keep only neighbours whose stored DICOM header
fields meet it, show each neighbour's and each case's fields, and refuse an unknown field in one line (400)."""
import pytest
from fastapi.testclient import TestClient

from medsearch.serve import create_app

from ..conftest import index_tiny
from ..storage.header_stores import add_headers, modality, view


@pytest.fixture
def served(folder_dataset, tmp_path, tiny):
    out = tmp_path / "idx"
    index_tiny(folder_dataset, out)
    add_headers(out)
    plain = tmp_path / "plain"
    index_tiny(folder_dataset, plain)
    with TestClient(create_app([out, plain]), base_url="http://127.0.0.1") as c:
        from medsearch.storage.store import read_store

        yield c, read_store(out)


def test_api_where_keeps_matching_neighbours(served):
    client, data = served
    case = data.ids[0]
    r = client.get("/api/indexes/idx/search", params={"id": case, "k": 5, "where": ["ViewPosition=AP"]})
    assert r.status_code == 200, r.text
    got = r.json()
    rows = [n["row"] for n in got["neighbours"]]
    assert len(rows) == 5 and all(view(i) == "AP" for i in rows) and got["filters"]["where"] == ["ViewPosition=AP"]
    assert all(n["header"]["ViewPosition"] == "AP" for n in got["neighbours"])
    r = client.get("/api/indexes/idx/search", params={"id": case, "k": 4, "where": "modality=cr,dx; ViewPosition!=AP"})
    rows = [n["row"] for n in r.json()["neighbours"]]
    assert len(rows) == 4 and all(modality(i) in ("CR", "DX") and view(i) == "PA" for i in rows)
    assert client.get("/api/indexes/idx").json()["header_fields"] == ["Modality", "ViewPosition", "Laterality"]
    assert client.get("/api/indexes/idx/case", params={"id": case}).json()["header"]["Modality"] == modality(0)


def test_unknown_fields_and_plain_stores_are_refused(served):
    client, data = served
    r = client.get("/api/indexes/idx/search", params={"id": data.ids[0], "where": "PatientName=DOE"})
    assert r.status_code == 400 and "its fields are Modality, ViewPosition, Laterality" in r.json()["error"]
    r = client.get("/api/indexes/plain/search", params={"id": data.ids[0], "where": "ViewPosition=PA"})
    assert r.status_code == 400 and "holds no DICOM header fields" in r.json()["error"]
    r = client.get("/api/indexes/idx/search", params={"id": data.ids[0], "where": "ViewPosition"})
    assert r.status_code == 400 and "not a condition" in r.json()["error"]


def test_page_has_the_filter_and_shows_the_fields(served):
    client, data = served
    page = client.get("/i/idx/", params={"id": data.ids[0], "k": 3, "where": "ViewPosition=PA"})
    assert page.status_code == 200
    html = page.text
    assert 'id="where-input"' in html and 'value="ViewPosition=PA"' in html and 'id="where-note"' in html
    assert "ViewPosition PA" in html and "ViewPosition AP" not in html
    case = client.get("/i/idx/case", params={"id": data.ids[1]}).text
    assert "Modality" in case and "(keyed hash)" in case
    assert 'id="where-input"' not in client.get("/i/plain/").text
