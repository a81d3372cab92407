"""DICOM rows that come from no class folder or manifest: a plain folder tree (or the files a DICOMDIR lists)
labelled by a header keyword (``--label-tag``), and multi-frame files split into one row per frame
(``--frames all``).

Scanning stays cheap at a million files: a file is recognised by its 132-byte marker, and only headers are read
(no pixel data), and only when labels or frame counts are needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...display import printable
from ...errors import ImageError, MedsearchError
from .files import FRAME_SEP, is_dicom

LABEL_FLAGS = "--label-tag KEYWORD (e.g. --label-tag BodyPartExamined) or a CSV manifest (--manifest)"


def dicom_tree_files(root: Path) -> list[str]:
    """Paths (relative to ``root``) of the DICOM files of a plain tree: those its DICOMDIR lists, else every file
    whose content is DICOM (hidden names and DICOMDIR files left out), in sorted order."""
    from ..layouts import DICOMDIR, is_hidden

    if (root / DICOMDIR).is_file():
        return _dicomdir_files(root / DICOMDIR, root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for f in sorted(filenames):
            if not is_hidden(f) and f != DICOMDIR and is_dicom(os.path.join(dirpath, f)):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return out


def _dicomdir_files(dicomdir: Path, root: Path) -> list[str]:
    try:
        from pydicom.fileset import FileSet

        fs = FileSet(str(dicomdir))
        paths = [Path(inst.path) for inst in fs if str(getattr(inst, "DirectoryRecordType", "IMAGE")) == "IMAGE"]
    except ImportError:
        raise MedsearchError("reading a DICOMDIR needs pydicom: pip install 'medsearch[dicom]'") from None
    except Exception as exc:  # a damaged DICOMDIR
        raise MedsearchError(f"cannot read '{printable(str(dicomdir))}' as a DICOMDIR "
                             f"({' '.join(str(exc).split())[:200]}): move it away to scan the folder tree") from None
    root_abs = os.path.realpath(root)
    out = []
    for p in paths:
        real = os.path.realpath(p)
        if real.startswith(root_abs + os.sep) and os.path.isfile(real):  # a record never leads out of the export
            out.append(os.path.relpath(os.path.normpath(os.path.abspath(p)), os.path.abspath(root)))
    return sorted(set(out))


def check_label_tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    if tag_for_keyword(keyword) is None:
        raise MedsearchError(f"--label-tag '{printable(keyword)}' is not a DICOM keyword: give one such as "
                             "BodyPartExamined, Modality or ViewPosition")
    return keyword


def scan_dicom_tree(root: Path, label_tag: str | None):
    """A plain tree of DICOM files, one class per distinct value of header keyword ``label_tag``; files whose
    header lacks it (or cannot be read) are listed in ``dropped``."""
    from ..layouts import Dataset

    files = dicom_tree_files(root)
    if not files:
        raise MedsearchError(f"no DICOM file found under '{printable(str(root))}'")
    if not label_tag:
        raise MedsearchError(f"'{printable(str(root))}' is a tree of DICOM files with no labels of its own: take "
                             f"them from {LABEL_FLAGS}")
    check_label_tag(label_tag)
    values, kept, dropped = [], [], []
    for rel in files:
        value, why = _header_value(root / rel, label_tag)
        if why:
            dropped.append((rel, why))
        else:
            kept.append(rel)
            values.append(value)
    names = sorted(set(values))
    if len(names) < 2:
        raise MedsearchError(f"--label-tag {label_tag} gives {len(names)} distinct value(s) "
                             f"({printable(', '.join(names))[:80]}) over {len(files)} DICOM files: a class needs "
                             "another, choose another keyword or give a CSV manifest")
    code = {n: c for c, n in enumerate(names)}
    task = "binary" if len(names) == 2 else "multiclass"
    reading = (f"labels from the DICOM header keyword {label_tag} ({task}, {len(names)} classes: "
               f"{printable(', '.join(names[:8]))}{', ...' if len(names) > 8 else ''})")
    return Dataset(list(kept), list(kept), np.asarray([code[v] for v in values], np.int64), names, task,
                   root=str(root.resolve()), layout="dicom", reading=reading, dropped=dropped)


def _header_value(path: Path, keyword: str) -> tuple[str, str | None]:
    from .pixels import read_dataset

    try:
        ds = read_dataset(path, pixels=False)
    except ImageError as exc:
        return "", str(exc)
    value = ds.get(keyword)
    text = "\\".join(str(v) for v in value) if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and \
        not isinstance(value, (str, bytes)) else str(value if value is not None else "")
    text = text.strip()
    if not text:
        return "", f"its header has no {keyword}"
    if "\x00" in text:
        return "", f"its {keyword} contains a NUL byte"
    return text, None


def expand_frames(ds) -> None:
    """``--frames all``: each local multi-frame DICOM row becomes one row per frame, keyed and sourced
    'id#frame' / 'source#frame' (frame from 0), with its label, group and split. Headers only are read."""
    from .pixels import number_of_frames, read_dataset

    counts = []
    for i in range(len(ds)):
        path = None if i in ds.missing else ds.path(i)
        n = 1
        if path and is_dicom(path):
            try:
                n = number_of_frames(read_dataset(path, pixels=False))
            except ImageError:
                n = 1  # decoding the row says why
        counts.append(n)
    if all(n == 1 for n in counts):
        return
    take = np.repeat(np.arange(len(ds)), counts)
    frame = np.concatenate([np.arange(n) if n > 1 else [-1] for n in counts])
    name = lambda s, k: s if k < 0 else f"{s}{FRAME_SEP}{k}"  # noqa: E731
    ds.ids = [name(ds.ids[i], k) for i, k in zip(take, frame)]
    ds.sources = [name(ds.sources[i], k) for i, k in zip(take, frame)]
    ds.labels = ds.labels[take]
    ds.groups = None if ds.groups is None else [ds.groups[i] for i in take]
    ds.splits = None if ds.splits is None else [ds.splits[i] for i in take]
    old_missing, ds.missing = ds.missing, {}
    for j, i in enumerate(take):
        if int(i) in old_missing:
            ds.missing[j] = old_missing[int(i)]
    ds.reading += f"; multi-frame files as one row per frame ({len(take) - len(counts)} rows added)"
