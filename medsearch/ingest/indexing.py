"""`medsearch index DATASET`: embed every image once per model into the store, then build the FAISS index."""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..storage.atomic import atomic_write_json, sha256_file
from .datasets import Dataset, is_hidden, scan
from ..display import printable
from .embed import embed_rows
from .encoders import device_for, get_spec, load_encoder, preprocess_with
from ..errors import ImageError, MedsearchError
from .fingerprints import duplicate_groups, fingerprint
from ..storage.faiss_index import build_index, save_index
from ..storage.store import (EMBEDDED, PENDING, SKIPPED, STATE_NAMES, ZERO_FILLED, Journal, ModelData, StoreData,
                     WriterLock, model_key, provenance, read_store, store_path, write_store)

REPORT_FILE = "index_report.json"
DEFAULT_MODEL = "clip-vit-b-32"
# Smallest centre crop any encoder can tell images apart at; larger sizes are bounded by memory (_check_memory).
MIN_CROP = 16
# Decoded batches in memory at once: the one being encoded plus embed_rows' prefetch queue.
BATCHES_IN_MEMORY = 4
EXAMPLES_SHOWN = 5


def index_dataset(dataset: str, *, out: str | None = None, models: tuple[str, ...] = (DEFAULT_MODEL,),
          weights: tuple[str, ...] = (), random_init: bool = False, name: str | None = None,
          layout: str = "auto", manifest: str | None = None, image_col: str | None = None,
          label_col: str | None = None, label_cols: list[str] | None = None, group_col: str | None = None,
          split_col: str | None = None, images_dir: str | None = None, task: str | None = None,
          norm: str | None = None, resize: int | None = None, crop: int | None = None,
          on_missing: str = "skip", batch_size: int = 64, workers: int = os.cpu_count() or 2, index_type: str = "flat",
          device: str = "cpu", commit_every: float = 300.0, moved_from: str | None = None,
          progress: bool = True) -> dict:
    """Index ``dataset`` into ``out`` (default ``indexes/<dataset name>``) with each of ``models``.
    Re-running embeds only rows not yet stored (and rows whose file changed on disk); returns a summary (also
    written to index_report.json). A store belongs to one dataset: ``moved_from`` (the dataset's old root)
    lets it follow the same dataset to a new place, verified file by file."""
    models = tuple(models) or (DEFAULT_MODEL,)
    if name and len(models) > 1:
        raise MedsearchError("--name sets the store key of one model: index one --model at a time with it")
    keys = {m: store_key(name, "--name") if name else store_key(m, "--model") for m in models}
    weight_of = _weights_by_model(models, weights)
    specs = {m: get_spec(m) for m in models}  # fail on an unknown model before any work
    _check_options(resize=resize, crop=crop, batch_size=batch_size, workers=workers, commit_every=commit_every,
                   device=device)
    preprocesses = {m: preprocess_with(specs[m].preprocess, norm=norm, resize=resize, crop=crop) for m in models}
    for p in preprocesses.values():
        _check_memory(p, batch_size)
    ds = scan(dataset, layout=layout, manifest=manifest, image_col=image_col, label_col=label_col,
              label_cols=label_cols, group_col=group_col, split_col=split_col, images_dir=images_dir, task=task)
    out_dir = Path(out) if out else Path("indexes") / _dataset_name(ds)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedsearchError(f"cannot create output folder '{out_dir}' ({exc.strerror}): choose another --out") from None
    summary = {"dataset": ds.root, "out": str(out_dir), "rows": len(ds), "task": ds.task, "reading": ds.reading,
               "dropped_manifest_rows": [{"id": rid, "reason": why} for rid, why in ds.dropped], "models": {}}
    with WriterLock(out_dir):
        data = _open_store(out_dir, ds, moved_from)
        _log(f"dataset: {len(ds)} images, {ds.layout} layout, task {ds.task}, {len(ds.label_names)} labels -> "
             f"{printable(str(out_dir))}")
        _log(f"  {ds.reading}")
        for rid, why in ds.dropped[:EXAMPLES_SHOWN]:
            _log(f"  manifest row not stored: {printable(rid)}: {why}")
        if len(ds.dropped) > EXAMPLES_SHOWN:
            _log(f"  ... and {len(ds.dropped) - EXAMPLES_SHOWN} more manifest rows not stored (see {REPORT_FILE})")
        row_of, changes = _reconcile(out_dir, data, ds, moved_from=moved_from, workers=workers, progress=progress)
        summary["changes"] = changes
        summary["duplicates"] = _file_duplicates(data, row_of)
        open_row = _row_opener(ds, data, row_of)
        for model in models:
            summary["models"][keys[model]] = _index_model(
                out_dir, data, open_row, model, key=keys[model], weights=weight_of.get(model),
                random_init=random_init, preprocess=preprocesses[model], on_missing=on_missing,
                batch_size=batch_size, workers=workers, index_type=index_type, device=device,
                commit_every=commit_every, progress=progress, row_of=row_of)
        atomic_write_json(out_dir / REPORT_FILE, summary)
    return summary


