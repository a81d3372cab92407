"""Read what `medsearch index DIR` points at into one `Dataset`: ids, image sources, labels, groups, splits.

Three layouts, auto-detected (override with ``layout=``):
- ``folders``: one sub-folder per class (ImageFolder);
- ``csv``: images plus a CSV manifest with an image column, one label column or one 0/1 column per label,
  and an optional group column (patient or lesion id);
- ``npz``: a MedMNIST-style ``.npz`` with ``train_/val_/test_`` keys; the official split is kept.

DICOM files count as images in class folders and manifests. A plain tree of DICOM files (or a DICOMDIR export)
has no labels of its own (the ``dicom`` layout): ``label_tag`` takes them from a header keyword, and without it
the scan stops naming that flag. ``frames='all'`` makes each
multi-frame DICOM file one row per frame (dicom/tree.py).

layouts.py holds ``Dataset`` and reads folders and npz files; manifest.py reads the csv layout, with
columns.py for its labels and image_paths.py for its image files.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MedsearchError
from ..storage.schema import LAYOUTS, TASKS
from ..storage.schema import MAX_LABEL_NAMES
from .dicom.files import is_dicom
from .dicom.tree import expand_frames, scan_dicom_tree
from .layouts import DICOMDIR, Dataset, has_images, is_hidden, scan_folders, scan_npz
from .manifest import scan_csv

__all__ = ["LAYOUT_CHOICES", "scan"]

LAYOUT_CHOICES = ("auto", *LAYOUTS)  # what --layout accepts: a stored layout, or detection
DICOM_TREE = "dicom"  # a plain tree of DICOM files or a DICOMDIR export, labelled by --label-tag


def scan(path: str | os.PathLike, *, layout: str = "auto", manifest: str | None = None,
         image_col: str | None = None, label_col: str | None = None, label_cols: list[str] | None = None,
         group_col: str | None = None, split_col: str | None = None, images_dir: str | None = None,
         task: str | None = None, label_tag: str | None = None, frames: str = "middle") -> Dataset:
    """Scan a dataset folder (or an .npz / .csv file) and return its rows. Raises MedsearchError on bad input."""
    root = Path(path)
    if not root.exists():
        raise MedsearchError(f"dataset path '{path}' does not exist: give a folder of images, a CSV manifest or an .npz file")
    if layout not in LAYOUT_CHOICES:
        raise MedsearchError(f"unknown layout '{layout}': use one of {', '.join(LAYOUT_CHOICES)}")
    if task is not None and task not in TASKS:
        raise MedsearchError(f"unknown task '{task}': use one of {', '.join(TASKS)}")
    if label_tag and (manifest or layout not in ("auto", "folders", DICOM_TREE) or root.is_file()):
        raise MedsearchError("--label-tag labels a plain folder tree of DICOM files from their headers; a manifest "
                             "or .npz has its own labels: drop --label-tag or the manifest")
    layout = _detect_layout(root, manifest, label_tag) if layout == "auto" else layout
    if layout == "npz":
        ds = scan_npz(root)
    elif layout == "csv":
        ds = scan_csv(root, manifest, image_col, label_col, label_cols, group_col, split_col, images_dir)
    elif layout == DICOM_TREE or label_tag:
        ds = scan_dicom_tree(root, label_tag)
    else:
        ds = scan_folders(root)
    if frames == "all":
        expand_frames(ds)
    if len(ds.label_names) > MAX_LABEL_NAMES:
        raise MedsearchError(f"the dataset has {len(ds.label_names)} classes, more than the {MAX_LABEL_NAMES} medsearch "
                             "supports: is the label column an id? name the right one with --label-col or --label-cols")
    if task is not None and task != ds.task:
        ds.task = _check_task(task, ds)
        ds.reading += f"; task set to {task} by --task"
    return ds


def _detect_layout(root: Path, manifest: str | None, label_tag: str | None = None) -> str:
    if root.is_file():
        if root.suffix == ".npz":
            return "npz"
        if root.suffix == ".csv":
            return "csv"
        raise MedsearchError(f"'{root}' is a file, not a dataset: give a folder, a CSV manifest or an .npz file")
    if manifest:
        return "csv"
    if label_tag or (root / DICOMDIR).is_file():
        return DICOM_TREE
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise MedsearchError(f"cannot list '{root}': {exc.strerror}; check the path and its permissions") from None
    entries = [e for e in entries if not is_hidden(e.name)]
    npz = [e for e in entries if e.is_file() and e.name.endswith(".npz")]
    csvs = [e for e in entries if e.is_file() and e.name.endswith(".csv")]
    class_dirs = [e for e in entries if e.is_dir() and has_images(Path(e.path))]
    if len(class_dirs) >= 2:
        return "folders"
    if csvs:
        return "csv"
    if len(npz) == 1:
        return "npz"
    if len(npz) > 1:
        raise MedsearchError(f"'{root}' holds several .npz files: pass one of them as the dataset path")
    if _has_dicom(root):
        return DICOM_TREE  # whose scan stops, naming --label-tag and --manifest
    raise MedsearchError(f"no dataset found in '{root}': expected one sub-folder of images per class, "
                         "images with a CSV manifest, or a MedMNIST .npz")


def _has_dicom(root: Path) -> bool:
    """Any DICOM file under ``root`` (stops at the first)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        if any(not is_hidden(f) and is_dicom(os.path.join(dirpath, f)) for f in filenames):
            return True
    return False


def _check_task(task: str, ds: Dataset) -> str:
    if task == "multilabel" and ds.labels.ndim != 2:
        raise MedsearchError("--task multilabel needs one 0/1 column per label (use --label-cols)")
    if task != "multilabel" and ds.labels.ndim == 2:
        raise MedsearchError(f"--task {task} needs a single label per image, but the manifest has several label columns")
    if task == "binary" and len(ds.label_names) != 2:
        raise MedsearchError(f"--task binary needs exactly two classes, found {len(ds.label_names)}")
    return task
