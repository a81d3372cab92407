"""Every error the server gives is a status and one line of JSON, never a traceback: bad uploads (not an image,
too large, a decompression bomb, truncated), unknown names, path traversal in every parameter, a missing or
wrong token, requests to a non-loopback host without a token."""
from __future__ import annotations

import io
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medsearch.serve import create_app

CASE = "test_000.png"
TRAVERSAL = ("../../../../etc/passwd", "..", "/etc/passwd", "..%2F..%2Fetc%2Fpasswd", "images/../labels.csv",
             "images/test_000.png", "C:\\Windows\\win.ini")


def _png(size=(32, 32), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def _error(res, status: int) -> str:
    assert res.status_code == status, (res.status_code, res.text)
    body = res.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def _post(client, data: bytes, content_type="image/png", **params):
    return client.post("/api/indexes/index/search", params=params, content=data, headers={"content-type": content_type})


@pytest.mark.parametrize("data, content_type, status", [
    (b"just some text, not an image", "image/png", 415),
    (b"just some text, not an image", "text/plain", 415),
    (_png(), "application/pdf", 415),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", 400),     # the signature, then garbage
    (_png((64, 64))[:60], "image/png", 400),                    # truncated
    (b"", "image/png", 400),
])
def test_uploads_that_are_not_images(client, data, content_type, status):
    _error(_post(client, data, content_type), status)


def test_multipart_upload_that_is_not_an_image_or_has_no_image(client):
    files = {"image": ("notes.txt", b"hello", "text/plain")}
    _error(client.post("/api/indexes/index/search", files=files), 415)
    _error(client.post("/api/indexes/index/search", files={"other": ("x.png", _png(), "image/png")}), 400)
    _error(client.post("/i/index/upload", files={"image": ("x.png", b"GIF89a" + b"\0" * 20, "image/gif")}), 400)


def test_decompression_bomb_is_refused(client):
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")  # 100 Mpixel in a few kB
    assert len(buf.getvalue()) < 1_000_000
    assert "too large" in _error(_post(client, buf.getvalue()), 400)


def test_upload_over_the_limit_gets_413(served_store):
    small = TestClient(create_app([served_store], max_upload_bytes=2_000), base_url="http://127.0.0.1")
    big = _png((256, 256), "RGB")
    big = big + b"\0" * max(0, 80_000 - len(big))
    _error(small.post("/api/indexes/index/search", content=big, headers={"content-type": "image/png"}), 413)
    _error(small.post("/api/indexes/index/search", files={"image": ("x.png", big, "image/png")}), 413)
    _error(small.post("/i/index/upload", files={"image": ("x.png", big, "image/png")}), 413)


def test_unknown_names_get_404(client):
    _error(client.get("/api/indexes/nope"), 404)
    _error(client.get("/api/indexes/index/case", params={"id": "nope.png"}), 404)
    _error(client.get("/api/indexes/index/thumbnail", params={"id": "nope.png"}), 404)
    _error(client.get("/api/indexes/index/search", params={"id": "nope.png"}), 404)
    _error(client.get("/api/indexes/index/search", params={"upload": "0" * 64}), 404)
    _error(client.get("/api/indexes/index/search", params={"id": CASE, "model": "nope"}), 404)
    _error(client.get("/api/indexes/index/reports/eval-nope"), 404)
    _error(client.get("/i/index/case", params={"id": "nope.png"}), 404)
    _error(client.get("/no/such/route"), 404)


@pytest.mark.parametrize("bad", TRAVERSAL)
def test_path_traversal_in_every_parameter(client, served_store, bad):
    report = client.get("/api/indexes/index/reports").json()[0]
    seg = quote(bad, safe="").replace(".", "%2E")  # one path segment, not resolved by the client
    attempts = [
        client.get(f"/api/indexes/{seg}"),
        client.get("/api/indexes/index/case", params={"id": bad}),
        client.get("/api/indexes/index/thumbnail", params={"id": bad}),
        client.get("/api/indexes/index/search", params={"id": bad}),
        client.get("/api/indexes/index/search", params={"upload": bad}),
        client.get("/api/indexes/index/search", params={"id": CASE, "model": bad}),
        client.get("/api/indexes/index/search", params={"id": CASE, "label": bad}),
        client.get("/api/indexes/index/search", params={"id": CASE, "split": bad}),
        client.get("/api/indexes/index/search", params={"id": CASE, "crop": bad}),
        client.get(f"/api/indexes/index/reports/{seg}"),
        client.get(f"/api/indexes/index/reports/{report}/roc", params={"model": bad}),
        client.get("/i/index/case", params={"id": bad}),
        client.get("/i/index/upload-image", params={"upload": bad}),
        client.get("/i/index/eval", params={"report": bad}),
        client.get(f"/static/{seg}"),
    ]
    for res in attempts:
        assert res.status_code in (400, 404), (res.request.url, res.status_code)
        assert b"root:" not in res.content and b"[fonts]" not in res.content
        if res.headers.get("content-type", "").startswith("application/json"):
            _error(res, res.status_code)


def test_bad_values_get_400(client):
    for params in ({"id": CASE, "k": 0}, {"id": CASE, "k": "ten"}, {"id": CASE, "crop": "0.5,0.5,0.1,0.1"},
                   {"id": CASE, "crop": "0,0,1e-3,1e-3"}, {"id": CASE, "weighting": "loud"}, {},
                   {"id": CASE, "upload": "0" * 64}):
        _error(client.get("/api/indexes/index/search", params=params), 400)


def test_token_is_required_when_set(served_store):
    app = create_app([served_store], token="s3cret-token")
    c = TestClient(app, base_url="http://10.1.2.3")
    assert "token" in _error(c.get("/api/indexes"), 401)
    _error(c.get("/api/indexes", headers={"Authorization": "Bearer wrong-token"}), 401)
    _error(c.get("/i/index/"), 401)
    assert c.get("/api/indexes", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert c.get("/api/indexes", headers={"X-Medsearch-Token": "s3cret-token"}).status_code == 200
    res = c.get("/i/index/?token=s3cret-token&k=3", follow_redirects=False)
    assert res.status_code == 303 and "token" not in res.headers["location"] and "medsearch_token" in res.cookies
    assert c.get("/i/index/?k=3").status_code == 200  # the cookie carries it now


def test_without_a_token_only_loopback_hosts_are_answered(served_store):
    app = create_app([served_store])
    _error(TestClient(app, base_url="http://evil.example").get("/api/indexes"), 403)
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert TestClient(app).get("/api/indexes", headers={"host": host}).status_code == 200


def test_unexpected_failures_are_one_line_500(served_store, monkeypatch):
    import medsearch.serve.api as api

    monkeypatch.setattr(api, "summary_json", lambda svc: 1 / 0)
    c = TestClient(create_app([served_store]), base_url="http://127.0.0.1", raise_server_exceptions=False)
    assert "ZeroDivisionError" in _error(c.get("/api/indexes/index"), 500)


def test_serve_refuses_a_public_host_without_token(monkeypatch, served_store):
    import uvicorn

    from tests.conftest import run_cli

    monkeypatch.delenv("MEDSEARCH_TOKEN", raising=False)
    res = run_cli("serve", "--index", served_store, "--host", "0.0.0.0")
    assert res.exit_code == 2 and "--token" in res.output
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    monkeypatch.setenv("MEDSEARCH_TOKEN", "a-long-enough-token")
    res = run_cli("serve", "--index", served_store, "--host", "0.0.0.0", "--port", "8123")
    assert res.exit_code == 0 and started == [dict(host="0.0.0.0", port=8123, log_level="warning", server_header=False)]
    assert run_cli("serve", "--index", served_store, "--token", "short").exit_code == 2
