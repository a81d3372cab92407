"""Tests for medsearch.ingest.manifest: the csv layout (columns, groups, rows that cannot be stored)."""

import pytest

from medsearch.ingest.datasets import scan
from medsearch.errors import MedsearchError

from ..conftest import make_image
from .conftest import write_csv, write_images


def test_csv_string_labels_groups_and_stems(csv_dataset):
    ds = scan(csv_dataset)
    assert ds.layout == "csv" and ds.task == "multiclass"
    assert ds.label_names == ["bcc", "melanoma", "nevus"]
    assert ds.groups[:4] == ["p0", "p0", "p1", "p1"]
    assert ds.sources[0] == "images/img000.jpg" and not ds.missing


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
    write_csv(tmp_path / "labels.csv", header, rows)
    with pytest.raises(MedsearchError, match=match):
        scan(tmp_path)


def test_nul_byte_in_a_manifest_row_drops_that_row_with_its_reason(tmp_path):
    write_images(tmp_path)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        f.write("image,label,patient_id\n0.png,a,p1\n1.png,b,p1\nbad\x00name.png,a,p2\n2.png,b,p\x002\n3.png,a,p3\n")
    ds = scan(tmp_path)
    assert ds.ids == ["0.png", "1.png", "3.png"]
    assert [why for _, why in ds.dropped] == ["its 'image' value contains a NUL byte",
                                            "its 'patient_id' value contains a NUL byte"]
