"""The page in a real browser (headless Debian Chromium through Playwright) against a real uvicorn server over
the small real store: its JavaScript (drag-and-drop upload, drawing a region) runs, the cards shown are the
API's answer, the case and eval pages load their images, and no script error or blocked resource shows up
in the console. A screenshot of the results page is written under the test's tmp dir, and to docs/serve.png
with MEDSEARCH_UPDATE_SCREENSHOT=1."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from .browser import cards, chromium, drop_file, images_loaded, live_server
from .conftest import MODELS

REPO = Path(__file__).resolve().parents[2]
BUSI = REPO.parent / "shared" / "data" / "breast-busi" / "benign" / "benign (10).png"
CASE = "test_000.png"


@pytest.fixture(scope="module")
def server(served_store):
    from medsearch.serve import create_app

    with live_server(create_app([served_store])) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    """A fresh page at 1280x900; fails the test on any script error or console error (e.g. a CSP block)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    pg = context.new_page()
    problems = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("response", lambda res: problems.append(f"HTTP {res.status}: {res.url}") if res.status >= 400 else None)
    yield pg
    context.close()
    assert not problems, problems


@pytest.fixture(scope="module")
def query_image(served_store) -> Path:
    """A real breast ultrasound from ../shared/data (BUSI), else a BreastMNIST image of the store's dataset."""
    return BUSI if BUSI.exists() else served_store.parent / "data" / "images" / CASE


def api_search(server: str, **params) -> dict:
    res = httpx.get(f"{server}/api/indexes/index/search", params=params, timeout=60)
    assert res.status_code == 200, res.text
    return res.json()


def expected(answer: dict) -> list[tuple[str, str]]:
    return [(n["id"], "|".join(n["labels"])) for n in answer["neighbours"]]


def query_of(page) -> dict:
    return parse_qs(urlparse(page.url).query)


def test_dropped_image_shows_the_apis_neighbours(page, server, query_image, tmp_path):
    page.goto("/i/index/?k=6")
    with page.expect_navigation(url="**upload=*"):
        drop_file(page, "#drop-zone", query_image)
    page.wait_for_selector("#results")
    assert page.get_attribute("#results", "data-count") == "6"
    answer = httpx.post(f"{server}/api/indexes/index/search", params={"k": 6}, timeout=60,
                        files={"image": (query_image.name, query_image.read_bytes(), "image/png")}).json()
    assert cards(page) == expected(answer)
    assert query_of(page)["k"] == ["6"]
    assert page.is_visible("#vote") and page.is_visible("#head-probabilities")
    page.wait_for_function("document.getElementById('query-image').naturalWidth > 0")
    page.wait_for_function("[...document.querySelectorAll('.neighbour img')].every((i) => i.complete)")
    assert all(images_loaded(page, ".neighbour img"))
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MEDSEARCH_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "serve.png")


def test_chosen_file_searches_too(page, query_image):
    page.goto("/i/index/")
    with page.expect_navigation(url="**upload=*"):
        page.set_input_files("#image-input", str(query_image))
    assert page.get_attribute("#results", "data-count") == "10"
    assert query_image.name in page.inner_text("#query figcaption")


def test_open_case_from_a_neighbour(page):
    page.goto(f"/i/index/?id={CASE}&k=4")
    first = page.get_attribute(".neighbour[data-rank='1']", "data-id")
    with page.expect_navigation(url="**/case?*"):
        page.click(".neighbour[data-rank='1'] a.open-case")
    page.wait_for_function("document.getElementById('case-image').naturalWidth > 0")
    assert page.get_attribute("#case", "data-id") == first
    assert first in page.inner_text("#case-meta")
    assert first not in [i for i, _ in cards(page)]  # its own neighbours, itself left out


def test_switch_model(page, server):
    page.goto(f"/i/index/?id={CASE}&k=5")
    assert page.get_attribute("#results", "data-model") == MODELS[0]
    page.select_option("#model-select", MODELS[1])
    with page.expect_navigation():
        page.click("#apply-options")
    assert query_of(page)["model"] == [MODELS[1]]
    assert page.get_attribute("#results", "data-model") == MODELS[1]
    assert cards(page) == expected(api_search(server, id=CASE, k=5, model=MODELS[1]))


def test_label_filter_and_patient(page, server):
    page.goto(f"/i/index/?id={CASE}&k=5")
    page.check("#label-filter input[value='malignant']")
    page.check("#exclude-patient")
    with page.expect_navigation():
        page.click("#apply-options")
    shown = cards(page)
    assert shown and {labels for _, labels in shown} == {"malignant"}
    assert shown == expected(api_search(server, id=CASE, k=5, label="malignant", exclude_patient=1))


def test_draw_a_region_and_search_with_it(page, server):
    page.goto(f"/i/index/?id={CASE}&k=5")
    page.wait_for_function("document.getElementById('query-image').naturalWidth > 0")
    assert page.is_disabled("#crop-search") and page.is_hidden("#crop-clear")
    box = page.locator("#crop-canvas").bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.25 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
    page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.75 * box["height"], steps=5)
    page.mouse.up()
    assert page.is_enabled("#crop-search")
    with page.expect_navigation(url="**crop=*"):
        page.click("#crop-search")
    crop = [float(v) for v in query_of(page)["crop"][0].split(",")]
    assert crop == pytest.approx([0.2, 0.25, 0.7, 0.75], abs=0.02)
    assert page.get_attribute("#query", "data-crop") and page.is_visible("#crop-clear")
    assert cards(page) == expected(api_search(server, id=CASE, k=5, crop=query_of(page)["crop"][0]))
    with page.expect_navigation():
        page.click("#crop-clear")
    assert "crop" not in query_of(page)
    assert cards(page) == expected(api_search(server, id=CASE, k=5))


def test_a_stored_case_from_the_browse_grid(page):
    page.goto("/i/index/")
    target = page.get_attribute(".stored-case >> nth=2", "data-id")
    with page.expect_navigation(url="**id=*"):
        page.click(".stored-case >> nth=2 >> a[title]")
    assert query_of(page)["id"] == [target]
    assert page.inner_text("#query-id") == target and page.get_attribute("#results", "data-count") == "10"


def test_eval_page(page, tmp_path):
    page.goto("/i/index/")
    with page.expect_navigation():
        page.click("#nav-eval")
    rows = page.eval_on_selector_all("#eval-table tbody tr", "els => els.map((e) => e.dataset.model)")
    assert set(rows) == set(MODELS)
    assert "40 training and 8 test cases" in page.inner_text("#eval-split")  # what the CIs rest on
    page.wait_for_function("[...document.querySelectorAll('.roc-image')].every((i) => i.complete)")
    assert sorted(page.eval_on_selector_all(".roc-image", "els => els.map((e) => e.dataset.model)")) == sorted(MODELS)
    assert all(images_loaded(page, ".roc-image"))
    page.wait_for_function("[...document.querySelectorAll('.curve-image')].every((i) => i.complete)")
    assert sorted(page.eval_on_selector_all(".curve-image", "els => els.map((e) => e.dataset.model)")) == sorted(MODELS)
    assert all(images_loaded(page, ".curve-image"))
    page.screenshot(path=str(tmp_path / "eval-page.png"), full_page=True)
