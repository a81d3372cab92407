"""`medsearch query IMAGE...`: the k most similar stored cases of each image, their labels, and their vote."""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from . import vote
from ..display import printable
from ..ingest.encoders import Preprocess, load_encoder
from ..errors import ImageError, MedsearchError
from ..ingest.sources import read_query_image
from ..storage.embeddings import RowsView
from ..storage.faiss_index import FLAT, build_index, load_index, search
from ..storage.index_shards import structure_of
from ..storage.index_update import index_row_ids
from ..storage.shard_files import open_index
from ..ingest.fingerprints import sha256_of_file
from ..options import check_whole
from ..storage.header_filter import parse_where, where_mask
from ..storage.store import ModelData, StoreData, provenance, read_store
from .fused_query import fused_head_model, fused_queries
from .query_options import QueryOptions
from .query_results import HeadOutput, Neighbour, QueryResult, SearchInfo

OWN_ROWS_ROOM = 8  # candidates fetched beyond k, for the query's own stored copies


def query(images: list[str], *, index_dir: str, options: QueryOptions | None = None,
          **overrides) -> list[QueryResult]:
    """Search the store in ``index_dir`` with each image; returns one QueryResult per image.
    ``options`` (QueryOptions) says how; keyword ``overrides`` replace single options, e.g. ``k=5``.
    A query that is a stored file is left out of its own neighbours (``exclude_self``); ``exclude_ids``
    leaves out named rows, e.g. an image taken from an .npz store."""
    options = replace(options or QueryOptions(), **overrides)
    _check_options(images, options)
    data = read_store(index_dir)
    key, m = data.model(options.model)
    saved_head = load_saved_head(options.head, index_dir, data, key, m) if options.head else None
    check_index_current(key, m)
    encoder = encoder_for(m, device=options.device)
    faiss_index, how = searcher(index_dir, key, m, options.exact)
    read = lambda path, draft_size: _read_query(path, draft_size, data.attrs)  # noqa: E731 (the store's pixel settings)
    batch = np.stack([encoder.prepare(read(p, encoder.preprocess.resize)) for p in images])
    queries = encoder.encode(batch)
    head_inputs = queries if saved_head is None or saved_head.model_key == key else \
        fused_queries(data, saved_head.model_key, images, read, encoder_for, options.device, known={key: queries})
    excluded = _rows_of_ids(data, options.exclude_ids)
    filtered = np.flatnonzero(~where_mask(data, parse_where(options.where)))
    sims, rows, own_rows = _search_without_self(data, m, faiss_index, how, queries, images, options, excluded,
                                                filtered)
    results = []
    for qi, path in enumerate(images):
        keep = [(s, r) for s, r in zip(sims[qi], rows[qi])
                if r >= 0 and r not in own_rows[qi] and r not in excluded][:options.k]
        result = _result(data, key, path, keep, own_rows[qi], options)
        result.search = how
        result.where = list(options.where) or None
        if saved_head is not None:
            result.head = head_output(saved_head, head_inputs[qi:qi + 1])
        results.append(result)
    return results


def _result(data: StoreData, key: str, path: str, keep: list, own: set[int], options: QueryOptions) -> QueryResult:
    """One query's result from the (similarity, row) pairs it keeps, nearest first."""
    neighbours = [neighbour(data, rank, int(r), float(s)) for rank, (s, r) in enumerate(keep, 1)]
    return QueryResult(query=path, model=key, excluded_self=bool(own), self_ids=[data.ids[r] for r in sorted(own)],
                       excluded_ids=list(options.exclude_ids), neighbours=neighbours,
                       vote=labelled_vote_shares(data, [r for _, r in keep], [s for s, _ in keep], options.weighting))


def _search_without_self(data: StoreData, m: ModelData, index, how: SearchInfo, queries, images, options, excluded,
                         filtered=None):
    """The nearest rows of each query, enough of them that ``k`` remain once the query's own rows (the stored
    file itself, or a byte-identical copy: both have the query's own embedding, so they come first) and the
    excluded rows are left out. Own rows are looked for among the candidates, not over the whole store; rows
    ``filtered`` out (--where) are left out inside the search, so k neighbours come back whenever k rows pass."""
    params = {} if how.exact else dict(how.search_params or {})
    read_rows = (lambda rows: np.asarray(m.embedding[rows], dtype=np.float32))
    hidden = hidden_rows(m, index)
    if filtered is not None and filtered.size:
        hidden = filtered if hidden is None else np.union1d(hidden, filtered)
    extra = len(excluded) + OWN_ROWS_ROOM
    while True:
        sims, rows = search(index, queries, options.k + extra, params=params, read_rows=read_rows,
                            exclude_rows=hidden)
        own = _own_rows(data, images, rows) if options.exclude_self else [set() for _ in images]
        full = rows.shape[1] >= index.ntotal or all(len(o) < OWN_ROWS_ROOM for o in own)
        if full:
            return sims, rows, own
        extra *= 4  # a query with many stored copies of itself: look further


