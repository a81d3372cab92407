"""Tests for medsearch.ingest.duplicates (issue 12, defect 4): byte-identical files and identical embeddings
are reported."""

import numpy as np

from medsearch.storage.store import read_store

from ..conftest import index_tiny, needs_shared
from .conftest import two_classes


def test_real_busi_duplicate_with_two_labels_is_reported(tmp_path, tiny):
    busi = needs_shared("breast-busi")
    summary = index_tiny(busi, tmp_path / "out", workers=2)
    dup = summary.duplicates
    assert dup.identical_files == 1 and dup.with_conflicting_labels == 1
    assert sorted(r["id"] for r in dup.groups[0]) == ["benign/benign (433).png", "malignant/malignant (145).png"]
    data = read_store(tmp_path / "out")
    assert len(data.sha256) == 780 and all(len(s) == 64 for s in data.sha256)


def test_identical_embeddings_are_warned_about(tmp_path, tiny, monkeypatch):
    import medsearch.ingest.indexing as index_module
    from ..conftest import TinyEncoder

    class Flat(TinyEncoder):
        def encode(self, batch):
            return np.ones((len(batch), 3), np.float32)

    monkeypatch.setattr(index_module, "load_encoder", lambda *a, **k: Flat())
    summary = index_tiny(two_classes(tmp_path / "ds"), tmp_path / "out")
    assert summary.models["tiny"].identical_embeddings["all_identical"]
    again = index_tiny(tmp_path / "ds", tmp_path / "out")  # a run that embeds nothing does not hash every row again
    assert again.models["tiny"].identical_embeddings == {"checked": False, "why": "nothing was embedded in this run"}


def test_frames_of_one_multiframe_file_are_not_duplicates(tmp_path, tiny, capsys):
    """`--frames all`: a file's frames share its sha256 but are one file; an identical copy is still reported."""
    import shutil

    from pydicom import uid as U

    from .dicom.writers import busi_grey, dataset, write

    needs_shared("breast-busi")
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    frames = np.stack([busi_grey(i) for i in (5, 6, 7)])
    write(root / "a" / "cine.dcm", dataset(frames, frames=3), U.RLELossless, frames)
    write(root / "b" / "one.dcm", dataset(busi_grey(8)))
    summary = index_tiny(root, tmp_path / "out", frames="all")
    assert len(read_store(tmp_path / "out").ids) == 4
    assert summary.duplicates.identical_files == 0 and summary.duplicates.groups == []
    assert "byte-identical" not in capsys.readouterr().err

    shutil.copy(root / "a" / "cine.dcm", root / "b" / "copy.dcm")
    summary = index_tiny(root, tmp_path / "out2", frames="all")
    dup = summary.duplicates
    assert dup.identical_files == 1 and dup.rows == 6 and dup.with_conflicting_labels == 1
    assert sorted(r["id"] for r in dup.groups[0]) == sorted(
        [f"a/cine.dcm#{k}" for k in range(3)] + [f"b/copy.dcm#{k}" for k in range(3)])
    assert "1 groups of byte-identical images" in capsys.readouterr().err
