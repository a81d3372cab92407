"""Which files are DICOM, and how a row names one frame of a multi-frame file.

A DICOM file is recognised by its content (the 'DICM' marker after the 128-byte preamble), not its name: hospital
exports often have no extension at all.
"""
from __future__ import annotations

import os

FRAME_SEP = "#"  # a row of one frame of a multi-frame file is keyed and sourced 'path#frame' (frame from 0)


def is_dicom(path: str | os.PathLike) -> bool:
    """True if ``path`` is a readable file with the DICOM Part 10 marker."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def split_frame(source: str) -> tuple[str, int | None]:
    """'a/b.dcm#3' -> ('a/b.dcm', 3); a source without a frame suffix -> (source, None)."""
    path, sep, frame = source.rpartition(FRAME_SEP)
    if sep and frame.isdigit():
        return path, int(frame)
    return source, None
