"""Tests for medsearch.ingest.image_paths: where the images a manifest names are, and which are refused."""

import pytest

from medsearch.ingest.datasets import scan
from medsearch.errors import ImageError

from ..conftest import make_image
from .conftest import write_csv


def test_csv_missing_files_reported(csv_dataset):
    (csv_dataset / "images" / "img004.jpg").unlink()
    ds = scan(csv_dataset)
    assert ds.missing == {4: "file not found"}
    with pytest.raises(ImageError, match="not found"):
        ds.open(4)


def test_manifest_path_escape_is_refused(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    make_image(root / "ok.png", 0, 0)
    make_image(tmp_path / "outside.png", 1, 1)
    write_csv(root / "labels.csv", ["image", "label"], [["ok.png", "a"], ["../outside.png", "b"], ["/etc/passwd", "b"]])
    ds = scan(root)
    assert ds.missing[1] == "path escapes the dataset folder"
    assert "absolute path" in ds.missing[2]


def test_hidden_files_named_by_a_manifest_are_reported_not_read(tmp_path):
    (tmp_path / "images" / ".cache").mkdir(parents=True)
    for name in ("0.png", "1.png", ".2.png", ".cache/3.png"):
        make_image(tmp_path / "images" / name, 0, 0)
    write_csv(tmp_path / "labels.csv", ["image", "label"], [["0.png", "a"], ["1.png", "b"], [".2.png", "a"], [".cache/3.png", "b"]])
    (tmp_path / ".~lock.labels.csv#").write_text("x")  # LibreOffice's lock file is no second manifest
    ds = scan(tmp_path)
    assert sorted(ds.missing) == [2, 3] and all("hidden" in why for why in ds.missing.values())
