"""The ``csv`` layout: images plus a CSV manifest with an image column, the labels (columns.py), and optional
group (patient or lesion id) and official split columns; image names resolve under the image folder
(image_paths.py)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ..display import printable
from ..errors import MedsearchError
from .columns import csv_labels, pick_column
from .image_paths import image_folder, resolve, stem_index
from .layouts import Dataset, is_hidden

IMAGE_COLUMNS = ("image", "image_id", "image_path", "filename", "file_name", "file", "path", "img", "isic_id")
GROUP_COLUMNS = ("patient_id", "patientid", "patient", "lesion_id", "subject_id", "subject", "group", "id")
SPLIT_COLUMNS = ("split", "fold_split", "subset", "partition")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except UnicodeDecodeError:
        raise MedsearchError(f"manifest '{path}' is not UTF-8 text: save it as UTF-8 CSV") from None
    except (OSError, csv.Error) as exc:
        raise MedsearchError(f"cannot read manifest '{path}': {exc}") from None
    if not header or not rows:
        raise MedsearchError(f"manifest '{path}' is empty: it needs a header row and one row per image")
    rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in r.items()} for r in rows]
    return header, rows


def scan_csv(root: Path, manifest, image_col, label_col, label_cols, group_col, split_col, images_dir) -> Dataset:
    """The rows a CSV manifest lists (``root`` is the manifest itself, or the folder holding it)."""
    manifest_path, root = _manifest_path(root, manifest)
    header, rows = _read_csv(manifest_path)
    img_col, grp_col, spl_col = _pick_columns(header, rows, manifest_path, image_col, group_col, split_col)
    other_cols = tuple(c for c in (grp_col, spl_col) if c)
    rows, dropped = _storable_rows(rows, (img_col, *other_cols))
    if not rows:
        raise MedsearchError(f"no row of manifest '{manifest_path.name}' can be stored ({dropped[0][1]}): fix the manifest")
    labels, names, task, reading = csv_labels(header, rows, manifest_path, img_col, other_cols, label_col, label_cols)
    if grp_col:
        reading += f"; groups (patients) from column '{printable(grp_col)}'"
    if spl_col:
        reading += f"; official split from column '{printable(spl_col)}'"
    ids = [r[img_col] for r in rows]
    _check_unique(ids, manifest_path, img_col)
    sources, missing = _sources(root, image_folder(root, images_dir), ids, manifest_path)
    groups = [r[grp_col] for r in rows] if grp_col else None
    splits = [r[spl_col].lower() for r in rows] if spl_col else None
    return Dataset(ids, sources, labels, names, task, groups=groups, splits=splits, root=str(root.resolve()),
                   layout="csv", missing=missing, manifest=str(manifest_path.resolve()), reading=reading, dropped=dropped)


def _manifest_path(root: Path, manifest: str | None) -> tuple[Path, Path]:
    """(manifest file, dataset folder): the file given, ``manifest`` under ``root``, or the one CSV in ``root``
    (among several, the one named labels/manifest/metadata/data)."""
    if root.is_file():
        manifest_path, root = root, root.parent
    elif manifest:
        manifest_path = Path(manifest) if os.path.isabs(manifest) else root / manifest
    else:
        csvs = sorted(p for p in root.glob("*.csv") if not is_hidden(p.name))
        preferred = [p for p in csvs if p.stem.lower() in ("labels", "manifest", "metadata", "data")]
        if len(preferred) != 1 and len(csvs) != 1:
            raise MedsearchError(f"'{root}' holds {len(csvs)} CSV files: pass the manifest with --manifest")
        manifest_path = preferred[0] if len(preferred) == 1 else csvs[0]
    if not manifest_path.is_file():
        raise MedsearchError(f"manifest '{manifest_path}' not found: check --manifest")
    return manifest_path, root


def _pick_columns(header, rows, path: Path, image_col, group_col, split_col) -> tuple[str, str | None, str | None]:
    """The image, group and split columns: as named, else found by their usual names."""
    img_col = pick_column(header, image_col, IMAGE_COLUMNS, "image column", path)
    if img_col is None:
        raise MedsearchError(f"manifest '{path.name}' has no image column (looked for {', '.join(IMAGE_COLUMNS)}): "
                             "name it with --image-col")
    grp_col = pick_column(header, group_col, (), "group column", path)
    if grp_col is None and group_col is None:
        grp_col = _auto_group_column(header, rows, img_col)
    spl_col = pick_column(header, split_col, SPLIT_COLUMNS, "split column", path)
    return img_col, grp_col, spl_col


def _sources(root: Path, folder: Path, ids: list[str], path: Path) -> tuple[list[str], dict[int, str]]:
    """Each named image's path relative to ``root``, and why the missing ones are missing; refuses a manifest
    none of whose images are found."""
    listing = stem_index(folder)
    sources, missing = [], {}
    for i, name in enumerate(ids):
        rel, why = resolve(folder, root, name, listing)
        sources.append(rel)
        if why:
            missing[i] = why
    if len(missing) == len(ids):
        raise MedsearchError(f"none of the {len(ids)} images named in '{path.name}' were found under "
                             f"'{folder}': point --images-dir at the image folder")
    return sources, missing


def _storable_rows(rows, cols) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Rows whose stored cells (image, group, split) the store can hold, and (id, reason) of the others: HDF5
    strings cannot contain a NUL byte, and a row without its image cannot be stored."""
    kept, dropped = [], []
    for r in rows:
        bad = next((c for c in cols if "\x00" in r.get(c, "")), None)
        if bad is None:
            kept.append(r)
        else:
            dropped.append((r.get(cols[0], ""), f"its '{bad}' value contains a NUL byte"))
    return kept, dropped


def _auto_group_column(header, rows, img_col) -> str | None:
    lower = {h.lower(): h for h in header}
    for cand in GROUP_COLUMNS:
        col = lower.get(cand)
        if col and col != img_col:
            values = [r[col] for r in rows]
            if all(values) and len(set(values)) < len(values):  # a group id repeats; a unique id is no group
                return col
    return None


def _check_unique(ids: list[str], path: Path, col: str) -> None:
    seen, dupes = set(), []
    for i in ids:
        if i in seen:
            dupes.append(i)
        seen.add(i)
    if dupes:
        raise MedsearchError(f"manifest '{path.name}' names {len(dupes)} image(s) twice in '{col}' "
                             f"(first: '{dupes[0]}'): each image must appear once")
    if "" in seen:
        raise MedsearchError(f"manifest '{path.name}' has rows with an empty '{col}': every row needs an image")
