"""`medsearch index DATASET`: embed every image once per model into the store, then build the FAISS index.

The driver checks every option before any work (index_options.py), scans the dataset (datasets.py), brings
the store up to date with it (reconcile.py), reports duplicate files (duplicates.py), then runs the per-model
step below for each model: load the encoder, embed the pending rows batch by batch into the journal (so an
interrupted run resumes), rebuild the FAISS index when its rows changed, and sum up (index_summary.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..display import printable
from ..errors import ImageError, MedsearchError
from ..storage.atomic import atomic_write_json
from ..storage.journal import Journal
from ..storage.lock import WriterLock
from ..storage.schema import PENDING, SKIPPED
from ..storage.embeddings import Embeddings
from ..storage.store import ModelData, StoreData, commit_store, model_key, provenance
from .datasets import scan
from .dicom.headers import attach_headers
from .dicom.pixel_options import PIXELS_ATTR, PixelOptions, pixel_options_of
from .layouts import Dataset
from .duplicates import embedding_duplicates, file_duplicates
from .embed import embed_rows
from .encoders import get_spec, load_encoder, preprocess_with
from .index_options import IndexOptions, check_memory
from .index_summary import EXAMPLES_SHOWN, REPORT_FILE, IndexSummary, ModelIndexSummary, model_index_summary
from .compact import compact_open_store, needs_compaction, remove_leftover_index_files
from .log import log
from .model_index import refresh_index
from .ray_engine import EncoderRecipe
from .reconcile import open_store, reconcile

__all__ = ["index_dataset"]

COMMIT_ROWS = 1 << 18  # rows embedded between commits at most, whatever --commit-every says


def index_dataset(dataset: str, options: IndexOptions | None = None, **overrides) -> IndexSummary:
    """Index ``dataset`` into ``options.out`` (default ``indexes/<dataset name>``) with each of ``options.models``;
    keyword ``overrides`` replace single options (``index_dataset(path, out=..., models=(...))``).
    Re-running embeds only rows not yet stored (and rows whose file changed on disk); returns a summary (also
    written to index_report.json). A store belongs to one dataset: ``moved_from`` (the dataset's old root)
    lets it follow the same dataset to a new place, verified file by file."""
    opts = dataclasses.replace(options or IndexOptions(), **overrides)
    keys = opts.store_keys()
    weight_of = opts.weights_by_model()
    specs = {m: get_spec(m) for m in opts.models}  # fail on an unknown model before any work
    opts.check()
    preprocesses = {m: preprocess_with(specs[m].preprocess, norm=opts.norm, resize=opts.resize, crop=opts.crop)
                    for m in opts.models}
    for p in preprocesses.values():
        check_memory(p, opts.batch_size)
    pixels = opts.pixel_options()
    ds = scan(dataset, **opts.scan_options())
    ds.pixels = pixels
    out_dir = _out_dir(opts.out, ds)
    attach_headers(ds, out_dir, opts.id_key, workers=opts.workers, progress=opts.progress)
    _check_dicom_options(ds, opts)
    summary = IndexSummary(dataset=ds.root, out=str(out_dir), rows=len(ds), task=ds.task, reading=ds.reading,
                           dropped_manifest_rows=[{"id": rid, "reason": why} for rid, why in ds.dropped])
    with WriterLock(out_dir):
        data = open_store(out_dir, ds, opts.moved_from)
        _record_pixels(data, ds, out_dir)
        remove_leftover_index_files(out_dir, data)  # of a run killed while it saved an index
        _log_dataset(ds, out_dir)
        row_of, summary.changes = reconcile(out_dir, data, ds, opts)
        summary.duplicates = file_duplicates(data, row_of)
        with engine_session(opts):
            for model in opts.models:
                recipe = EncoderRecipe(model, weight_of.get(model), opts.random_init, preprocesses[model], opts.views)
                encoder = load_encoder(model, weights=recipe.weights, random_init=recipe.random_init,
                                       device=opts.device, preprocess=recipe.preprocess, views=recipe.views)
                embedder = _embedder(ds, data, row_of, opts, recipe)
                summary.models[keys[model]] = _index_model(out_dir, data, embedder, encoder, keys[model], opts, row_of)
        if opts.auto_compact and needs_compaction(data):
            summary.compaction = compact_open_store(out_dir, data)
        atomic_write_json(out_dir / REPORT_FILE, summary.to_json())
    return summary


def _out_dir(out: str | None, ds: Dataset) -> Path:
    out_dir = Path(out) if out else Path("indexes") / _dataset_name(ds)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedsearchError(f"cannot create output folder '{out_dir}' ({exc.strerror}): choose another --out") from None
    return out_dir


def _check_dicom_options(ds: Dataset, opts: IndexOptions) -> None:
    """Refuse DICOM options on a dataset without DICOM files: silently ignored, they would let a user believe
    ids were hashed with their key, or pixels windowed their way."""
    if ds.header is not None:
        return
    given = [flag for flag, used in (("--window", ds.pixels.window != PixelOptions().window),
                                     ("--frames", ds.pixels.frames != PixelOptions().frames),
                                     ("--id-key", opts.id_key is not None)) if used]
    if given:
        verb = "apply" if len(given) > 1 else "applies"
        raise MedsearchError(f"{' and '.join(given)} {verb} to DICOM files, and '{printable(ds.root)}' has none: "
                             f"drop {'them' if len(given) > 1 else 'it'}")


def _record_pixels(data: StoreData, ds: Dataset, out_dir: Path) -> None:
    """Record how DICOM rows are read (--window, --frames), so `query` and `serve` read them the same way;
    refuse a store built with other settings (a store older than the record was built with the defaults)."""
    if ds.layout == "npz" or ds.header is None:  # no DICOM rows: nothing is read with these settings
        return
    if len(data):
        have = pixel_options_of(data.attrs)
        if have != ds.pixels:
            raise MedsearchError(f"the store in '{printable(str(out_dir))}' reads DICOM pixels with --window "
                                 f"{have.window} --frames {have.frames}, not --window {ds.pixels.window} --frames "
                                 f"{ds.pixels.frames}: use those, or index into another --out folder")
    data.attrs[PIXELS_ATTR] = ds.pixels.to_attr()


def _dataset_name(ds: Dataset) -> str:
    p = Path(ds.root)
    return model_key(p.stem if p.is_file() else p.name) or "dataset"


def _log_dataset(ds: Dataset, out_dir: Path) -> None:
    log(f"dataset: {len(ds)} images, {ds.layout} layout, task {ds.task}, {len(ds.label_names)} labels -> "
        f"{printable(str(out_dir))}")
    log(f"  {ds.reading}")
    for rid, why in ds.dropped[:EXAMPLES_SHOWN]:
        log(f"  manifest row not stored: {printable(rid)}: {why}")
    if len(ds.dropped) > EXAMPLES_SHOWN:
        log(f"  ... and {len(ds.dropped) - EXAMPLES_SHOWN} more manifest rows not stored (see {REPORT_FILE})")


def engine_session(opts: IndexOptions):
    """Where the embedding runs for this `index` call: nothing to set up locally; Ray connected (or started)
    once for every model."""
    if opts.engine == "ray":
        from .ray_engine import ray_session

        return ray_session(opts.ray_address)
    return contextlib.nullcontext()


def _embedder(ds: Dataset, data: StoreData, row_of: np.ndarray, opts: IndexOptions, recipe):
    """``embed(rows, encoder, desc)``: the engine's batches of store rows ``rows``."""
    ds_index = np.full(len(data), -1, dtype=np.int64)
    ds_index[row_of] = np.arange(len(ds))
    gone = "no longer in the dataset"

    def open_row(row: int, draft_size: int | None = None):
        i = int(ds_index[row])
        if i < 0:
            raise ImageError(gone)
        return ds.open(i, draft_size=draft_size)

    def row_info(row: int) -> tuple[str, str]:
        i = int(ds_index[row])
        return (data.sources[row], gone) if i < 0 else (ds.sources[i], ds.missing.get(i, ""))

    def embed(rows: np.ndarray, encoder, desc: str):
        if opts.engine == "ray":
            from .ray_engine import ray_embed_rows

            return ray_embed_rows(ds.row_source(), row_info, rows, encoder, recipe, batch_size=opts.batch_size,
                                  on_missing=opts.on_missing, gpus_per_worker=opts.gpus_per_worker,
                                  progress=opts.progress, desc=desc)
        return embed_rows(open_row, rows, encoder, batch_size=opts.batch_size, workers=opts.workers,
                          on_missing=opts.on_missing, progress=opts.progress, desc=desc)

    return embed


# --- the per-model step ------------------------------------------------------------------------------------

def _index_model(out_dir: Path, data: StoreData, embed, encoder, key: str, opts: IndexOptions,
                 row_of: np.ndarray) -> ModelIndexSummary:
    """Embed the rows of model ``key`` not yet embedded, rebuild its index if its rows changed, sum it up."""
    journal = _open_model(out_dir, data, key, encoder)
    m = data.models[key]
    todo = np.flatnonzero(((m.state == PENDING) | (m.state == SKIPPED)) & ~data.is_removed())
    how = "Ray actors" if opts.engine == "ray" else f"{opts.workers} decode workers"
    log(f"{key}: {len(data) - len(todo)} rows already stored, embedding {len(todo)} "
        f"(batch {opts.batch_size}, {how}, {encoder.weights_source})")
    seconds = _embed(out_dir, data, m, embed, todo, encoder, journal, key, opts)
    usable = m.usable()
    if usable.size == 0:
        _commit(data, out_dir, journal)
        first = next((r for r in range(len(data)) if m.reason[r]), None)
        why = f"; the first, {printable(data.sources[first])}: {printable(m.reason[first])}" if first is not None else ""
        raise MedsearchError(f"no image of the dataset could be read for '{key}' ({len(todo)} tried{why}): fix "
                             "the images or the manifest and run `index` again")
    outcome = refresh_index(out_dir, data, key, opts, todo)
    if outcome != "current" or todo.size or journal.parts() or m.changed or data.changed:
        _commit(data, out_dir, journal)
    summary = model_index_summary(data, m, todo.size, seconds)
    summary.identical_embeddings = (embedding_duplicates(data, m, key, row_of) if todo.size else
                                    {"checked": False, "why": "nothing was embedded in this run"})
    return summary


def _open_model(out_dir: Path, data: StoreData, key: str, encoder) -> Journal:
    """The model's journal, after adding the model to the store (if new) and replaying a previous run's batches."""
    is_new = _ensure_model(data, key, encoder.dim, encoder.provenance())
    journal = Journal(out_dir, key)
    if journal.replay(data, key):
        log(f"{key}: resumed the rows a previous run had finished")
        is_new = True
    if is_new:
        _commit(data, out_dir, journal)
    return journal


def _embed(out_dir: Path, data: StoreData, m: ModelData, embed, todo: np.ndarray, encoder, journal: Journal,
           key: str, opts: IndexOptions) -> float:
    """Embed rows ``todo`` into ``m``, each batch journaled, the store committed every ``commit_every`` seconds
    or every COMMIT_ROWS rows, whichever comes first (a cluster embeds millions of rows in 300 s, and a commit's
    rows are held in memory until it is written); returns the seconds taken. Rows read from a URI get the
    content fingerprint their worker took."""
    t0 = last_commit = time.perf_counter()
    pending = 0
    for batch in embed(todo, encoder, key):
        journal.append(batch.rows, [data.ids[r] for r in batch.rows], batch.embedding, batch.state, batch.reason,
                       batch.sha256)
        m.embedding[batch.rows], m.state[batch.rows] = batch.embedding, batch.state
        for r, why in zip(batch.rows, batch.reason):
            m.reason[r] = why
        m.touch(batch.rows)
        if batch.sha256:
            _record_fingerprints(data, batch)
        pending += len(batch.rows)
        if time.perf_counter() - last_commit > opts.commit_every or pending >= COMMIT_ROWS:
            _commit(data, out_dir, journal)
            last_commit, pending = time.perf_counter(), 0
    return time.perf_counter() - t0


def _record_fingerprints(data: StoreData, batch) -> None:
    for r, sha in zip(batch.rows.tolist(), batch.sha256):
        if sha and data.sha256 is not None and data.sha256[r] != sha:
            data.sha256[r] = sha
            data.touch(r)


def _commit(data: StoreData, out_dir: Path, journal: Journal) -> None:
    commit_store(data, out_dir)
    journal.clear()


def _ensure_model(data: StoreData, key: str, dim: int, prov: dict) -> bool:
    """Add the model's (empty) embedding dataset; False when the store already holds it, made the same way."""
    if key in data.models:
        have = provenance(data.models[key])
        for field in ("encoder", "preprocess", "dim", "weights_sha256", "weights_source", "views"):
            if have.get(field, [] if field == "views" else None) != prov.get(field, [] if field == "views" else None):
                raise MedsearchError(f"the store already holds '{key}' made with another {field.replace('_', ' ')} "
                                     f"({_short(have.get(field))} vs {_short(prov.get(field))}): "
                                     "store this variant under another --name, or use another --out")
        return False
    n = len(data)
    data.models[key] = ModelData(Embeddings.empty(key, n, dim, str(data.attrs.get("dataset_root", ""))),
                                 np.full(n, PENDING, np.int8), [""] * n,
                                 {"provenance": json.dumps(prov), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return True


def _short(v) -> str:
    return json.dumps(v)[:60]
