"""The pages, rendered on the server: the search state is in the URL, the cards show what the API answers,
an upload is held in memory and linked by its hash, the case and eval pages show their parts. Element ids and
data-* attributes used here are the ones browser tests rely on."""
from __future__ import annotations

import re

from .conftest import MODELS

CASE = "test_000.png"


def _cards(html: str) -> list[tuple[str, str]]:
    return re.findall(r'class="card neighbour" data-rank="\d+" data-id="([^"]+)" data-labels="([^"]+)"', html)


def test_search_page_shows_the_apis_neighbours(client):
    params = {"id": CASE, "k": 7, "model": MODELS[1], "label": "benign", "crop": "0.1,0.1,0.9,0.9"}
    res = client.get("/i/index/", params=params)
    assert res.status_code == 200 and "default-src 'self'" in res.headers["content-security-policy"]
    api = client.get("/api/indexes/index/search", params=params).json()
    assert _cards(res.text) == [(n["id"], "|".join(n["labels"])) for n in api["neighbours"]]
    for element in ('id="query-image"', 'id="crop-canvas"', 'id="vote"', 'id="head-probabilities"',
                    'id="download-csv"', 'id="model-select"', 'data-crop="0.1,0.1,0.9,0.9"'):
        assert element in res.text
    assert f'<option value="{MODELS[1]}" selected>' in res.text


def test_upload_through_the_page_is_linked_by_its_hash(client, served_store):
    png = (served_store.parent / "data" / "images" / CASE).read_bytes()
    res = client.post("/i/index/upload", files={"image": ("mine.png", png, "image/png")}, data={"k": "4"},
                      follow_redirects=False)
    assert res.status_code == 303
    page = client.get(res.headers["location"])
    assert len(_cards(page.text)) == 4 and "mine.png" in page.text
    upload = re.search(r"upload=([0-9a-f]{64})", res.headers["location"]).group(1)
    image = client.get("/i/index/upload-image", params={"upload": upload})
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    gone = client.get("/i/index/", params={"upload": "f" * 64})
    assert gone.status_code == 404 and "upload it again" in gone.text


def test_case_page_shows_the_case_and_its_neighbours(client):
    res = client.get("/i/index/case", params={"id": CASE, "k": 3})
    assert res.status_code == 200 and 'id="case-image"' in res.text and 'id="case-meta"' in res.text
    assert len(_cards(res.text)) == 3 and CASE not in [i for i, _ in _cards(res.text)]


def test_browse_and_eval_pages(client):
    home = client.get("/", follow_redirects=True)
    assert home.status_code == 200 and home.text.count('class="card stored-case"') == 24
    assert 'id="browse-next"' in home.text
    ev = client.get("/i/index/eval")
    assert ev.status_code == 200 and 'id="eval-table"' in ev.text and ev.text.count('class="roc-image"') == 2
    assert ev.text.count('class="curve-image"') == 2
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", ev.text)  # AUC with its CI
    across = ev.text[ev.text.index('id="across-table"'):]  # two models: each method paired across them
    assert "against the best method of any model" in ev.text and across.count("<tr>") >= 3
