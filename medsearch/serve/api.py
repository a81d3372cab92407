"""The JSON API under /api (described by /openapi.json): indexes and their summaries, stored cases, thumbnails
of stored rows, searches by upload or stored id (JSON, or CSV with ``format=csv``) and eval reports.

Every name a client sends (index, case id, model, label, split, report) is looked up among what the server
holds; none is ever joined to a file path. Read-only: nothing here writes a store."""
from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..storage.schema import EMBEDDED
from ..storage.store import provenance
from .errors import HttpError
from .images import snap_size
from .reports import list_reports, load_report, plot_png, roc_png
from .searching import (MAX_K, SearchRequest, check_request, filter_mask, parse_crop, parse_where_param,
                        results_csv, run_search)
from .service import Service
from .uploads import read_upload

UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": {"type": "string", "format": "binary"}}}},
    **{t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/png", "image/jpeg")}}}}
PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}
ERRORS = {s: {"description": d, "content": {"application/json": {"example": {"error": "one line saying what is wrong"}}}}
          for s, d in ((400, "bad parameter or image"), (401, "token missing or wrong"), (404, "unknown name"),
                       (413, "upload too large"), (415, "not an image type"))}


def search_request(model: str | None = Query(None, description="stored model key, or a fusion 'a+b'"),
                   k: int = Query(10, ge=1, le=MAX_K), label: list[str] = Query([], description="keep these labels"),
                   split: list[str] = Query([], description="keep these splits"),
                   exclude_patient: bool = Query(False, description="leave out the query's own patient group"),
                   include_self: bool = Query(False, description="keep the query's own stored copies"),
                   crop: str | None = Query(None, description="region 'x0,y0,x1,y1' as fractions of the image"),
                   weighting: str = Query("similarity"),
                   where: list[str] = Query([], description="keep neighbours whose DICOM header meets this: "
                                            "FIELD=VALUE, FIELD=V1,V2 or FIELD!=VALUE (repeatable, or several "
                                            "separated by ';')")) -> SearchRequest:
    return SearchRequest(model=model or None, k=k, labels=tuple(label), splits=tuple(split),
                         exclude_patient=exclude_patient, include_self=include_self, crop=parse_crop(crop),
                         weighting=weighting, where=parse_where_param(where))


