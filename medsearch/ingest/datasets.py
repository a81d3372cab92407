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

from ..errors import ImageError, MedsearchError
from ..display import printable
from .images import IMAGE_EXTENSIONS, array_to_image, load_image
from ..storage.store import MAX_LABEL_NAMES

TASKS = ("binary", "multiclass", "multilabel")
LAYOUTS = ("auto", "folders", "csv", "npz")
IMAGE_COLUMNS = ("image", "image_id", "image_path", "filename", "file_name", "file", "path", "img", "isic_id")
LABEL_COLUMNS = ("label", "labels", "class", "diagnosis", "dx", "target", "finding")
GROUP_COLUMNS = ("patient_id", "patientid", "patient", "lesion_id", "subject_id", "subject", "group", "id")
SPLIT_COLUMNS = ("split", "fold_split", "subset", "partition")
# Names a scan never enters or reads: dot files and folders (.ipynb_checkpoints, .DS_Store, ._x.png resource forks,
# .~lock.labels.csv#) and macOS archive debris. A checkpoint copy beside its original is an exact duplicate
# that could land on both sides of a split.
JUNK_NAMES = ("__MACOSX",)
NPZ_SPLITS = ("train", "val", "test")
# Class names of the bundled MedMNIST demo files (MedMNIST v2 INFO); other npz files get numbered classes.
MEDMNIST_LABELS = {
    "breastmnist": ["malignant", "normal, benign"],
    "retinamnist": ["grade 0", "grade 1", "grade 2", "grade 3", "grade 4"],
}


def is_hidden(name: str) -> bool:
    """True for a file or folder name that scans skip (see JUNK_NAMES)."""
    return name.startswith(".") or name in JUNK_NAMES


@dataclass
class Dataset:
    """Everything `index` stores about the rows of a dataset. ``sources[i]`` is a path relative to ``root``
    (or ``split/index`` inside an npz); ``missing[i]`` gives why a row's image could not be located.
    ``reading`` says in one line how the labels were read; ``dropped`` lists manifest rows that cannot be
    stored at all (id as written, reason)."""

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
    reading: str = ""
    dropped: list[tuple[str, str]] = field(default_factory=list)
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, i: int) -> str | None:
        """File of row ``i`` (None for an npz row)."""
        return None if self._arrays is not None else os.path.join(self.root, self.sources[i])

    def array(self, i: int) -> np.ndarray:
        """The stored array of an npz row."""
        split, j = self.sources[i].rsplit("/", 1)
        return self._arrays[split][int(j)]

    def open(self, i: int, *, draft_size: int | None = None) -> Image.Image:
        """Decoded RGB image of row ``i``; raises ImageError with the reason when it can't be read."""
        if i in self.missing:
            raise ImageError(self.missing[i])
        if self._arrays is not None:
            return array_to_image(self.array(i))
        return load_image(self.path(i), draft_size=draft_size)


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
    if len(ds.label_names) > MAX_LABEL_NAMES:
        raise MedsearchError(f"the dataset has {len(ds.label_names)} classes, more than the {MAX_LABEL_NAMES} medsearch "
                             "supports: is the label column an id? name the right one with --label-col or --label-cols")
    if task is not None and task != ds.task:
        ds.task = _check_task(task, ds)
        ds.reading += f"; task set to {task} by --task"
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
    entries = [e for e in entries if not is_hidden(e.name)]
    npz = [e for e in entries if e.is_file() and e.name.endswith(".npz")]
    csvs = [e for e in entries if e.is_file() and e.name.endswith(".csv")]
    class_dirs = [e for e in entries if e.is_dir() and _has_images(Path(e.path))]
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


def _is_image_name(name: str) -> bool:
    return not is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _has_images(folder: Path) -> bool:
    try:
        return any(_is_image_name(f.name) for f in folder.iterdir())
    except OSError:
        return False


