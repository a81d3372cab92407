"""Helpers for the browser tests: the app served by a real uvicorn on a free loopback port (in a thread of the
test process), and a headless Debian Chromium driven by Playwright. Playwright's own browser download does not
work offline, so the system chromium is launched; either one missing skips the tests that need it."""
from __future__ import annotations

import base64
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MEDSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def live_server(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def chromium():
    """A headless Chromium browser (Playwright), or pytest.skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or set MEDSEARCH_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def drop_file(page, selector: str, path: Path, mime: str = "image/png") -> None:
    """Drop the file at ``path`` on the element, as a user dragging it from the desktop would."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: mime}));
            return dt;
        }""", [data, Path(path).name, mime])
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def cards(page) -> list[tuple[str, str]]:
    """(id, labels joined by '|') of the neighbour cards shown, in rank order."""
    shown = page.eval_on_selector_all(".neighbour", "els => els.map((e) => [e.dataset.id, e.dataset.labels])")
    return [tuple(c) for c in shown]


def images_loaded(page, selector: str) -> list[bool]:
    """Whether each matching <img> has loaded a picture (not a broken image)."""
    return page.eval_on_selector_all(selector, "els => els.map((e) => e.complete && e.naturalWidth > 0)")
