import csv

import numpy as np
import pytest

from medsearch.datasets import scan
from medsearch.errors import ImageError, MedsearchError

from .conftest import make_image, needs_shared


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_folders(folder_dataset):
    ds = scan(folder_dataset)
    assert ds.layout == "folders" and ds.task == "binary"
    assert ds.label_names == ["benign", "malignant"] and len(ds) == 24
    assert (ds.labels == np.repeat([0, 1], 12)).all()
    assert ds.open(0).mode == "RGB"


def test_csv_string_labels_groups_and_stems(csv_dataset):
    ds = scan(csv_dataset)
    assert ds.layout == "csv" and ds.task == "multiclass"
    assert ds.label_names == ["bcc", "melanoma", "nevus"]
    assert ds.groups[:4] == ["p0", "p0", "p1", "p1"]
    assert ds.sources[0] == "images/img000.jpg" and not ds.missing


def test_csv_missing_files_reported(csv_dataset):
    (csv_dataset / "images" / "img004.jpg").unlink()
    ds = scan(csv_dataset)
    assert ds.missing == {4: "file not found"}
    with pytest.raises(ImageError, match="not found"):
        ds.open(4)


def test_csv_one_hot_is_multiclass_and_multi_hot_is_multilabel(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        make_image(tmp_path / "images" / f"{i}.png", i % 2, i)
    _write_csv(tmp_path / "labels.csv", ["image", "A", "B", "C"], [["0.png", 1, 0, 0], ["1.png", 0, 1, 0], ["2.png", 0, 0, 1], ["3.png", 1, 0, 0]])
    ds = scan(tmp_path)
    assert ds.task == "multiclass" and ds.label_names == ["A", "B", "C"] and ds.labels.tolist() == [0, 1, 2, 0]
    _write_csv(tmp_path / "labels.csv", ["filename", "ID", "A", "B"], [["0.png", 7, 1, 1], ["1.png", 7, 0, 1], ["2.png", 8, 0, 0], ["3.png", 8, 1, 0]])
    ds = scan(tmp_path)
    assert ds.task == "multilabel" and ds.labels.shape == (4, 2) and ds.groups == ["7", "7", "8", "8"]


@pytest.mark.parametrize("header,rows,match", [
    (["image", "notes"], [["0.png", "x"]], "no label column"),
    (["picture", "label"], [["0.png", "a"]], "no image column"),
    (["image", "label"], [["0.png", "a"], ["0.png", "b"]], "twice"),
    (["image", "label"], [["0.png", "a"], ["1.png", ""]], "empty 'label'"),
    (["image", "label"], [["nothere.png", "a"], ["nor.png", "b"]], "none of the 2 images"),
])
def test_csv_errors(tmp_path, header, rows, match):
    make_image(tmp_path / "0.png", 0, 0)
    make_image(tmp_path / "1.png", 1, 1)
    _write_csv(tmp_path / "labels.csv", header, rows)
    with pytest.raises(MedsearchError, match=match):
        scan(tmp_path)


def test_manifest_path_escape_is_refused(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    make_image(root / "ok.png", 0, 0)
    make_image(tmp_path / "outside.png", 1, 1)
    _write_csv(root / "labels.csv", ["image", "label"], [["ok.png", "a"], ["../outside.png", "b"], ["/etc/passwd", "b"]])
    ds = scan(root)
    assert ds.missing[1] == "path escapes the dataset folder"
    assert "absolute path" in ds.missing[2]


def test_named_label_column_override(csv_dataset):
    with pytest.raises(MedsearchError, match="no column 'dx'"):
        scan(csv_dataset, label_col="dx")


@pytest.mark.parametrize("setup,match", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no dataset found"),
])
def test_bad_paths(tmp_path, setup, match):
    p = tmp_path / "d"
    setup(p)
    with pytest.raises(MedsearchError, match=match):
        scan(p)


def test_npz_keeps_official_split():
    ds = scan(needs_shared("medmnist", "breastmnist.npz"))
    assert ds.layout == "npz" and ds.task == "binary" and len(ds) == 780
    assert [ds.splits.count(s) for s in ("train", "val", "test")] == [546, 78, 156]
    assert ds.label_names == ["malignant", "normal, benign"]
    assert ds.open(0).size == (28, 28)


def test_real_layouts_detected():
    busi = scan(needs_shared("breast-busi"))
    assert busi.layout == "folders" and busi.label_names == ["benign", "malignant", "normal"] and len(busi) == 780
    odir = scan(needs_shared("retina-odir"))
    assert odir.task == "multilabel" and odir.label_names == list("NDGCAHMO") and odir.groups is not None
    skin = scan(needs_shared("skin-isic2018"))
    assert skin.task == "multiclass" and skin.label_names == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert (skin.labels[:2] == [1, 4]).all() and not skin.missing
