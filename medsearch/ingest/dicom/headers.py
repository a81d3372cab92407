"""DICOM headers as a store may keep them: patient, study and series as keyed hashes (identifiers.py), and a few
non-identifying fields (storage.schema.HEADER_FIELDS). Nothing else of a header is read into memory: pydicom
parses only the tags below (``specific_tags``) and stops before the pixels, so names, birth dates, addresses,
accession numbers, institutions and free text are never even decoded, let alone stored."""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ...display import printable
from ...storage.row_headers import RowHeaders, stored_id_record
from ...storage.schema import HEADER_COLUMNS, HEADER_FIELDS, MAX_HEADER_VALUE, NO_PATIENT_GROUP
from ..log import log, warn
from .files import is_dicom, split_frame
from .identifiers import resolve_key

IDENTIFIERS = ("PatientID", "IssuerOfPatientID", "StudyInstanceUID", "SeriesInstanceUID")
TAGS = IDENTIFIERS + HEADER_FIELDS + ("ImageLaterality",)   # everything pydicom is asked to parse
NOT_DICOM = frozenset((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".npz", ".csv"))


def attach_headers(ds, out_dir: Path, id_key: str | None, *, workers: int = 8, progress: bool = True) -> None:
    """For a dataset with DICOM rows: read each DICOM row's header (no pixels) and set ``ds.groups`` to the keyed
    hash of PatientID (unless a group column already gave groups), with the hashed study and series and the stored
    non-identifying fields in ``ds.header``. Raw identifiers are never kept. ``id_key``: the path of the key file
    (--id-key), None for the key beside the store. A dataset without DICOM rows is left as it is.

    A row whose header has no PatientID (or that is not DICOM, in a mixed dataset) gets a group of its own (the
    frames of one file, `--frames all`, share one), said in the log: a split keeps it whole but cannot know which
    other images share its patient."""
    files = _dicom_files(ds)
    if not files:
        return
    record = stored_id_record(out_dir) or {}
    key = resolve_key(out_dir, id_key, record.get("key_check"))
    headers = _read_headers(sorted(set(files.values())), workers, progress)
    columns: dict[str, list[str]] = {c: [""] * len(ds) for c in HEADER_COLUMNS}
    groups = [""] * len(ds)
    no_patient = unreadable = 0
    for i in range(len(ds)):
        h = headers.get(files.get(i))
        unreadable += h is None and i in files
        h = h or {}
        for c in HEADER_FIELDS:
            columns[c][i] = h.get(c, "")
        for c, tag in (("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID")):
            columns[c][i] = key.hash(c, h[tag]) if h.get(tag) else ""
        if h.get("PatientID"):
            groups[i] = key.hash("patient", h.get("IssuerOfPatientID", "") + "\0" + h["PatientID"])
        else:
            no_patient += 1
            groups[i] = NO_PATIENT_GROUP + key.hash("row", split_frame(ds.ids[i])[0])  # a file's frames: one group
    by_dataset = ds.groups is not None
    if not by_dataset:
        ds.groups = groups
    ds.header = RowHeaders(columns, key.record("the dataset's group column" if by_dataset
                                              else "PatientID (keyed hash)"))
    _report(len(ds), len(files), len(headers), unreadable, no_patient, by_dataset, key)


def _dicom_files(ds) -> dict[int, str]:
    """Row -> its DICOM file, for the rows that are local DICOM files (a frame row names its file). Files with an
    ordinary image extension are not opened; a dataset without any DICOM costs no reads."""
    out: dict[int, str] = {}
    checked: dict[str, bool] = {}
    for i in range(len(ds)):
        path = ds.path(i) if i not in ds.missing else None
        if path is None:
            continue
        path = split_frame(path)[0]
        if os.path.splitext(path)[1].lower() in NOT_DICOM:
            continue
        if path not in checked:
            checked[path] = is_dicom(path)
        if checked[path]:
            out[i] = path
    return out


def _read_headers(paths: list[str], workers: int, progress: bool) -> dict[str, dict[str, str]]:
    """File -> its header values (TAGS only), for the files whose header could be read."""
    bar = tqdm(total=len(paths), unit="file", desc="dicom headers", disable=not progress or not paths,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
    out = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="dicom-header") as pool:
        for path, values in zip(paths, pool.map(read_header, paths)):
            if values is not None:
                out[path] = values
            bar.update(1)
    bar.close()
    return out


def read_header(path: str) -> dict[str, str] | None:
    """The values of TAGS in the file's header as plain short strings ('' dropped); None when unreadable."""
    import pydicom

    try:
        d = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(TAGS))
        values = {tag: _text(d.get(tag)) for tag in TAGS if tag in d}
    except Exception:  # a damaged header: the row keeps no header values; its pixels report the reason
        return None
    if not values.get("Laterality") and values.get("ImageLaterality"):
        values["Laterality"] = values["ImageLaterality"]
    values.pop("ImageLaterality", None)
    return {k: v for k, v in values.items() if v}


def _text(element) -> str:
    """An element's value as one printable line: multiple values joined by '\\' as DICOM writes them."""
    value = getattr(element, "value", element)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = "".join(ch if ch.isprintable() else " " for ch in str(value)).strip()
    return text[:MAX_HEADER_VALUE]


def _report(rows: int, dicom_rows: int, files: int, unreadable: int, no_patient: int, by_dataset: bool, key) -> None:
    log(f"  DICOM headers: {files} files read for {dicom_rows} of {rows} rows; stored: the hashed study and series "
        f"and {', '.join(HEADER_FIELDS)} (no names, dates, accession numbers, institutions or free text)")
    log(f"  identifiers hashed with the id key {printable(key.path)} (keep it; it is not in the index folder)")
    if unreadable:
        warn(f"{unreadable} DICOM rows have a header that could not be read: no header values stored for them")
    if no_patient and not by_dataset:
        warn(f"{no_patient} of {rows} rows have no PatientID: each is its own group, so a split keeps it whole but "
             "images of one such patient may land on both sides; give a group column (--group-col) to group them")