def hidden_rows(m: ModelData, index):
    """Rows the index still holds but no search may return: removed rows inside an HNSW graph."""
    if not int(m.attrs.get("index_filtered", 0)):
        return None
    held = index_row_ids(index)
    usable = np.zeros(m.state.size, dtype=bool)
    usable[m.usable()] = True
    return held[~usable[held]]


def _check_options(images: list[str], options: QueryOptions) -> None:
    """Checked before the store is read, so a wrong flag is named even when the store is missing too."""
    if not images:
        raise MedsearchError("give at least one query image")
    check_whole("-k", options.k, 1)
    if options.weighting not in vote.WEIGHTS:
        raise MedsearchError(f"unknown --weighting {options.weighting!r}; use one of {', '.join(vote.WEIGHTS)}")
    parse_where(options.where)


def searcher(index_dir, key: str, m: ModelData, exact: bool):
    """The index to search and what it is: the model's saved index (a sharded one as one faiss.IndexShards over
    its memory-mapped shard files), or with ``exact`` a flat index over the stored vectors of the rows the
    saved index holds (the same rows, answered exactly)."""
    if exact:
        usable = m.usable()
        return build_index(RowsView(m.embedding, usable), usable, FLAT), SearchInfo(
            index_type="flat", factory="IndexFlat", exact=True, recall_at_10=1.0)
    a = m.attrs
    if "index_shards" in a:
        index = open_index(index_dir, a, dim=m.dim, mmap=True)
    else:
        index = load_index(Path(index_dir) / a.get("index_file", f"{key}.faiss"), dim=m.dim,
                           ntotal=int(a.get("index_ntotal", -1)), sha256=a.get("index_sha256"),
                           fingerprint=a.get("index_fingerprint"), size=a.get("index_size"))
    inner = structure_of(index)
    factory = m.attrs.get("index_factory") or type(inner).__name__
    exact_index = isinstance(inner, faiss.IndexFlat)
    recall = m.attrs.get("index_recall_at_10", 1.0 if exact_index else None)
    recall = None if recall is None or math.isnan(recall) else float(recall)
    return index, SearchInfo(index_type=m.attrs.get("index_type", "flat"), factory=factory, exact=exact_index,
                             recall_at_10=recall, search_params=json.loads(m.attrs.get("index_search_params", "{}")),
                             recall_target=a.get("index_recall_target"),
                             bytes_per_vector=a.get("index_bytes_per_vector"))


def check_index_current(key: str, m: ModelData) -> None:
    """The FAISS index must hold exactly the rows the store can return; an interrupted `index` run can leave
    embeddings (or changed files) that the index does not have yet."""
    usable = int(m.usable().size)
    ntotal = m.attrs.get("index_ntotal")
    if not m.index_is_current():
        raise MedsearchError(f"the FAISS index of '{key}' is out of date ({'none' if ntotal is None else ntotal} vectors "
                             f"for {usable} embedded rows): run `medsearch index` on the dataset again to finish it")


def encoder_for(m: ModelData, *, device: str = "cpu"):
    """Rebuild the encoder a model's embeddings were made with, from its recorded provenance."""
    prov = provenance(m)
    source = prov.get("weights_source", "")
    weights = source[len("file:"):] if source.startswith("file:") else None
    encoder = load_encoder(prov["encoder"], weights=weights, random_init=source == "random-init", device=device,
                           preprocess=Preprocess.from_dict(prov["preprocess"]), views=prov.get("views", ()))
    if prov.get("weights_sha256") and encoder.weights_sha256 != prov["weights_sha256"]:
        raise MedsearchError(f"the weights of '{prov['encoder']}' differ from those the store was built with "
                             f"({printable(weights or source)}): restore the original weights file or re-index")
    return encoder


def _rows_of_ids(data: StoreData, ids) -> set[int]:
    if not ids:
        return set()
    row_of = {rid: r for r, rid in enumerate(data.ids)}
    unknown = [i for i in ids if i not in row_of]
    if unknown:
        raise MedsearchError(f"--exclude-id '{printable(unknown[0])}' is not a row id of this store: "
                             "see the ids `medsearch query --json` prints")
    return {row_of[i] for i in ids}


