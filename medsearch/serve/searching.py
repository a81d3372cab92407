"""A search the server runs: by an uploaded image or a stored case, optionally on a region of it, among the
stored cases the filters keep (labels, splits, not the query's own patient), with the warm encoder and index.

The answer is `query --json`'s QueryResult (same fields, same meaning: the query's own stored copies are left
out unless asked), with a few more keys: each neighbour's ``split``, the filters applied and the snapshot
(``index``, ``generation``) it was read from. Filtered-out rows are excluded inside the FAISS search, so k
neighbours come back whenever k rows pass the filters.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from ..errors import MedsearchError
from ..search.query_results import QueryResult
from ..storage.schema import EMBEDDED
from .errors import HttpError
from .images import stored_image
from .service import IndexService, Snapshot
from .uploads import Upload, decode

MAX_K = 200
MIN_CROP_PIXELS = 8


@dataclass(frozen=True)
class SearchRequest:
    """How to search: ``model`` (a stored key or a fusion 'a+b'; None: the store's only model), ``k``,
    ``labels`` / ``splits`` to keep (empty: all), ``exclude_patient`` (leave out the query's own patient
    group), ``include_self`` (keep the query's own stored copies), ``crop`` (x0, y0, x1, y1 as fractions of
    the image), the vote's ``weighting`` and ``where``: conditions on the stored DICOM header fields every
    neighbour must meet ('ViewPosition=PA', 'Modality=CR,DX', 'Laterality!=L'; storage/header_filter.py)."""

    model: str | None = None
    k: int = 10
    labels: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    exclude_patient: bool = False
    include_self: bool = False
    crop: tuple[float, float, float, float] | None = None
    weighting: str = "similarity"
    where: tuple[str, ...] = ()


def parse_where_param(values) -> tuple[str, ...]:
    """The ``where`` parameters as conditions: each may hold several separated by ';' (one form field can
    then carry them all); empty ones are dropped, malformed ones refused."""
    from ..storage.header_filter import parse_where

    conditions = tuple(c.strip() for v in values for c in v.split(";") if c.strip())
    try:
        parse_where(conditions, flag="where")
    except MedsearchError as exc:
        raise HttpError(400, str(exc)) from None
    return conditions


def where_keep(data, where) -> np.ndarray:
    """Rows that meet the ``where`` conditions; a field the store does not hold is a 400 naming those it does."""
    from ..storage.header_filter import parse_where, where_mask

    try:
        return where_mask(data, parse_where(where, flag="where"), flag="where")
    except MedsearchError as exc:
        raise HttpError(400, str(exc)) from None


def parse_crop(text: str | None) -> tuple[float, float, float, float] | None:
    """'x0,y0,x1,y1', fractions of the image's width and height with x0 < x1 and y0 < y1; '' or None: none."""
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) and 0 <= v <= 1 for v in values) \
            or values[0] >= values[2] or values[1] >= values[3]:
        raise HttpError(400, "crop must be 'x0,y0,x1,y1': four fractions of the image's width and height in "
                             "[0, 1], with x0 < x1 and y0 < y1")
    return values


def crop_image(img, crop):
    if crop is None:
        return img
    w, h = img.size
    box = (round(crop[0] * w), round(crop[1] * h), round(crop[2] * w), round(crop[3] * h))
    if box[2] - box[0] < MIN_CROP_PIXELS or box[3] - box[1] < MIN_CROP_PIXELS:
        raise HttpError(400, f"the region is under {MIN_CROP_PIXELS} pixels wide or high: draw a larger one")
    return img.crop(box)


def check_request(snap: Snapshot, req: SearchRequest) -> None:
    from ..search import vote

    if not 1 <= req.k <= MAX_K:
        raise HttpError(400, f"k must be between 1 and {MAX_K}")
    if req.weighting not in vote.WEIGHTS:
        raise HttpError(400, f"unknown weighting '{req.weighting[:40]}': use one of {', '.join(vote.WEIGHTS)}")
    unknown = [x for x in req.labels if x not in snap.data.label_names]
    if unknown:
        raise HttpError(400, f"unknown label '{unknown[0][:80]}': use one of {', '.join(snap.data.label_names[:20])}")
    known_splits = set(snap.data.splits or ())
    unknown = [s for s in req.splits if s not in known_splits]
    if unknown:
        raise HttpError(400, f"unknown split '{unknown[0][:80]}': this store's splits are "
                             f"{', '.join(sorted(known_splits)) or 'none'}")
    if req.where:
        where_keep(snap.data, req.where)


