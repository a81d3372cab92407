"""The HTML pages, rendered on the server (Jinja2, autoescaped): search, case, eval.

The search state lives in the URL (``/i/INDEX/?id=...&model=...&k=...&label=...&split=...&exclude_patient=1
&crop=x0,y0,x1,y1``), so a search can be bookmarked or shared. An upload cannot live in a URL: the page
posts it to /i/INDEX/upload, which keeps it in memory (never on disk) by its sha256 and redirects to
``?upload=<sha256>&...``; that URL works while the server holds the upload (it says so when it no longer
does). The pages work without JavaScript; static/app.js adds drag-and-drop and drawing the search region.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from .api import case_json, case_rows, search_request, summary_json
from .errors import HttpError
from .images import png_bytes
from .reports import list_reports, report_view
from .searching import SearchRequest, run_search
from .service import Service
from .uploads import decode, read_upload

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
BROWSE_PAGE = 24


def state_params(req: SearchRequest, **source) -> list[tuple[str, str]]:
    """The URL query of a search: its source (id or upload) and every option that differs from the default."""
    items = [(k, v) for k, v in source.items() if v is not None]
    if req.model:
        items.append(("model", req.model))
    if req.k != SearchRequest.k:
        items.append(("k", str(req.k)))
    items += [("label", x) for x in req.labels] + [("split", s) for s in req.splits]
    if req.exclude_patient:
        items.append(("exclude_patient", "1"))
    if req.include_self:
        items.append(("include_self", "1"))
    if req.crop:
        items.append(("crop", ",".join(f"{v:.4f}" for v in req.crop)))
    items += [("where", w) for w in req.where]
    return items


def make_pages(service: Service, uploads, max_upload_bytes: int) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.update(indexes=list(service.indexes), urlencode=urlencode)
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    @pages.get("/")
    def home():
        return RedirectResponse(f"/i/{next(iter(service.indexes))}/", status_code=303)

    @pages.get("/i/{index}/", response_class=HTMLResponse)
    def search_page(request: Request, index: str, req: SearchRequest = Depends(search_request),
                    id: str | None = None, upload: str | None = None, browse: int = Query(0, ge=0)):
        svc = service.get(index)
        summary = summary_json(svc)
        snap = svc.snapshot()
        result, error, status, query_image = None, None, 200, None
        held = uploads.get(upload) if upload else None
        try:
            if id is not None:
                snap.row(id)
                query_image = f"/api/indexes/{index}/thumbnail?{urlencode({'id': id, 'size': 512})}"
                result = run_search(svc, req, case_id=id)
            elif upload is not None:
                if held is None:
                    raise HttpError(404, "the server no longer holds this uploaded image (uploads are kept in "
                                         "memory only, for a while): upload it again")
                query_image = f"/i/{index}/upload-image?{urlencode({'upload': upload})}"
                result = run_search(svc, req, upload=held)
        except HttpError as exc:
            error, status = exc.message, exc.status
        rows = case_rows(snap, req.labels, req.splits)
        shown = [case_json(snap, int(r)) for r in rows[browse:browse + BROWSE_PAGE]]
        state = state_params(req, id=id, upload=upload)
        return render(request, "search.html", status, index=index, summary=summary, req=req, result=result,
                      error=error, query_image=query_image, state=state, source_id=id, upload=upload,
                      browse=browse, browse_total=int(rows.size), browse_cases=shown, browse_page=BROWSE_PAGE,
                      query_name=(held.filename if held else None))

    @pages.post("/i/{index}/upload")
    async def upload_page(request: Request, index: str):
        svc = service.get(index)
        upload, fields = await read_upload(request, max_upload_bytes)
        # refuse what cannot be searched before holding it
        await run_in_threadpool(decode, upload, svc.snapshot().data.attrs)
        uploads.put(upload)
        req = SearchRequest(model=fields.get("model") or None, k=_int(fields.get("k"), SearchRequest.k),
                            exclude_patient=bool(fields.get("exclude_patient")))
        return RedirectResponse(f"/i/{index}/?{urlencode(state_params(req, upload=upload.sha256))}", status_code=303)

    @pages.get("/i/{index}/upload-image")
    def upload_image(index: str, upload: str, size: int = Query(768, ge=16, le=1024)):
        svc = service.get(index)
        held = uploads.get(upload)
        if held is None:
            raise HttpError(404, "the server no longer holds this uploaded image: upload it again")
        return Response(png_bytes(decode(held, svc.snapshot().data.attrs), size), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=300"})

    @pages.get("/i/{index}/case", response_class=HTMLResponse)
    def case_page(request: Request, index: str, id: str, req: SearchRequest = Depends(search_request)):
        svc = service.get(index)
        snap = svc.snapshot()
        case = case_json(snap, snap.row(id))
        result, error = None, None
        try:
            result = run_search(svc, req, case_id=id)
        except HttpError as exc:
            error = exc.message
        return render(request, "case.html", index=index, summary=summary_json(svc), case=case, result=result,
                      error=error, req=req, state=state_params(req, id=id))

    @pages.get("/i/{index}/eval", response_class=HTMLResponse)
    def eval_page(request: Request, index: str, report: str | None = None):
        svc = service.get(index)
        names = list_reports(svc.directory)
        view = report_view(svc.directory, report or names[0]) if (report or names) else None
        return render(request, "eval.html", index=index, summary=summary_json(svc), reports=names, view=view)

    return pages


def _int(text, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        raise HttpError(400, "k must be a whole number") from None
