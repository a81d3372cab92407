"""Tests for medsearch.ingest.layouts: the folders and npz layouts, and the names a scan never reads."""

import numpy as np

from medsearch.ingest.datasets import scan

from ..conftest import make_image, needs_shared


def test_folders(folder_dataset):
    ds = scan(folder_dataset)
    assert ds.layout == "folders" and ds.task == "binary"
    assert ds.label_names == ["benign", "malignant"] and len(ds) == 24
    assert (ds.labels == np.repeat([0, 1], 12)).all()
    assert ds.open(0).mode == "RGB"


def test_npz_keeps_official_split():
    ds = scan(needs_shared("medmnist", "breastmnist.npz"))
    assert ds.layout == "npz" and ds.task == "binary" and len(ds) == 780
    assert [ds.splits.count(s) for s in ("train", "val", "test")] == [546, 78, 156]
    assert ds.label_names == ["malignant", "normal, benign"]
    assert ds.open(0).size == (28, 28)


def test_hidden_files_and_folders_are_never_read(tmp_path):
    root = tmp_path / "ds"
    for c in ("benign", "malignant"):
        (root / c / ".ipynb_checkpoints").mkdir(parents=True)
        make_image(root / c / "b1.png", 0, 1)
        make_image(root / c / ".ipynb_checkpoints" / "b1-checkpoint.png", 0, 1)
        make_image(root / c / "._b1.png", 0, 1)
    (root / ".trash").mkdir()
    make_image(root / ".trash" / "x.png", 0, 2)
    (root / "__MACOSX").mkdir()
    make_image(root / "__MACOSX" / "y.png", 0, 2)
    ds = scan(root)
    assert ds.label_names == ["benign", "malignant"] and sorted(ds.sources) == ["benign/b1.png", "malignant/b1.png"]