def _scan_folders(root: Path) -> Dataset:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not is_hidden(d.name) and _has_images(d))
    if len(classes) < 2:
        raise MedsearchError(f"'{root}' needs at least two class sub-folders with images (found {len(classes)})")
    sources, labels = [], []
    for c, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))  # never enter .ipynb_checkpoints & co
            for f in sorted(filenames):
                if _is_image_name(f):
                    sources.append(os.path.relpath(os.path.join(dirpath, f), root))
                    labels.append(c)
    task = "binary" if len(classes) == 2 else "multiclass"
    reading = f"one sub-folder per class: {', '.join(classes)} ({task})"
    return Dataset(str(root.resolve()), "folders", list(sources), sources, np.asarray(labels, np.int64), classes, task,
                   reading=reading)


def _scan_npz(path: Path) -> Dataset:
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if p.suffix == ".npz" and not is_hidden(p.name)]
        if len(found) != 1:
            raise MedsearchError(f"'{path}' holds {len(found)} .npz files: pass the one to index as the dataset path")
        path = found[0]
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
    reading = (f"labels from the {'_labels, '.join(splits)}_labels arrays ({task}, {len(names)} classes: "
               f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); official split kept")
    ds = Dataset(str(path.resolve()), "npz", list(sources), sources, labels, names, task, splits=split_names,
                 reading=reading)
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


BINARY_VALUES = ("0", "1", "0.0", "1.0")  # how a 0/1 label column may spell its values


def _is_binary_column(rows: list[dict[str, str]], col: str) -> bool:
    return all(r.get(col, "") in BINARY_VALUES for r in rows)


def _scan_csv(root: Path, manifest, image_col, label_col, label_cols, group_col, split_col, images_dir) -> Dataset:
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
    header, rows = _read_csv(manifest_path)
    img_col = _pick(header, image_col, IMAGE_COLUMNS, "image column", manifest_path)
    if img_col is None:
        raise MedsearchError(f"manifest '{manifest_path.name}' has no image column (looked for {', '.join(IMAGE_COLUMNS)}): "
                             "name it with --image-col")
    grp_col = _pick(header, group_col, (), "group column", manifest_path)
    if grp_col is None and group_col is None:
        grp_col = _auto_group_column(header, rows, img_col)
    spl_col = _pick(header, split_col, SPLIT_COLUMNS, "split column", manifest_path)
    other_cols = tuple(c for c in (grp_col, spl_col) if c)
    rows, dropped = _storable_rows(rows, (img_col, *other_cols))
    if not rows:
        raise MedsearchError(f"no row of manifest '{manifest_path.name}' can be stored ({dropped[0][1]}): fix the manifest")
    labels, names, task, reading = _csv_labels(header, rows, manifest_path, img_col, other_cols, label_col, label_cols)
    if grp_col:
        reading += f"; groups (patients) from column '{printable(grp_col)}'"
    if spl_col:
        reading += f"; official split from column '{printable(spl_col)}'"

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
                   missing=missing, manifest=str(manifest_path.resolve()), reading=reading, dropped=dropped)


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


def _csv_labels(header, rows, path, img_col, other_cols, label_col, label_cols):
    """(labels, label names, task, reading): how the manifest's labels are read, stated in one line.

    Two readings exist: one label column (numbers or names: binary/multiclass), or one 0/1 column per label
    (exactly one set per row: multiclass with the columns as classes; else multilabel). Without --label-col or
    --label-cols, a manifest that allows both (a column named like a label, and two or more other-than-id 0/1
    columns) is refused, unless the two readings are provably the same (the 0/1 columns are the one-hot code of
    the label column on every row, as in ISIC 2018's labels.csv): a covariate such as ``male`` never becomes a
    label by guess."""
    if label_col and label_cols:
        raise MedsearchError("give either --label-col (one label column) or --label-cols (one 0/1 column per label), not both")
    if label_cols:
        missing = [c for c in label_cols if c not in header]
        if missing:
            raise MedsearchError(f"manifest '{path.name}' has no column(s) {', '.join(missing)}; its columns are: {', '.join(header)}")
        labels, names, task = _hot_labels(rows, list(dict.fromkeys(label_cols)), path, img_col)
        return labels, names, task, _reading_of_columns(names, task, header, img_col, other_cols, "--label-cols")
    if label_col:
        col = _pick(header, label_col, (), "label column", path)
        labels, names, task = _column_labels(rows, col, path)
        return labels, names, task, _reading_of_column(col, names, task, header, img_col, other_cols, "--label-col")
    candidates = [h for h in header if h not in (img_col, *other_cols)]
    hot_cols = [h for h in candidates if _is_binary_column(rows, h)]
    named = _pick([h for h in candidates], None, LABEL_COLUMNS, "label column", path)
    if named is not None and len(hot_cols) >= 2:
        same = _one_hot_of(rows, named, hot_cols) if named not in hot_cols else None
        if same is None:
            raise MedsearchError(
                f"manifest '{path.name}' can be read two ways: one label column '{named}' (the other 0/1 columns "
                f"{', '.join(c for c in hot_cols if c != named)} ignored), or one 0/1 column per label "
                f"({', '.join(hot_cols)}): say which with --label-col {named} or --label-cols {','.join(hot_cols)}")
        labels, names, task = _hot_labels(rows, hot_cols, path, img_col)
        reading = _reading_of_columns(names, task, [h for h in header if h != named], img_col, other_cols, "auto")
        return labels, names, task, reading + f"; column '{printable(named)}' agrees with them on every row"
    if len(hot_cols) >= 2:
        labels, names, task = _hot_labels(rows, hot_cols, path, img_col)
        return labels, names, task, _reading_of_columns(names, task, header, img_col, other_cols, "auto")
    if named is None:
        raise MedsearchError(f"manifest '{path.name}' has no label column (looked for {', '.join(LABEL_COLUMNS)} "
                             "or several 0/1 columns): name it with --label-col or --label-cols")
    labels, names, task = _column_labels(rows, named, path)
    return labels, names, task, _reading_of_column(named, names, task, header, img_col, other_cols, "auto")


