"""Read what `medsearch index DIR` points at into one `Dataset`: ids, image sources, labels, groups, splits.

Three layouts, auto-detected (override with ``layout=``):
- ``folders``: one sub-folder per class (ImageFolder);
- ``csv``: images plus a CSV manifest with an image column, one label column or one 0/1 column per label,
  and an optional group column (patient or lesion id);
- ``npz``: a MedMNIST-style ``.npz`` with ``train_/val_/test_`` keys; the official split is kept.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError, MedsearchError
from .images import IMAGE_EXTENSIONS, array_to_image, load_image

TASKS = ("binary", "multiclass", "multilabel")
LAYOUTS = ("auto", "folders", "csv", "npz")
IMAGE_COLUMNS = ("image", "image_id", "image_path", "filename", "file_name", "file", "path", "img", "isic_id")
LABEL_COLUMNS = ("label", "labels", "class", "diagnosis", "dx", "target", "finding")
GROUP_COLUMNS = ("patient_id", "patientid", "patient", "lesion_id", "subject_id", "subject", "group", "id")
SPLIT_COLUMNS = ("split", "fold_split", "subset", "partition")
NPZ_SPLITS = ("train", "val", "test")
# Class names of the bundled MedMNIST demo files (MedMNIST v2 INFO); other npz files get numbered classes.
MEDMNIST_LABELS = {
    "breastmnist": ["malignant", "normal, benign"],
    "retinamnist": ["grade 0", "grade 1", "grade 2", "grade 3", "grade 4"],
}


@dataclass
class Dataset:
    """Everything `index` stores about the rows of a dataset. ``sources[i]`` is a path relative to ``root``
    (or ``split/index`` inside an npz); ``missing[i]`` gives why a row's image could not be located."""

    root: str
    layout: str
    ids: list[str]
    sources: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str
    groups: list[str] | None = None
    splits: list[str] | None = None
    missing: dict[int, str] = field(default_factory=dict)
    manifest: str | None = None
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def open(self, i: int, *, draft_size: int | None = None) -> Image.Image:
        """Decoded RGB image of row ``i``; raises ImageError with the reason when it can't be read."""
        if i in self.missing:
            raise ImageError(self.missing[i])
        if self._arrays is not None:
            split, j = self.sources[i].rsplit("/", 1)
            return array_to_image(self._arrays[split][int(j)])
        return load_image(os.path.join(self.root, self.sources[i]), draft_size=draft_size)


def scan(path: str | os.PathLike, *, layout: str = "auto", manifest: str | None = None,
         image_col: str | None = None, label_col: str | None = None, label_cols: list[str] | None = None,
         group_col: str | None = None, split_col: str | None = None, images_dir: str | None = None,
         task: str | None = None) -> Dataset:
    """Scan a dataset folder (or an .npz / .csv file) and return its rows. Raises MedsearchError on bad input."""
    root = Path(path)
    if not root.exists():
        raise MedsearchError(f"dataset path '{path}' does not exist: give a folder of images, a CSV manifest or an .npz file")
    if layout not in LAYOUTS:
        raise MedsearchError(f"unknown layout '{layout}': use one of {', '.join(LAYOUTS)}")
    if task is not None and task not in TASKS:
        raise MedsearchError(f"unknown task '{task}': use one of {', '.join(TASKS)}")
    layout = _detect_layout(root, manifest) if layout == "auto" else layout
    if layout == "npz":
        ds = _scan_npz(root)
    elif layout == "csv":
        ds = _scan_csv(root, manifest, image_col, label_col, label_cols, group_col, split_col, images_dir)
    else:
        ds = _scan_folders(root)
    if task is not None:
        ds.task = _check_task(task, ds)
    return ds


def _detect_layout(root: Path, manifest: str | None) -> str:
    if root.is_file():
        if root.suffix == ".npz":
            return "npz"
        if root.suffix == ".csv":
            return "csv"
        raise MedsearchError(f"'{root}' is a file, not a dataset: give a folder, a CSV manifest or an .npz file")
    if manifest:
        return "csv"
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise MedsearchError(f"cannot list '{root}': {exc.strerror}; check the path and its permissions") from None
    npz = [e for e in entries if e.is_file() and e.name.endswith(".npz")]
    csvs = [e for e in entries if e.is_file() and e.name.endswith(".csv")]
    class_dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".") and _has_images(Path(e.path))]
    if len(class_dirs) >= 2:
        return "folders"
    if csvs:
        return "csv"
    if len(npz) == 1:
        return "npz"
    if len(npz) > 1:
        raise MedsearchError(f"'{root}' holds several .npz files: pass one of them as the dataset path")
    raise MedsearchError(f"no dataset found in '{root}': expected one sub-folder of images per class, "
                         "images with a CSV manifest, or a MedMNIST .npz")


def _has_images(folder: Path) -> bool:
    try:
        return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir())
    except OSError:
        return False


