"""`medsearch index DATASET`: embed every image once per model into the store, then build the FAISS index."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json, sha256_file
from ..datasets import Dataset, scan
from ..embed import embed_rows
from ..encoders import get_spec, load_encoder, preprocess_with
from ..errors import ImageError, MedsearchError
from ..index import build_index, save_index
from ..store import (EMBEDDED, PENDING, SKIPPED, STATE_NAMES, ZERO_FILLED, Journal, ModelData, StoreData,
                     WriterLock, model_key, provenance, read_store, store_path, write_store)

REPORT_FILE = "index_report.json"
DEFAULT_MODEL = "clip-vit-b-32"


def index(dataset: str, *, out: str | None = None, models: tuple[str, ...] = (DEFAULT_MODEL,),
          weights: tuple[str, ...] = (), random_init: bool = False, name: str | None = None,
          layout: str = "auto", manifest: str | None = None, image_col: str | None = None,
          label_col: str | None = None, label_cols: list[str] | None = None, group_col: str | None = None,
          split_col: str | None = None, images_dir: str | None = None, task: str | None = None,
          norm: str | None = None, resize: int | None = None, crop: int | None = None,
          on_missing: str = "skip", batch_size: int = 64, workers: int = 2, index_type: str = "flat",
          device: str = "cpu", commit_every: float = 300.0, progress: bool = True) -> dict:
    """Index ``dataset`` into ``out`` (default ``indexes/<dataset name>``) with each of ``models``.
    Re-running embeds only rows not yet stored; returns a summary (also written to index_report.json)."""
    models = tuple(models) or (DEFAULT_MODEL,)
    if name and len(models) > 1:
        raise MedsearchError("--name sets the store key of one model: index one --model at a time with it")
    weight_of = _weights_by_model(models, weights)
    for m in models:
        get_spec(m)  # fail on an unknown model before any work
    ds = scan(dataset, layout=layout, manifest=manifest, image_col=image_col, label_col=label_col,
              label_cols=label_cols, group_col=group_col, split_col=split_col, images_dir=images_dir, task=task)
    out_dir = Path(out) if out else Path("indexes") / _dataset_name(ds)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedsearchError(f"cannot create output folder '{out_dir}' ({exc.strerror}): choose another --out") from None
    _log(f"dataset: {len(ds)} images, {ds.layout} layout, task {ds.task}, {len(ds.label_names)} labels"
         f"{', groups from manifest' if ds.groups else ''} -> {out_dir}")
    summary = {"dataset": ds.root, "out": str(out_dir), "rows": len(ds), "task": ds.task, "models": {}}
    with WriterLock(out_dir):
        data, row_of = _reconcile(out_dir, ds)
        open_row = _row_opener(ds, data, row_of)
        for model in models:
            summary["models"][model_key(name or model)] = _index_model(
                out_dir, data, open_row, model, key=model_key(name or model), weights=weight_of.get(model),
                random_init=random_init, norm=norm, resize=resize, crop=crop, on_missing=on_missing,
                batch_size=batch_size, workers=workers, index_type=index_type, device=device,
                commit_every=commit_every, progress=progress)
        atomic_write_json(out_dir / REPORT_FILE, summary)
    return summary


def _weights_by_model(models: tuple[str, ...], weights: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for w in weights:
        model, sep, path = w.partition("=")
        if sep and model in models:
            out[model] = path
        elif len(models) == 1:
            out[models[0]] = w
        else:
            raise MedsearchError(f"with several --model, give --weights as MODEL=PATH (got '{w}')")
    return out


def _dataset_name(ds: Dataset) -> str:
    p = Path(ds.root)
    return model_key(p.stem if p.is_file() else p.name) or "dataset"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _reconcile(out_dir: Path, ds: Dataset) -> tuple[StoreData, np.ndarray]:
    """Open the store (or create it from ``ds``), append rows new to it, and map dataset index -> store row."""
    if store_path(out_dir).exists():
        data = read_store(out_dir)
        if data.task != ds.task or data.label_names != ds.label_names:
            raise MedsearchError(f"the store in '{out_dir}' holds a different dataset (task {data.task}, labels "
                                 f"{', '.join(data.label_names)[:80]}): index into another --out folder")
    else:
        data = StoreData([], [], _empty_labels(ds), ds.label_names, ds.task,
                         groups=[] if ds.groups is not None else None, splits=[] if ds.splits is not None else None,
                         attrs={"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    data.attrs.update({"dataset_root": ds.root, "layout": ds.layout, "manifest": ds.manifest or ""})
    known = {rid: r for r, rid in enumerate(data.ids)}
    new = [i for i, rid in enumerate(ds.ids) if rid not in known]
    if new:
        _append_rows(data, ds, new)
        known = {rid: r for r, rid in enumerate(data.ids)}
        write_store(data, out_dir)
    row_of = np.array([known[rid] for rid in ds.ids], dtype=np.int64)
    return data, row_of


def _empty_labels(ds: Dataset) -> np.ndarray:
    return np.zeros((0,) + ds.labels.shape[1:], dtype=ds.labels.dtype)


def _append_rows(data: StoreData, ds: Dataset, new: list[int]) -> None:
    n_old = len(data)
    data.ids += [ds.ids[i] for i in new]
    data.sources += [ds.sources[i] for i in new]
    data.labels = np.concatenate([data.labels, ds.labels[new]])
    for attr in ("groups", "splits"):
        have, got = getattr(data, attr), getattr(ds, attr)
        if (have is None) != (got is None) and n_old:
            raise MedsearchError(f"the dataset now {'has' if got else 'lacks'} {attr} the store was built "
                                 f"{'without' if got else 'with'}: index into a new --out folder")
        setattr(data, attr, (have or []) + [got[i] for i in new] if got is not None else None)
    for m in data.models.values():
        extra = len(new)
        m.embedding = np.concatenate([m.embedding, np.zeros((extra, m.dim), np.float32)])
        m.state = np.concatenate([m.state, np.full(extra, PENDING, np.int8)])
        m.reason += [""] * extra


def _row_opener(ds: Dataset, data: StoreData, row_of: np.ndarray):
    ds_index = np.full(len(data), -1, dtype=np.int64)
    ds_index[row_of] = np.arange(len(ds))

    def open_row(row: int, draft_size: int | None = None):
        i = int(ds_index[row])
        if i < 0:
            raise ImageError("no longer in the dataset")
        return ds.open(i, draft_size=draft_size)

    return open_row


def _index_model(out_dir: Path, data: StoreData, open_row, model: str, *, key: str, weights, random_init,
                 norm, resize, crop, on_missing, batch_size, workers, index_type, device, commit_every,
                 progress) -> dict:
    spec = get_spec(model)
    encoder = load_encoder(model, weights=weights, random_init=random_init, device=device,
                           preprocess=preprocess_with(spec.preprocess, norm=norm, resize=resize, crop=crop))
    prov = encoder.provenance()
    is_new = _ensure_model(data, key, encoder.dim, prov)
    journal = Journal(out_dir, key)
    if journal.replay(data, key):
        _log(f"{key}: resumed the rows a previous run had finished")
        is_new = True
    if is_new:
        _commit(data, out_dir, journal)

    m = data.models[key]
    todo = np.flatnonzero((m.state == PENDING) | (m.state == SKIPPED))
    _log(f"{key}: {len(data) - len(todo)} rows already stored, embedding {len(todo)} "
         f"(batch {batch_size}, {workers} decode workers, {encoder.weights_source})")
    t0 = last_commit = time.perf_counter()
    for batch in embed_rows(open_row, todo, encoder, batch_size=batch_size, workers=workers,
                            on_missing=on_missing, progress=progress, desc=key):
        journal.append(batch.rows, [data.ids[r] for r in batch.rows], batch.embedding, batch.state, batch.reason)
        m.embedding[batch.rows], m.state[batch.rows] = batch.embedding, batch.state
        for r, why in zip(batch.rows, batch.reason):
            m.reason[r] = why
        if time.perf_counter() - last_commit > commit_every:
            _commit(data, out_dir, journal)
            last_commit = time.perf_counter()
    seconds = time.perf_counter() - t0

    usable = m.usable()
    if usable.size == 0:
        _commit(data, out_dir, journal)
        raise MedsearchError(f"no image of the dataset could be read for '{key}': see the reasons in "
                             f"{out_dir / 'index_report.json'} or `medsearch info {out_dir}`")
    rebuild = not _index_is_current(out_dir, m, usable.size, index_type)
    if rebuild:
        index_file = f"{key}.faiss"
        sha = save_index(build_index(m.embedding[usable], usable, index_type), out_dir / index_file)
        m.attrs.update({"index_file": index_file, "index_type": index_type, "index_sha256": sha,
                        "index_ntotal": int(usable.size), "index_built": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if rebuild or todo.size or journal.parts():
        _commit(data, out_dir, journal)
    return _model_summary(data, m, todo.size, seconds)


def _commit(data: StoreData, out_dir: Path, journal: Journal) -> None:
    write_store(data, out_dir)
    journal.clear()


def _index_is_current(out_dir: Path, m: ModelData, n_usable: int, index_type: str) -> bool:
    """True when the recorded index file covers exactly the usable rows, with the asked-for type, untouched."""
    a = m.attrs
    path = out_dir / a.get("index_file", "")
    return (a.get("index_type") == index_type and a.get("index_ntotal") == n_usable and path.is_file()
            and sha256_file(path) == a.get("index_sha256"))


def _ensure_model(data: StoreData, key: str, dim: int, prov: dict) -> bool:
    """Add the model's (empty) embedding dataset; False when the store already holds it, made the same way."""
    if key in data.models:
        have = provenance(data.models[key])
        for field in ("encoder", "preprocess", "dim", "weights_sha256", "weights_source"):
            if have.get(field) != prov.get(field):
                raise MedsearchError(f"the store already holds '{key}' made with another {field.replace('_', ' ')} "
                                     f"({_short(have.get(field))} vs {_short(prov.get(field))}): "
                                     "store this variant under another --name, or use another --out")
        return False
    n = len(data)
    data.models[key] = ModelData(np.zeros((n, dim), np.float32), np.full(n, PENDING, np.int8), [""] * n,
                                 {"provenance": json.dumps(prov), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return True


def _short(v) -> str:
    return json.dumps(v)[:60]


def _model_summary(data: StoreData, m: ModelData, n_done: int, seconds: float) -> dict:
    counts = {STATE_NAMES[s]: int((m.state == s).sum()) for s in (EMBEDDED, ZERO_FILLED, SKIPPED, PENDING)}
    problems = [{"id": data.ids[r], "source": data.sources[r], "state": STATE_NAMES[int(m.state[r])], "reason": m.reason[r]}
                for r in np.flatnonzero((m.state == SKIPPED) | (m.state == ZERO_FILLED))]
    for p in problems[:5]:
        _log(f"  {p['state']}: {p['source']}: {p['reason']}")
    if len(problems) > 5:
        _log(f"  ... and {len(problems) - 5} more (see {REPORT_FILE})")
    return {**counts, "embedded_this_run": int(n_done), "seconds": round(seconds, 2),
            "images_per_second": round(n_done / seconds, 2) if seconds > 0 and n_done else None,
            "index_file": m.attrs["index_file"], "problems": problems}