def store_key(name: str, flag: str) -> str:
    """The store key (HDF5 group, index file, journal folder) of a model name or --name; refuses names that
    clean up to nothing or to a dot name ('.', '..', '.x'), which would alias the index folder itself."""
    key = model_key(name)
    if not key or is_hidden(key):
        raise MedsearchError(f"{flag} '{printable(name)}' gives no usable store key ('{printable(key)}'): use letters, "
                             "digits, '_', '-' and '.', starting with a letter or digit")
    return key


def _check_options(*, resize, crop, batch_size, workers, commit_every, device) -> None:
    """Every numeric option checked before any work, each with the flag that fixes it."""
    for flag, value, low in (("--resize", resize, MIN_CROP), ("--crop", crop, MIN_CROP)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MedsearchError(f"{flag} must be a whole number of pixels, got {value!r}")
        if value < low:
            raise MedsearchError(f"{flag} {value} is too small: below {low} pixels no encoder can tell images apart "
                                 f"(the index would be useless); use at least {low}")
    if resize is not None and crop is not None and crop > resize:
        raise MedsearchError(f"--crop {crop} is larger than --resize {resize}: the centre crop must fit in the resized image")
    if int(batch_size) < 1 or int(workers) < 1:
        raise MedsearchError("--batch-size and --workers must be at least 1")
    if not (isinstance(commit_every, (int, float)) and math.isfinite(commit_every) and commit_every >= 0):
        raise MedsearchError(f"--commit-every must be a number of seconds >= 0, got {commit_every!r}")
    device_for(device)  # unknown device, or CUDA asked for where there is none


def _check_memory(preprocess, batch_size: int) -> None:
    """Refuse a --crop / --resize / --batch-size whose decoded batches cannot fit in memory, before any work."""
    side = max(preprocess.resize, preprocess.crop)
    per_image = 3 * side * side * 4 * 2  # the resized image and its float tensor
    need = BATCHES_IN_MEMORY * batch_size * per_image
    avail = _available_memory()
    if avail and need > avail // 2:
        raise MedsearchError(f"--resize {preprocess.resize} / --crop {preprocess.crop} with --batch-size {batch_size} "
                             f"needs about {need / 2**30:.1f} GiB for its image batches, more than half of the "
                             f"{avail / 2**30:.1f} GiB available: use a smaller --crop, --resize or --batch-size")


def _available_memory() -> int | None:
    """MemAvailable (free memory plus reclaimable cache), else physical memory; None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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


def _warn(msg: str) -> None:
    print(f"medsearch: warning: {msg}", file=sys.stderr, flush=True)


def _open_store(out_dir: Path, ds: Dataset, moved_from: str | None) -> StoreData:
    """The store in ``out_dir`` if it is this dataset's (a new empty one if there is none); refuses another."""
    if not store_path(out_dir).exists():
        if moved_from:
            raise MedsearchError(f"--moved-from is for an existing store, and '{out_dir}' holds none: drop --moved-from")
        return StoreData([], [], _empty_labels(ds), ds.label_names, ds.task,
                         groups=[] if ds.groups is not None else None, splits=[] if ds.splits is not None else None,
                         attrs={"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    data = read_store(out_dir)
    if data.task != ds.task or data.label_names != ds.label_names:
        raise MedsearchError(f"the store in '{out_dir}' holds a different dataset (task {data.task}, labels "
                             f"{printable(', '.join(data.label_names))[:80]}): index into another --out folder")
    _check_same_dataset(data, ds, out_dir, moved_from)
    return data


def _reconcile(out_dir: Path, data: StoreData, ds: Dataset, *, moved_from: str | None, workers: int,
               progress: bool) -> tuple[np.ndarray, dict]:
    """Bring the store's rows, labels and content fingerprints up to date with ``ds`` and map dataset index ->
    store row. Returns (row_of, what changed)."""
    changes = {"moved_from": data.attrs.get("dataset_root") if moved_from else None}
    data.attrs.update({"dataset_root": ds.root, "layout": ds.layout, "manifest": ds.manifest or ""})
    known = {rid: r for r, rid in enumerate(data.ids)}
    new = [i for i, rid in enumerate(ds.ids) if rid not in known]
    dirty = bool(new) or bool(moved_from)
    if new:
        _append_rows(data, ds, new)
        known = {rid: r for r, rid in enumerate(data.ids)}
    row_of = np.array([known[rid] for rid in ds.ids], dtype=np.int64)
    changes["new_rows"] = len(new)
    changes["relabelled"] = _update_row_fields(data, ds, row_of)
    changes["gone_from_dataset"] = len(data) - len(row_of)
    content, content_dirty = _update_fingerprints(data, ds, row_of, workers=workers, progress=progress)
    changes.update(content)
    dirty = dirty or content_dirty or bool(changes["relabelled"])
    if changes["relabelled"]:
        _log(f"  {changes['relabelled']} stored rows have new labels, groups or splits in the dataset: updated")
    if changes["changed_on_disk"]:
        _log(f"  {changes['changed_on_disk']} stored images changed on disk since they were embedded: re-embedding them")
    if changes["gone_from_dataset"]:
        _log(f"  {changes['gone_from_dataset']} stored rows are no longer in the dataset: kept, with their embeddings")
    if dirty:
        write_store(data, out_dir)
    return row_of, changes


def _check_same_dataset(data: StoreData, ds: Dataset, out_dir: Path, moved_from: str | None) -> None:
    """A store describes one dataset (root, layout, manifest). Another one is refused, unless ``moved_from``
    names the stored root: the same dataset moved, whose files are then verified by their fingerprints."""
    root, layout = data.attrs.get("dataset_root") or "", data.attrs.get("layout") or ""
    manifest = data.attrs.get("manifest") or ""
    if not root:  # a store written before roots were recorded has nothing to compare
        return
    # the stored root is resolved (links followed); the old place may be gone, so its resolved and its plain
    # absolute form both count
    said = {os.path.realpath(moved_from), os.path.normpath(os.path.abspath(moved_from))} if moved_from else set()
    old = os.path.normpath(root) if os.path.normpath(root) in said else None
    if moved_from and old is None:
        raise MedsearchError(f"--moved-from '{printable(moved_from)}' is not where the store's dataset was "
                             f"('{printable(root)}'): give that path, or index into another --out folder")
    base = old or ds.root
    same_manifest = (os.path.relpath(manifest, root) == os.path.relpath(ds.manifest, base)) if manifest and ds.manifest \
        else manifest == (ds.manifest or "")
    if layout != ds.layout or not same_manifest or (not old and root != ds.root):
        what = (f"'{printable(ds.root)}'" + (f" (manifest {printable(ds.manifest)})" if ds.manifest else ""))
        was = (f"'{printable(root)}'" + (f" (manifest {printable(manifest)})" if manifest else ""))
        raise MedsearchError(f"the store in '{printable(str(out_dir))}' belongs to the dataset {was}, not {what}: "
                             f"index this one into another --out folder, or pass --moved-from '{printable(root)}' "
                             "if it is the same dataset moved")


def _update_row_fields(data: StoreData, ds: Dataset, row_of: np.ndarray) -> int:
    """Take labels, groups and splits of the dataset's rows from the dataset (the manifest may have been
    corrected); returns how many stored rows changed."""
    changed = np.zeros(len(data), dtype=bool)
    diff = (data.labels[row_of] != ds.labels).reshape(len(row_of), -1).any(axis=1)
    changed[row_of[diff]] = True
    data.labels[row_of] = ds.labels
    for attr in ("groups", "splits"):
        have, got = getattr(data, attr), getattr(ds, attr)
        if (have is None) != (got is None):
            raise MedsearchError(f"the dataset now {'has' if got else 'lacks'} {attr} the store was built "
                                 f"{'without' if got else 'with'}: index into a new --out folder")
        for r, value in zip(row_of, got or ()):
            if have[r] != value:
                have[r] = value
                changed[r] = True
    return int(changed.sum())


def _update_fingerprints(data: StoreData, ds: Dataset, row_of: np.ndarray, *, workers: int,
                         progress: bool) -> tuple[dict, bool]:
    """Record each row's content fingerprint; a row whose file now differs from what was embedded goes back to
    pending in every model (its old embeddings describe another image). Returns (counts, store changed)."""
    n = len(data)
    first = data.sha256 is None
    sha = list(data.sha256 or [])
    stat = data.file_stat if data.file_stat is not None else np.empty((0, 2), np.int64)
    data.sha256 = sha + [""] * (n - len(sha))
    data.file_stat = np.vstack([stat, np.full((n - len(stat), 2), -1, np.int64)]).astype(np.int64)
    known = [data.sha256[r] for r in row_of]
    shas, stats = fingerprint(ds, range(len(ds)), known_sha=known, known_stat=data.file_stat[row_of],
                              workers=workers, progress=progress)
    changed_rows = [int(r) for r, old, new in zip(row_of, known, shas) if old and new and old != new]
    dirty = False
    for r, old, new, st in zip(row_of, known, shas, stats):
        if (new or not old) and (new != old or (data.file_stat[r] != st).any()):
            data.sha256[r], data.file_stat[r] = new, st  # an unreadable file keeps what was embedded
            dirty = True
    for m in data.models.values():
        m.state[changed_rows] = PENDING
        m.embedding[changed_rows] = 0
        for r in changed_rows:
            m.reason[r] = ""
        if changed_rows:  # its index holds the old images' vectors under these rows: no longer this store's index
            for attr in [a for a in m.attrs if a.startswith("index_")]:
                del m.attrs[attr]
    if first and n:
        _log(f"  recorded the content fingerprints (sha256) of {sum(1 for s in shas if s)} images")
    return {"changed_on_disk": len(changed_rows)}, dirty


def _file_duplicates(data: StoreData, row_of: np.ndarray) -> dict:
    """Byte-identical images among the dataset's rows: a duplicate can fall on both sides of a split and
    inflate every score; one with two labels is a labelling error as well."""
    groups = [[int(row_of[p]) for p in g] for g in duplicate_groups([data.sha256[r] for r in row_of])]
    out = {"identical_files": len(groups), "rows": sum(len(g) for g in groups),
           "with_conflicting_labels": sum(1 for g in groups if len({_label_text(data, r) for r in g}) > 1),
           "groups": [[{"id": data.ids[r], "labels": _label_text(data, r)} for r in g] for g in groups]}
    if groups:
        first = " = ".join(f"{printable(data.ids[r])} ({printable(_label_text(data, r))})" for r in groups[0][:3])
        _warn(f"{len(groups)} groups of byte-identical images ({out['rows']} rows, "
              f"{out['with_conflicting_labels']} with conflicting labels), e.g. {first}: duplicates can fall on both "
              f"sides of a split and inflate scores; all are listed in {REPORT_FILE}")
    return out


def _label_text(data: StoreData, row: int) -> str:
    return "+".join(data.labels_of(row)) or "-"


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
                 preprocess, on_missing, batch_size, workers, index_type, device, commit_every, progress,
                 row_of) -> dict:
    encoder = load_encoder(model, weights=weights, random_init=random_init, device=device, preprocess=preprocess)
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
    # Rows embedded now replace what the index held for them (a file changed on disk keeps its row number).
    rebuild = bool(np.isin(todo, usable).any()) or not _index_is_current(out_dir, m, usable.size, index_type)
    if rebuild:
        index_file = f"{key}.faiss"
        sha = save_index(build_index(m.embedding[usable], usable, index_type), out_dir / index_file)
        m.attrs.update({"index_file": index_file, "index_type": index_type, "index_sha256": sha,
                        "index_ntotal": int(usable.size), "index_built": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if rebuild or todo.size or journal.parts():
        _commit(data, out_dir, journal)
    summary = _model_summary(data, m, todo.size, seconds)
    summary["identical_embeddings"] = (_embedding_duplicates(data, m, key, row_of) if todo.size else
                                       {"checked": False, "why": "nothing was embedded in this run"})
    return summary


def _embedding_duplicates(data: StoreData, m: ModelData, key: str, row_of: np.ndarray) -> dict:
    """Rows of the dataset whose embeddings are bit-identical although their files differ: the same pixels at
    the encoder's input (a re-saved copy, or one image at two sizes). When every embedding is the same the
    index cannot tell images apart at all (e.g. a preprocessing that leaves nothing of the image)."""
    rows = [int(r) for r in row_of if m.state[r] == EMBEDDED]
    digests = [hashlib.blake2b(m.embedding[r].tobytes(), digest_size=16).hexdigest() for r in rows]
    groups = [[rows[p] for p in g] for g in duplicate_groups(digests)]
    groups = [g for g in groups if len({data.sha256[r] for r in g}) > 1]  # byte-identical files are reported already
    out = {"groups": len(groups), "rows": sum(len(g) for g in groups),
           "examples": [[data.ids[r] for r in g] for g in groups[:100]]}
    if len(rows) > 1 and len(set(digests)) == 1:
        _warn(f"{key}: all {len(rows)} embeddings are identical, so every search ties: the preprocessing "
              "(--resize, --crop, --norm) or the weights leave nothing of the images; re-index with other settings")
        out["all_identical"] = True
    elif groups:
        first = " = ".join(printable(data.ids[r]) for r in groups[0][:3])
        _warn(f"{key}: {len(groups)} groups of images with identical embeddings but different files ({out['rows']} "
              f"rows), e.g. {first}: the same pixels at the encoder's input; they can leak across a split")
    return out


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
        _log(f"  {p['state']}: {printable(p['source'])}: {printable(p['reason'])}")
    if len(problems) > 5:
        _log(f"  ... and {len(problems) - 5} more (see {REPORT_FILE})")
    return {**counts, "embedded_this_run": int(n_done), "seconds": round(seconds, 2),
            "images_per_second": round(n_done / seconds, 2) if seconds > 0 and n_done else None,
            "index_file": m.attrs["index_file"], "problems": problems}