def _scan_folders(root: Path) -> Dataset:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _has_images(d))
    if len(classes) < 2:
        raise MedsearchError(f"'{root}' needs at least two class sub-folders with images (found {len(classes)})")
    sources, labels = [], []
    for c, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            for f in sorted(filenames):
                if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."):
                    sources.append(os.path.relpath(os.path.join(dirpath, f), root))
                    labels.append(c)
    task = "binary" if len(classes) == 2 else "multiclass"
    return Dataset(str(root.resolve()), "folders", list(sources), sources, np.asarray(labels, np.int64), classes, task)


def _scan_npz(path: Path) -> Dataset:
    if path.is_dir():
        path = next(p for p in sorted(path.iterdir()) if p.suffix == ".npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise MedsearchError(f"cannot read '{path}' as .npz ({exc}); give a MedMNIST-style file") from None
    splits = [s for s in NPZ_SPLITS if f"{s}_images" in arrays]
    if not splits or any(f"{s}_labels" not in arrays for s in splits):
        raise MedsearchError(f"'{path}' has no train_/val_/test_ images and labels keys: "
                             "give a MedMNIST-style .npz (keys like train_images, train_labels)")
    images = {s: arrays[f"{s}_images"] for s in splits}
    labels = np.concatenate([arrays[f"{s}_labels"].reshape(len(images[s]), -1) for s in splits]).astype(np.int64)
    sources = [f"{s}/{i}" for s in splits for i in range(len(images[s]))]
    split_names = [s for s in splits for _ in range(len(images[s]))]
    if labels.shape[1] == 1:
        labels = labels[:, 0]
        n_classes = int(labels.max()) + 1
        task = "binary" if n_classes == 2 else "multiclass"
    else:
        n_classes = labels.shape[1]
        task = "multilabel"
    names = MEDMNIST_LABELS.get(path.stem.lower())
    if names is None or len(names) != n_classes:
        names = [str(c) for c in range(n_classes)]
    ds = Dataset(str(path.resolve()), "npz", list(sources), sources, labels, names, task, splits=split_names)
    ds._arrays = images
    return ds


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


def _pick(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str | None:
    if wanted is not None:
        if wanted not in header:
            raise MedsearchError(f"manifest '{path}' has no column '{wanted}' ({what}); its columns are: {', '.join(header)}")
        return wanted
    lower = {h.lower(): h for h in header}
    return next((lower[c] for c in candidates if c in lower), None)


def _is_binary_column(rows: list[dict[str, str]], col: str) -> bool:
    return all(r.get(col, "") in ("0", "1", "0.0", "1.0") for r in rows)


def _scan_csv(root: Path, manifest, image_col, label_col, label_cols, group_col, split_col, images_dir) -> Dataset:
    if root.is_file():
        manifest_path, root = root, root.parent
    elif manifest:
        manifest_path = Path(manifest) if os.path.isabs(manifest) else root / manifest
    else:
        csvs = sorted(p for p in root.glob("*.csv"))
        preferred = [p for p in csvs if p.stem.lower() in ("labels", "manifest", "metadata", "data")]
        if len(preferred) != 1 and len(csvs) != 1:
            raise MedsearchError(f"'{root}' holds {len(csvs)} CSV files: pass the manifest with --manifest")
        manifest_path = preferred[0] if len(preferred) == 1 else csvs[0]
    if not manifest_path.is_file():
        raise MedsearchError(f"manifest '{manifest_path}' not found: check --manifest")
    header, rows = _read_csv(manifest_path)
    img_col = _pick(header, image_col, IMAGE_COLUMNS, "image column", manifest_path)
    if img_col is None:
        raise MedsearchError(f"manifest '{manifest_path.name}' has no image column (looked for {', '.join(IMAGE_COLUMNS)}): "
                             "name it with --image-col")
    grp_col = _pick(header, group_col, (), "group column", manifest_path)
    if grp_col is None and group_col is None:
        grp_col = _auto_group_column(header, rows, img_col)
    spl_col = _pick(header, split_col, SPLIT_COLUMNS, "split column", manifest_path)
    labels, names, task = _csv_labels(header, rows, manifest_path, img_col, grp_col, label_col, label_cols)

    image_root = _image_root(root, images_dir)
    ids = [r[img_col] for r in rows]
    _check_unique(ids, manifest_path, img_col)
    listing = _stem_index(image_root)
    sources, missing = [], {}
    for i, name in enumerate(ids):
        rel, why = _resolve(image_root, root, name, listing)
        sources.append(rel)
        if why:
            missing[i] = why
    if len(missing) == len(ids):
        raise MedsearchError(f"none of the {len(ids)} images named in '{manifest_path.name}' were found under "
                             f"'{image_root}': point --images-dir at the image folder")
    groups = [r[grp_col] for r in rows] if grp_col else None
    splits = [r[spl_col].lower() for r in rows] if spl_col else None
    return Dataset(str(root.resolve()), "csv", ids, sources, labels, names, task, groups=groups, splits=splits,
                   missing=missing, manifest=str(manifest_path.resolve()))


def _auto_group_column(header, rows, img_col) -> str | None:
    lower = {h.lower(): h for h in header}
    for cand in GROUP_COLUMNS:
        col = lower.get(cand)
        if col and col != img_col:
            values = [r[col] for r in rows]
            if all(values) and len(set(values)) < len(values):  # a group id repeats; a unique id is no group
                return col
    return None


def _csv_labels(header, rows, path, img_col, grp_col, label_col, label_cols):
    """One label column -> binary/multiclass; several 0/1 columns -> multiclass if exactly one is set per row, else multilabel."""
    if label_cols:
        missing = [c for c in label_cols if c not in header]
        if missing:
            raise MedsearchError(f"manifest '{path.name}' has no column(s) {', '.join(missing)}; its columns are: {', '.join(header)}")
        cols = list(label_cols)
    elif label_col:
        cols = []
    else:
        cols = [h for h in header if h not in (img_col, grp_col) and _is_binary_column(rows, h)]
        if len(cols) < 2:
            cols = []
    if cols:
        bad = next((r for r in rows if not _is_binary_column([r], cols[0]) or
                    any(r.get(c, "") not in ("0", "1", "0.0", "1.0") for c in cols)), None)
        if bad is not None:
            raise MedsearchError(f"label columns {', '.join(cols)} of '{path.name}' must hold 0 or 1 "
                                 f"(row for '{bad.get(img_col)}' does not)")
        hot = np.array([[int(float(r[c])) for c in cols] for r in rows], dtype=np.int64)
        if (hot.sum(1) == 1).all():
            return hot.argmax(1), cols, ("binary" if len(cols) == 2 else "multiclass")
        return hot, cols, "multilabel"
    col = _pick(header, label_col, LABEL_COLUMNS, "label column", path)
    if col is None:
        raise MedsearchError(f"manifest '{path.name}' has no label column (looked for {', '.join(LABEL_COLUMNS)} "
                             "or several 0/1 columns): name it with --label-col or --label-cols")
    values = [r[col] for r in rows]
    empty = sum(1 for v in values if v == "")
    if empty:
        raise MedsearchError(f"{empty} row(s) of '{path.name}' have an empty '{col}': fill in every label or drop those rows")
    if all(_is_int(v) for v in values):
        ints = sorted({int(float(v)) for v in values})
        names = [str(v) for v in ints]
        codes = {v: i for i, v in enumerate(ints)}
        labels = np.array([codes[int(float(v))] for v in values], dtype=np.int64)
    else:
        names = sorted(set(values))
        codes = {v: i for i, v in enumerate(names)}
        labels = np.array([codes[v] for v in values], dtype=np.int64)
    if len(names) < 2:
        raise MedsearchError(f"column '{col}' of '{path.name}' holds a single class ('{names[0]}'): "
                             "a classifier needs at least two; check --label-col")
    return labels, names, ("binary" if len(names) == 2 else "multiclass")


def _is_int(v: str) -> bool:
    try:
        return float(v) == int(float(v))
    except (ValueError, OverflowError):
        return False


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


def _image_root(root: Path, images_dir: str | None) -> Path:
    if images_dir:
        p = Path(images_dir) if os.path.isabs(images_dir) else root / images_dir
        if not p.is_dir():
            raise MedsearchError(f"--images-dir '{images_dir}' is not a folder")
        return p
    return root / "images" if (root / "images").is_dir() else root


def _stem_index(folder: Path) -> dict[str, str]:
    """File stem -> file name for every image directly in ``folder``, for names given without extension."""
    out: dict[str, str] = {}
    try:
        for e in os.scandir(folder):
            stem, ext = os.path.splitext(e.name)
            if ext.lower() in IMAGE_EXTENSIONS + (".dcm",):
                out.setdefault(stem, e.name)
    except OSError:
        pass
    return out


def _resolve(image_root: Path, root: Path, name: str, listing: dict[str, str]) -> tuple[str, str | None]:
    """Relative path (to ``root``) of the image a manifest names, and why it is missing (None if found)."""
    if os.path.isabs(name):
        return name, "absolute path in manifest; paths must be relative to the dataset folder"
    candidate = image_root / name
    if not os.path.splitext(name)[1] and name in listing:
        candidate = image_root / listing[name]
    # Lexical check of what the manifest says: a symlink placed inside the dataset by its owner may point anywhere.
    root_abs, cand_abs = os.path.normpath(os.path.abspath(root)), os.path.normpath(os.path.abspath(candidate))
    if not cand_abs.startswith(root_abs + os.sep):
        return name, "path escapes the dataset folder"
    if not os.path.lexists(candidate):
        return os.path.relpath(candidate, root), "file not found"
    return os.path.relpath(candidate, root), None


def _check_task(task: str, ds: Dataset) -> str:
    if task == "multilabel" and ds.labels.ndim != 2:
        raise MedsearchError("--task multilabel needs one 0/1 column per label (use --label-cols)")
    if task != "multilabel" and ds.labels.ndim == 2:
        raise MedsearchError(f"--task {task} needs a single label per image, but the manifest has several label columns")
    if task == "binary" and len(ds.label_names) != 2:
        raise MedsearchError(f"--task binary needs exactly two classes, found {len(ds.label_names)}")
    return task
