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
