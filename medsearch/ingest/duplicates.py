"""Duplicates among a dataset's rows, reported by `index`: byte-identical files, and different files whose
embeddings are bit-identical. A duplicate can fall on both sides of a split and inflate every score."""
from __future__ import annotations

import hashlib

import numpy as np

from ..display import printable
from ..storage.schema import EMBEDDED
from ..storage.store import ModelData, StoreData
from .dicom.files import split_frame
from .dicom.pixel_options import pixel_options_of
from .fingerprints import duplicate_groups
from .index_summary import REPORT_FILE, Duplicates
from .log import warn

DIGEST_BLOCK = 65_536  # rows of embeddings read at a time


def file_duplicates(data: StoreData, row_of: np.ndarray) -> Duplicates:
    """Byte-identical images among the dataset's rows (``row_of`` maps dataset index -> store row); a group
    with two labels is a labelling error as well. With ``--frames all`` the frames of one file share its sha256:
    such a group is one file, not a duplicate, and is left out (frames of two identical files are kept)."""
    groups = [[int(row_of[p]) for p in g] for g in duplicate_groups([data.sha256[r] for r in row_of])]
    if pixel_options_of(data.attrs).frames == "all":
        groups = [g for g in groups if not _frames_of_one_file(data, g)]
    out = Duplicates(identical_files=len(groups), rows=sum(len(g) for g in groups),
                     with_conflicting_labels=sum(1 for g in groups if len({_label_text(data, r) for r in g}) > 1),
                     groups=[[{"id": data.ids[r], "labels": _label_text(data, r)} for r in g] for g in groups])
    if groups:
        first = " = ".join(f"{printable(data.ids[r])} ({printable(_label_text(data, r))})" for r in groups[0][:3])
        warn(f"{len(groups)} groups of byte-identical images ({out.rows} rows, "
             f"{out.with_conflicting_labels} with conflicting labels), e.g. {first}: duplicates can fall on both "
             f"sides of a split and inflate scores; all are listed in {REPORT_FILE}")
    return out


def embedding_duplicates(data: StoreData, m: ModelData, key: str, row_of: np.ndarray) -> dict:
    """Rows of the dataset whose embeddings are bit-identical although their files differ: the same pixels at
    the encoder's input (a re-saved copy, or one image at two sizes). When every embedding is the same the
    index cannot tell images apart at all (e.g. a preprocessing that leaves nothing of the image)."""
    rows = [int(r) for r in row_of if m.state[r] == EMBEDDED]
    digests = []
    for start in range(0, len(rows), DIGEST_BLOCK):  # read by blocks: the embeddings may be on disk
        block = m.embedding[np.asarray(rows[start:start + DIGEST_BLOCK], dtype=np.int64)]
        digests += [hashlib.blake2b(v.tobytes(), digest_size=16).hexdigest() for v in block]
    groups = [[rows[p] for p in g] for g in duplicate_groups(digests)]
    groups = [g for g in groups if len({data.sha256[r] for r in g}) > 1]  # byte-identical files are reported already
    out = {"groups": len(groups), "rows": sum(len(g) for g in groups),
           "examples": [[data.ids[r] for r in g] for g in groups[:100]]}
    if len(rows) > 1 and len(set(digests)) == 1:
        warn(f"{key}: all {len(rows)} embeddings are identical, so every search ties: the preprocessing "
             "(--resize, --crop, --norm) or the weights leave nothing of the images; re-index with other settings")
        out["all_identical"] = True
    elif groups:
        first = " = ".join(printable(data.ids[r]) for r in groups[0][:3])
        warn(f"{key}: {len(groups)} groups of images with identical embeddings but different files ({out['rows']} "
             f"rows), e.g. {first}: the same pixels at the encoder's input; they can leak across a split")
    return out


def _frames_of_one_file(data: StoreData, rows: list[int]) -> bool:
    """True if every row is a frame ('path#k') of the same file."""
    parts = [split_frame(data.sources[r]) for r in rows]
    return all(k is not None for _, k in parts) and len({path for path, _ in parts}) == 1


def _label_text(data: StoreData, row: int) -> str:
    return "+".join(data.labels_of(row)) or "-"
