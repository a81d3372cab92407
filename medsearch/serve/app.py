"""The web application: ``create_app(index_dirs)`` returns a FastAPI app serving the page and the JSON API over
one or more index folders, with their encoders, FAISS indexes and heads kept warm.

Safe by default: read-only; with a ``token`` every request must carry it (header ``Authorization: Bearer``
or ``X-Medsearch-Token``, the cookie the page sets, or ``?token=`` once in a page's URL); without one, only
requests addressed to a loopback host name are answered, so a web page elsewhere cannot reach the server
through DNS rebinding. No resource comes from outside (no CDN): the interactive docs that FastAPI loads from
a CDN are off, and /openapi.json describes the API.
"""
from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from .api import make_router
from .errors import error_response, install_handlers
from .images import ThumbCache
from .pages import make_pages
from .service import Service
from .uploads import UploadCache

HERE = Path(__file__).parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_COOKIE = "medsearch_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
}


def create_app(index_dirs, *, token: str | None = None, max_upload_bytes: int = 20 << 20, device: str = "cpu",
               allowed_hosts=LOOPBACK_HOSTS, upload_cache_bytes: int = 256 << 20) -> FastAPI:
    """The app over ``index_dirs``. ``token``: required of every request when given; ``allowed_hosts``: the
    Host names answered when no token is set (the loopback names); ``max_upload_bytes``: larger uploads get
    413; ``upload_cache_bytes``: memory kept for the page's recent uploads."""
    service = Service(index_dirs, device=device)
    app = FastAPI(title="medsearch", version=_version(), docs_url=None, redoc_url=None,
                  description="Similar stored cases of a medical image, their labels and vote; eval reports.")
    app.state.service = service
    install_handlers(app)
    thumbs, uploads = ThumbCache(), UploadCache(upload_cache_bytes)
    app.include_router(make_router(service, thumbs, uploads, max_upload_bytes))
    app.include_router(make_pages(service, uploads, max_upload_bytes))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_gate(app, token, tuple(allowed_hosts))
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medsearch")
    except PackageNotFoundError:
        return "0"


def _given_token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return (request.headers.get("x-medsearch-token") or request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE) or "")


def _host_name(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _install_gate(app: FastAPI, token: str | None, allowed_hosts: tuple[str, ...]) -> None:
    @app.middleware("http")
    async def gate(request: Request, call_next):
        if token is None and _host_name(request) not in allowed_hosts:
            return error_response(403, "this server answers only requests to a loopback host (127.0.0.1, "
                                       "localhost); serve with --token to allow others")
        if token is not None:
            given = _given_token(request)
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                return error_response(401, "a token is required: send 'Authorization: Bearer TOKEN', or open the "
                                           "page once as /?token=TOKEN", {"WWW-Authenticate": "Bearer"})
            if "token" in request.query_params and request.method == "GET" \
                    and not request.url.path.startswith("/api"):
                return _drop_token_from_url(request, token)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _drop_token_from_url(request: Request, token: str):
    """A page opened with ?token=: set the token as a cookie and show the same URL without it."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response
