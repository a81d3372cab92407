"""A dataset as `index` sees it (``Dataset``: ids, image sources, labels, groups, splits), and the two layouts
read from the file system alone: one sub-folder per class (ImageFolder), and a MedMNIST-style ``.npz``.
A class folder's images include DICOM files: named .dcm (or .dicom, .dic, .ima), or of any other name when
their content says DICOM (a 132-byte read; hospital exports often have no extension)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageError, MedsearchError
from ..storage.store import LabelledRows
from .images import IMAGE_EXTENSIONS, array_to_image
from .sources import RowSource, file_and_frame, open_source, uri_scheme

# Names a scan never enters or reads: dot files and folders (.ipynb_checkpoints, .DS_Store, ._x.png resource forks,
# .~lock.labels.csv#) and macOS archive debris. A checkpoint copy beside its original is an exact duplicate
# that could land on both sides of a split.
JUNK_NAMES = ("__MACOSX",)
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic", ".ima")
DICOMDIR = "DICOMDIR"  # a DICOM export's index file: a DICOM file without pixels, never a row
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
class Dataset(LabelledRows):
    """Everything `index` stores about the rows of a dataset. ``sources[i]`` is a path relative to ``root``
    (or ``split/index`` inside an npz); ``missing[i]`` gives why a row's image could not be located.
    ``reading`` says in one line how the labels were read; ``dropped`` lists manifest rows that cannot be
    stored at all (id as written, reason). ``pixels`` (dicom.PixelOptions) says how DICOM rows are windowed."""

    root: str = field(kw_only=True)
    layout: str = field(kw_only=True)
    missing: dict[int, str] = field(default_factory=dict)
    manifest: str | None = None
    reading: str = ""
    dropped: list[tuple[str, str]] = field(default_factory=list)
    pixels: object = None
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def path(self, i: int) -> str | None:
        """File of row ``i`` on this machine (None for an npz row, and for a URI read where it is); a frame
        row's file is its multi-frame DICOM file."""
        if self._arrays is not None or uri_scheme(self.sources[i]):
            return None
        return file_and_frame(os.path.join(self.root, self.sources[i]))[0]

    def is_uri(self, i: int) -> bool:
        return self._arrays is None and uri_scheme(self.sources[i]) is not None

    def row_source(self) -> RowSource:
        """How another process (a Ray worker) opens this dataset's rows."""
        return RowSource(self.root, npz=self._arrays is not None, pixels=self.pixels)

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
        return open_source(self.root, self.sources[i], draft_size=draft_size, pixels=self.pixels)


def is_image_file(folder: str | os.PathLike, name: str) -> bool:
    """An image by its name, or a DICOM file by its name or content (never a DICOMDIR or a hidden file)."""
    if is_hidden(name) or name == DICOMDIR:
        return False
    ext = os.path.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS or ext in DICOM_EXTENSIONS:
        return True
    from .dicom.files import is_dicom

    return is_dicom(os.path.join(folder, name))


def has_images(folder: Path) -> bool:
    try:
        return any(is_image_file(folder, f.name) for f in folder.iterdir() if not f.is_dir())
    except OSError:
        return False


def scan_folders(root: Path) -> Dataset:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not is_hidden(d.name) and has_images(d))
    if len(classes) < 2:
        raise MedsearchError(f"'{root}' needs at least two class sub-folders with images (found {len(classes)})")
    sources, labels = [], []
    for c, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))  # never enter .ipynb_checkpoints & co
            for f in sorted(filenames):
                if is_image_file(dirpath, f):
                    sources.append(os.path.relpath(os.path.join(dirpath, f), root))
                    labels.append(c)
    task = "binary" if len(classes) == 2 else "multiclass"
    reading = f"one sub-folder per class: {', '.join(classes)} ({task})"
    return Dataset(list(sources), sources, np.asarray(labels, np.int64), classes, task, root=str(root.resolve()),
                   layout="folders", reading=reading)


def scan_npz(path: Path) -> Dataset:
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
    ds = Dataset(list(sources), sources, labels, names, task, splits=split_names, root=str(path.resolve()),
                 layout="npz", reading=reading)
    ds._arrays = images
    return ds