def run_search(svc: IndexService, req: SearchRequest, *, case_id: str | None = None,
               upload: Upload | None = None) -> dict:
    """The search's JSON answer (see the module's docstring)."""
    snap = svc.snapshot()
    check_request(snap, req)
    data = snap.data
    try:
        key, m = svc.model(snap, req.model)
    except MedsearchError as exc:
        raise HttpError(404 if req.model else 400, str(exc)) from None
    if case_id is not None:
        row = snap.row(case_id)
        sha = data.sha256[row] if data.sha256 is not None else ""
        own = {row, *snap.rows_of_sha.get(sha, [])} if sha else {row}
        name = f"id:{case_id}"
    else:
        row, own = None, set(snap.rows_of_sha.get(upload.sha256, []))
        name = upload.filename or f"upload:{upload.sha256[:12]}"
    vector = _query_vector(svc, snap, key, m, req, row, upload)
    index, how = svc.searcher(snap, key, m)
    groups = _own_groups(snap, own) if req.exclude_patient else []
    excluded = _excluded_rows(snap, m, index, key, req, set() if req.include_self else own, groups)
    sims, rows = _search(index, how, m, vector, req.k, excluded)
    keep = [(float(s), int(r)) for s, r in zip(sims[0], rows[0]) if r >= 0][:req.k]
    result = _result(svc, snap, key, m, name, keep, own if not req.include_self else set(), vector, req)
    result.search = how
    out = result.to_json()
    for n in out["neighbours"]:
        n["split"] = data.splits[n["row"]] if data.splits is not None else None
    out.update(index=svc.name, generation=snap.generation, excluded_groups=groups,
               filters={"labels": list(req.labels), "splits": list(req.splits), "exclude_patient": req.exclude_patient,
                        "crop": list(req.crop) if req.crop else None, "where": list(req.where)},
               source={"id": case_id} if case_id is not None else {"upload": upload.sha256})
    return out


def _query_vector(svc, snap, key, m, req, row, upload) -> np.ndarray:
    """(1, dim) query embedding: a stored case's own embedding when it is searched whole (what encoding its
    image gives), else its (cropped) image or the upload encoded by the model's encoder(s)."""
    from ..evaluation.fusion import is_fused

    if row is not None and req.crop is None and int(m.state[row]) == EMBEDDED:
        return np.asarray(m.embedding[[row]], dtype=np.float32)
    parts = key.split("+") if is_fused(key) else [key]
    draft = None if req.crop else min(svc.encoder(snap.data.models[p]).preprocess.resize for p in parts)
    img = stored_image(snap, row, draft_size=draft) if row is not None else \
        decode(upload, snap.data.attrs, draft_size=draft)
    img = crop_image(img, req.crop)
    vectors = []
    for part in parts:
        encoder = svc.encoder(snap.data.models[part])
        vectors.append(np.asarray(encoder.encode(np.stack([encoder.prepare(img)])), dtype=np.float32))
    if len(parts) == 1:
        return vectors[0]
    normed = [v / max(float(np.linalg.norm(v)), 1e-12) for v in vectors]
    return (np.concatenate(normed, axis=1) / math.sqrt(len(parts))).astype(np.float32)


def _own_groups(snap: Snapshot, own: set[int]) -> list[str]:
    groups = snap.data.groups
    return sorted({groups[r] for r in own if groups[r]}) if groups is not None else []


def _excluded_rows(snap, m, index, key, req, own, groups) -> np.ndarray:
    """Rows no answer may hold: the query's own copies, its patient's rows, rows the filters drop, and removed
    rows an HNSW graph still holds."""
    from ..evaluation.fusion import is_fused
    from ..search.query import hidden_rows

    data = snap.data
    drop = np.zeros(len(data), dtype=bool)
    drop[list(own)] = True
    for g in groups:
        drop[snap.rows_of_group[g]] = True
    if req.labels or req.splits:
        drop |= ~filter_mask(snap, req.labels, req.splits)
    if req.where:
        drop |= ~where_keep(data, req.where)
    hidden = None if is_fused(key) else hidden_rows(m, index)
    rows = np.flatnonzero(drop)
    return rows if hidden is None else np.union1d(rows, hidden)


def filter_mask(snap: Snapshot, labels, splits) -> np.ndarray:
    """Rows that have one of ``labels`` and are in one of ``splits`` (empty: any); names checked before."""
    data = snap.data
    keep = np.ones(len(data), dtype=bool)
    if labels:
        wanted = [data.label_names.index(x) for x in labels]
        keep &= data.labels[:, wanted].any(axis=1) if data.task == "multilabel" else np.isin(data.labels, wanted)
    if splits:
        keep &= np.isin(np.asarray(data.splits, dtype=object), list(splits))
    return keep


def _search(index, how, m, vector, k, excluded):
    from ..storage.faiss_index import search

    params = {} if how.exact else dict(how.search_params or {})
    read_rows = (lambda rows: np.asarray(m.embedding[rows], dtype=np.float32))
    return search(index, vector, k, params=params, read_rows=read_rows, exclude_rows=excluded)


def _result(svc, snap, key, m, name, keep, own, vector, req) -> QueryResult:
    from ..search.query import head_output, neighbour, labelled_vote_shares

    data = snap.data
    neighbours = [neighbour(data, rank, r, s) for rank, (s, r) in enumerate(keep, 1)]
    result = QueryResult(query=name, model=key, excluded_self=bool(own), self_ids=[data.ids[r] for r in sorted(own)],
                         excluded_ids=[], neighbours=neighbours,
                         vote=labelled_vote_shares(data, [r for _, r in keep], [s for s, _ in keep], req.weighting))
    head = svc.head(snap, key, m)
    if head is not None:
        result.head = head_output(head, vector)
    return result


CSV_FIELDS = ("rank", "similarity", "id", "labels", "group", "split", "source")


def results_csv(result: dict) -> str:
    """The neighbours of a search as CSV, one row each; cells that a spreadsheet would run as a formula are
    prefixed with an apostrophe."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for n in result["neighbours"]:
        cells = [n["rank"], n["similarity"], n["id"], ";".join(n["labels"]), n.get("group") or "",
                 n.get("split") or "", n["source"]]
        w.writerow([_safe_cell(c) for c in cells])
    return buf.getvalue()


def _safe_cell(value):
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
