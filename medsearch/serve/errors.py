"""Every error the server answers is one line of JSON, ``{"error": "..."}``, with its HTTP status; never a
traceback. HttpError is raised by the server's own code; the handlers here also turn MedsearchError (a bad
value: 400), FastAPI's validation errors (400), unknown routes (404) and anything unexpected (500) into that
form."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import MedsearchError

log = logging.getLogger("medsearch.serve")


class HttpError(Exception):
    """An answer with ``status`` and a one-line ``message`` saying what is wrong and what to send instead."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = _one_line(message)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500] or "error"


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "invalid parameter: " + "; ".join(parts)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpError)
    async def _http_error(request: Request, exc: HttpError):
        return error_response(exc.status, exc.message)

    @app.exception_handler(MedsearchError)
    async def _medsearch_error(request: Request, exc: MedsearchError):
        return error_response(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException):
        message = "no such page or API route" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server's log has the details")