def _hot_labels(rows, cols, path, img_col):
    bad = next((r for r in rows if not all(_is_binary_column([r], c) for c in cols)), None)
    if bad is not None:
        raise MedsearchError(f"label columns {', '.join(cols)} of '{path.name}' must hold 0 or 1 "
                             f"(row for '{printable(bad.get(img_col) or '')}' does not)")
    hot = np.array([[int(float(r[c])) for c in cols] for r in rows], dtype=np.int64).reshape(len(rows), len(cols))
    if len(cols) >= 2 and (hot.sum(1) == 1).all():
        return hot.argmax(1), list(cols), ("binary" if len(cols) == 2 else "multiclass")
    return hot, list(cols), "multilabel"


def _column_labels(rows, col, path):
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
        raise MedsearchError(f"column '{col}' of '{path.name}' holds a single class ('{printable(names[0])}'): "
                             "a classifier needs at least two; check --label-col")
    return labels, names, ("binary" if len(names) == 2 else "multiclass")


def _one_hot_of(rows, col, hot_cols) -> bool | None:
    """True when ``hot_cols`` one-hot encode ``col`` (each value always with the same single column, each column
    with a single value); None otherwise."""
    value_to_col, col_to_value = {}, {}
    for r in rows:
        on = [c for c in hot_cols if float(r[c]) == 1.0]
        if len(on) != 1:
            return None
        v, c = r[col], on[0]
        if value_to_col.setdefault(v, c) != c or col_to_value.setdefault(c, v) != v:
            return None
    return True


def _ignored(header, used, img_col, other_cols) -> str:
    rest = [h for h in header if h and h not in used and h != img_col and h not in other_cols]
    return f"; columns ignored: {', '.join(rest)}" if rest else ""


def _reading_of_column(col, names, task, header, img_col, other_cols, how) -> str:
    shown = ", ".join(printable(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return (f"labels from column '{printable(col)}' ({task}, {len(names)} classes: {shown}; {how})"
            + _ignored(header, {col}, img_col, other_cols))


def _reading_of_columns(cols, task, header, img_col, other_cols, how) -> str:
    kind = "multi-hot" if task == "multilabel" else "one-hot"
    return (f"labels from {len(cols)} 0/1 columns {', '.join(printable(c) for c in cols)} ({kind}, {task}; {how})"
            + _ignored(header, set(cols), img_col, other_cols))


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
            if ext.lower() in IMAGE_EXTENSIONS + (".dcm",) and not is_hidden(e.name):
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
    if any(is_hidden(part) for part in Path(os.path.relpath(cand_abs, root_abs)).parts):
        return os.path.relpath(candidate, root), "hidden file or folder (names starting with '.' are never read)"
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