def _read_query(path: str, draft_size: int, store_attrs: dict):
    """The query image, read as the store read its rows (a DICOM file with the store's window and frame)."""
    try:
        return read_query_image(path, store_attrs, draft_size=draft_size)
    except ImageError as exc:
        raise MedsearchError(f"cannot read query image '{printable(path)}': {exc}; give a JPEG, PNG or DICOM "
                             "file") from None


def _own_rows(data: StoreData, images: list[str], candidates: np.ndarray) -> list[set[int]]:
    """Candidate rows that are each query image itself: the stored file at the same real path, or a stored
    file with the same bytes (sha256), so that a copy of a stored image, or a stored duplicate of it, does not
    come back as its own nearest neighbour and vote for its own label."""
    root = data.attrs.get("dataset_root", "")
    by_path = root and not root.endswith(".npz")
    own: list[set[int]] = [set() for _ in images]
    for q, path in enumerate(images):
        real, sha = os.path.realpath(path), None
        for r in (int(r) for r in candidates[q] if r >= 0):
            if by_path and os.path.realpath(os.path.join(root, data.sources[r])) == real:
                own[q].add(r)
            elif data.sha256 is not None and data.sha256[r]:
                sha = sha if sha is not None else sha256_of_file(path)
                if sha and data.sha256[r] == sha:
                    own[q].add(r)
    return own


def neighbour(data: StoreData, rank: int, row: int, sim: float) -> Neighbour:
    return Neighbour(rank=rank, row=row, id=data.ids[row], labels=data.labels_of(row), similarity=round(sim, 4),
                     source=data.sources[row], group=data.groups[row] if data.groups is not None else None,
                     header=data.header.values(row) if data.header is not None else None)


def labelled_vote_shares(data: StoreData, rows: list[int], sims: list[float], weighting: str) -> dict[str, float]:
    """Share of the neighbours' (similarity-weighted) vote per label; for multilabel, per-label shares."""
    if not rows:
        return {}
    y = data.labels[rows]
    shares = vote.vote_shares(np.asarray([sims]), np.arange(len(rows))[None], y, weighting, len(data.label_names))[0]
    return _named(data, shares)


def _named(data: StoreData, values) -> dict[str, float]:
    return {name: round(float(v), 4) for name, v in zip(data.label_names, values)}


def load_saved_head(path: str, index_dir, data: StoreData, key: str, m: ModelData):
    """The saved head at ``path``, refused unless it was trained on this store's classes (by name, in order),
    task, model key (or a fusion of this store's models), embedding dimension and encoder(s)."""
    from ..evaluation.heads import load_head  # only needed when a head is asked for

    head = load_head(path)
    shown = printable(str(path))
    fused = fused_head_model(data, head)  # a head of a fusion takes the fused query (fused_query)
    if fused is not None:
        dim, prov = fused
        differences = head.mismatches(task=data.task, label_names=data.label_names, model_key=head.model_key,
                                      dim=dim, provenance=prov)
        if differences:
            raise MedsearchError(f"head '{shown}' does not fit the fused model '{head.model_key}' of this store: "
                                 f"{'; '.join(differences)}: save the head again from this store")
        return head
    differences = head.mismatches(task=data.task, label_names=data.label_names, model_key=key, dim=m.dim,
                                  provenance=provenance(m))
    if not differences:
        return head
    if head.model_key != key and head.model_key in data.models:
        other = data.models[head.model_key]
        if not head.mismatches(task=data.task, label_names=data.label_names, model_key=head.model_key, dim=other.dim,
                               provenance=provenance(other)):
            raise MedsearchError(f"head '{shown}' was trained on '{head.model_key}' embeddings, not '{key}': "
                                 f"pass --model {head.model_key} to match it")
    model_flag = f" --model {key}" if len(data.models) > 1 else ""
    raise MedsearchError(f"head '{shown}' does not fit model '{key}' of this store: {'; '.join(differences)}: "
                         f"use a head saved from this store (`medsearch eval --index {printable(str(index_dir))}"
                         f"{model_flag} --save-head {head.name}`)")


def head_output(head, vector: np.ndarray) -> HeadOutput:
    """Class probabilities of a head whose scores are probabilities (lr, mlp); decision scores (> 0: that
    class) of a linear-svc head. Named by the head's own class names (checked equal to the store's by
    load_saved_head)."""
    names = head.label_names
    if head.probabilities:
        probabilities = head.predict_proba(vector)[0]
        return HeadOutput(head.name, probabilities={n: round(float(v), 4) for n, v in zip(names, probabilities)})
    scores = np.atleast_1d(head.scores(vector)[0])
    names = names[1:] if head.task == "binary" else names  # binary: the positive class
    return HeadOutput(head.name, decision_scores={n: round(float(v), 4) for n, v in zip(names, scores)})
