"""DICOM headers as a store may keep them: patient, study and series as keyed hashes, and a few non-identifying
fields. (Interface agreed for issue 18; the implementation is being written.)"""
from __future__ import annotations

from pathlib import Path


def attach_headers(ds, out_dir: Path, id_key: str | None) -> None:
    """For a dataset with DICOM rows: read each DICOM row's header (no pixels) and set ``ds.groups`` to the keyed
    hash of PatientID (unless a group column already gave groups), with the hashed study and series and the stored
    non-identifying fields. Raw identifiers are never kept."""
    return None
