"""Tests for medsearch.ingest.datasets: layout detection, the dataset path and the class cap of scan()."""

import pytest

from medsearch.ingest.datasets import scan
from medsearch.errors import MedsearchError

from ..conftest import needs_shared
from .conftest import write_csv, write_images


@pytest.mark.parametrize("setup,match", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no dataset found"),
])
def test_bad_paths(tmp_path, setup, match):
    p = tmp_path / "d"
    setup(p)
    with pytest.raises(MedsearchError, match=match):
        scan(p)


def test_real_layouts_detected():
    busi = scan(needs_shared("breast-busi"))
    assert busi.layout == "folders" and busi.label_names == ["benign", "malignant", "normal"] and len(busi) == 780
    odir = scan(needs_shared("retina-odir"), label_cols=list("NDGCAHMO"))
    assert odir.task == "multilabel" and odir.label_names == list("NDGCAHMO") and odir.groups is not None
    skin = scan(needs_shared("skin-isic2018"))
    assert skin.task == "multiclass" and skin.label_names == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert (skin.labels[:2] == [1, 4]).all() and not skin.missing


def test_an_id_column_read_as_labels_is_refused_up_front(tmp_path, monkeypatch):
    import medsearch.ingest.datasets as datasets_module

    monkeypatch.setattr(datasets_module, "MAX_LABEL_NAMES", 3)  # the real cap is 100,000 classes
    write_images(tmp_path)
    write_csv(tmp_path / "labels.csv", ["image", "label"], [[f"{i}.png", f"patient{i}"] for i in range(4)])
    with pytest.raises(MedsearchError, match="4 classes, more than the 3"):
        scan(tmp_path)