def _answer(result: dict, fmt: str) -> Response:
    if fmt == "csv":
        return Response(results_csv(result), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="medsearch-results.csv"'})
    return JSONResponse(result)


def case_json(snap, row: int) -> dict:
    data = snap.data
    return {"id": data.ids[row], "row": row, "labels": data.labels_of(row), "source": data.sources[row],
            "group": data.groups[row] if data.groups is not None else None,
            "split": data.splits[row] if data.splits is not None else None,
            "sha256": data.sha256[row] if data.sha256 is not None else None,
            "header": data.header.values(row) if data.header is not None else None,
            "models": {key: {"embedded": int(m.state[row]) == EMBEDDED} for key, m in data.models.items()}}


def summary_json(svc) -> dict:
    snap = svc.snapshot()
    data = snap.data
    usable = np.flatnonzero(~data.is_removed())
    if data.task == "multilabel":
        counts = data.labels[usable].sum(axis=0)
    else:
        counts = np.bincount(data.labels[usable], minlength=len(data.label_names))
    splits = {}
    for s in (np.asarray(data.splits, dtype=object)[usable] if data.splits is not None else ()):
        splits[s] = splits.get(s, 0) + 1
    models = {}
    for key, m in data.models.items():
        heads = svc.head(snap, key, m)
        models[key] = {"dim": m.dim, "rows": int(m.usable().size), "index_type": m.attrs.get("index_type", "flat"),
                       "encoder": provenance(m).get("encoder"),
                       "head": heads.name if heads is not None else None}
    return {"name": svc.name, "generation": snap.generation, "task": data.task, "n_rows": int(usable.size),
            "label_names": list(data.label_names),
            "label_counts": {n: int(c) for n, c in zip(data.label_names, counts)}, "splits": splits,
            "n_groups": len(snap.rows_of_group), "models": models,
            "header_fields": data.header.fields() if data.header is not None else [], "model_choices": svc.model_keys(snap),
            "reports": list_reports(svc.directory)}


def make_router(service: Service, thumbs, uploads, max_upload_bytes: int) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)

    @api.get("/indexes", summary="The served indexes")
    def indexes():
        return [summary_json(svc) for svc in service.indexes.values()]

    @api.get("/indexes/{index}", summary="One index's summary: rows, labels, splits, models, reports")
    def summary(index: str):
        return summary_json(service.get(index))

    @api.get("/indexes/{index}/cases", summary="Stored cases, a page at a time, optionally filtered")
    def cases(index: str, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500),
              label: list[str] = Query([]), split: list[str] = Query([])):
        snap = service.get(index).snapshot()
        rows = case_rows(snap, tuple(label), tuple(split))
        return {"total": int(rows.size), "offset": offset,
                "cases": [case_json(snap, int(r)) for r in rows[offset:offset + limit]]}

    @api.get("/indexes/{index}/case", summary="A stored case's metadata")
    def case(index: str, id: str = Query(..., description="the stored row id")):
        snap = service.get(index).snapshot()
        return case_json(snap, snap.row(id))

    @api.get("/indexes/{index}/thumbnail", summary="PNG of a stored case, scaled to fit size", responses=PNG,
             response_class=Response)
    def thumbnail(index: str, id: str = Query(...), size: int = Query(160, ge=16, le=1024)):
        snap = service.get(index).snapshot()
        png = thumbs.png(snap, snap.row(id), snap_size(size))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @api.get("/indexes/{index}/search", summary="Nearest stored cases of a stored case (id) or a held upload")
    def search_stored(index: str, req: SearchRequest = Depends(search_request), id: str | None = None,
                      upload: str | None = Query(None, description="sha256 of an upload the page sent"),
                      format: Literal["json", "csv"] = "json"):
        svc = service.get(index)
        if (id is None) == (upload is None):
            raise HttpError(400, "give exactly one of id (a stored case) or upload (an uploaded image's sha256)")
        held = None if upload is None else uploads.get(upload)
        if upload is not None and held is None:
            raise HttpError(404, "that upload is not held by the server (uploads are kept in memory only, for a "
                                 "while): upload the image again")
        return _answer(run_search(svc, req, case_id=id, upload=held), format)

    @api.post("/indexes/{index}/search", summary="Nearest stored cases of an uploaded image",
              openapi_extra=UPLOAD_BODY)
    async def search_upload(index: str, request: Request, req: SearchRequest = Depends(search_request),
                            format: Literal["json", "csv"] = "json"):
        svc = service.get(index)
        upload, _ = await read_upload(request, max_upload_bytes)
        return _answer(await run_in_threadpool(run_search, svc, req, upload=upload), format)

    @api.get("/indexes/{index}/reports", summary="The index's eval reports, newest first")
    def reports(index: str):
        return list_reports(service.get(index).directory)

    @api.get("/indexes/{index}/reports/{report}", summary="An eval report's results.json")
    def report(index: str, report: str):
        return load_report(service.get(index).directory, report)

    @api.get("/indexes/{index}/reports/{report}/roc", summary="An eval report's ROC plot of one model",
             responses=PNG, response_class=Response)
    def roc(index: str, report: str, model: str):
        return Response(roc_png(service.get(index).directory, report, model), media_type="image/png")

    @api.get("/indexes/{index}/reports/{report}/curves", responses=PNG, response_class=Response,
             summary="An eval report's label-efficiency plot of one model (eval --train-fractions)")
    def curves(index: str, report: str, model: str):
        return Response(plot_png(service.get(index).directory, report, model, "curves"), media_type="image/png")

    return api


def case_rows(snap, labels: tuple[str, ...], splits: tuple[str, ...]) -> np.ndarray:
    """Rows not removed that have one of ``labels`` and are in one of ``splits`` (empty: any)."""
    check_request(snap, SearchRequest(labels=labels, splits=splits))
    return np.flatnonzero(filter_mask(snap, labels, splits) & ~snap.data.is_removed())
