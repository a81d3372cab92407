import csv

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsearch.ingest.datasets import scan
from medsearch.errors import ImageError, MedsearchError

from ..conftest import make_image, needs_shared


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
    odir = scan(needs_shared("retina-odir"), label_cols=list("NDGCAHMO"))
    assert odir.task == "multilabel" and odir.label_names == list("NDGCAHMO") and odir.groups is not None
    skin = scan(needs_shared("skin-isic2018"))
    assert skin.task == "multiclass" and skin.label_names == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert (skin.labels[:2] == [1, 4]).all() and not skin.missing


# ---- how labels are read: never a silent guess (issue 12, defect 2) ---------------------------------------


def _images(root, n=4):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(root / f"{i}.png", i % 2, i)


def test_covariate_is_not_read_as_a_label(tmp_path):
    """`image,label,male` with 0/1 in both: one label plus a covariate, or two labels? Refused, naming both flags."""
    _images(tmp_path)
    _write_csv(tmp_path / "labels.csv", ["image", "label", "male"],
               [["0.png", 0, 1], ["1.png", 1, 1], ["2.png", 0, 0], ["3.png", 1, 0]])
    with pytest.raises(MedsearchError) as err:
        scan(tmp_path)
    msg = str(err.value)
    assert "--label-col label" in msg and "--label-cols label,male" in msg and "\n" not in msg
    ds = scan(tmp_path, label_col="label")
    assert ds.task == "binary" and ds.labels.tolist() == [0, 1, 0, 1] and "columns ignored: male" in ds.reading
    ds = scan(tmp_path, label_cols=["label", "male"])
    assert ds.task == "multilabel" and ds.label_names == ["label", "male"] and "--label-cols" in ds.reading
    with pytest.raises(MedsearchError, match="not both"):
        scan(tmp_path, label_col="label", label_cols=["label", "male"])


def test_label_column_with_its_own_one_hot_code_is_one_reading(tmp_path):
    """ISIC 2018's layout: a label column and the one-hot columns that encode it agree, so nothing is guessed."""
    _images(tmp_path)
    _write_csv(tmp_path / "labels.csv", ["image", "label", "A", "B", "C"],
               [["0.png", 2, 0, 0, 1], ["1.png", 0, 1, 0, 0], ["2.png", 1, 0, 1, 0], ["3.png", 2, 0, 0, 1]])
    ds = scan(tmp_path)
    assert ds.label_names == ["A", "B", "C"] and ds.labels.tolist() == [2, 0, 1, 2]
    assert "agrees with them" in ds.reading
    # one row where they disagree: two readings again
    _write_csv(tmp_path / "labels.csv", ["image", "label", "A", "B", "C"],
               [["0.png", 2, 0, 0, 1], ["1.png", 0, 1, 0, 0], ["2.png", 1, 0, 1, 0], ["3.png", 0, 0, 0, 1]])
    with pytest.raises(MedsearchError, match="can be read two ways"):
        scan(tmp_path)


def test_real_odir_needs_its_label_columns_named():
    """ODIR's labels.csv has the per-image diagnosis `labels` beside 8 patient-level 0/1 columns."""
    root = needs_shared("retina-odir")
    with pytest.raises(MedsearchError, match="--label-cols N,D,G,C,A,H,M,O"):
        scan(root)
    ds = scan(root, label_cols=list("NDGCAHMO"))
    assert ds.task == "multilabel" and "columns ignored: labels" in ds.reading and ds.groups is not None


LABELISH = ("label", "dx")
POOL = ("label", "dx", "male", "A", "B", "C", "age")
VALUES = {"01": ["0", "1"], "01f": ["0.0", "1.0"], "int": ["0", "1", "2", "3"], "str": ["a", "b", "c"]}


def _partition(values) -> set:
    return {frozenset(i for i, v in enumerate(values) if v == x) for x in set(values)}


@pytest.fixture(scope="module")
def prop_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifests")
    _images(root, 8)
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_label_reading_is_unambiguous_or_an_error(prop_root, data):
    """Over random manifests: an ambiguous one (a column named like a label and two or more other 0/1 columns that
    are not its one-hot code) is always an error naming both flags; any manifest that is read is read the one way
    it allows, with the labels that way gives, and the reading is stated."""
    cols = data.draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    n = data.draw(st.integers(2, 8))
    table = {}
    for c in cols:
        kind = data.draw(st.sampled_from(sorted(VALUES)))
        table[c] = [data.draw(st.sampled_from(VALUES[kind])) for _ in range(n)]
    _write_csv(prop_root / "labels.csv", ["image", *cols], [[f"{i}.png", *(table[c][i] for c in cols)] for i in range(n)])

    named = next((c for c in LABELISH if c in cols), None)
    hot = [c for c in cols if all(v in ("0", "1", "0.0", "1.0") for v in table[c])]
    as_int = {c: [int(float(v)) for v in table[c]] for c in hot}
    one_hot_code = (named is not None and named not in hot and len(hot) >= 2
                    and all(sum(as_int[c][i] for c in hot) == 1 for i in range(n))
                    and _partition(table[named]) == _partition([next(c for c in hot if as_int[c][i]) for i in range(n)]))
    ambiguous = named is not None and len(hot) >= 2 and not one_hot_code
    try:
        ds = scan(prop_root)
    except MedsearchError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        if ambiguous:
            assert "--label-col" in msg and "--label-cols" in msg
            for flag in ({"label_col": named}, {"label_cols": hot}):  # either flag settles it
                try:
                    scan(prop_root, **flag)
                except MedsearchError as again:
                    assert "two ways" not in str(again)
        return
    assert not ambiguous, f"read {cols} without an error: {ds.reading}"
    assert ds.reading
    if len(hot) >= 2:  # one 0/1 column per label
        assert ds.label_names == hot and f"0/1 columns {', '.join(hot)}" in ds.reading
        expected = np.array([as_int[c] for c in hot]).T
        got = ds.labels if ds.labels.ndim == 2 else np.eye(len(hot), dtype=int)[ds.labels]
        assert (got == expected).all()
    else:  # one label column
        assert f"from column '{named}'" in ds.reading
        assert _partition(ds.labels.tolist()) == _partition(table[named])


# ---- hidden files, NUL bytes (issue 12, defects 4 and 6) ---------------------------------------------------


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


def test_hidden_files_named_by_a_manifest_are_reported_not_read(tmp_path):
    (tmp_path / "images" / ".cache").mkdir(parents=True)
    for name in ("0.png", "1.png", ".2.png", ".cache/3.png"):
        make_image(tmp_path / "images" / name, 0, 0)
    _write_csv(tmp_path / "labels.csv", ["image", "label"], [["0.png", "a"], ["1.png", "b"], [".2.png", "a"], [".cache/3.png", "b"]])
    (tmp_path / ".~lock.labels.csv#").write_text("x")  # LibreOffice's lock file is no second manifest
    ds = scan(tmp_path)
    assert sorted(ds.missing) == [2, 3] and all("hidden" in why for why in ds.missing.values())


def test_nul_byte_in_a_manifest_row_drops_that_row_with_its_reason(tmp_path):
    _images(tmp_path)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        f.write("image,label,patient_id\n0.png,a,p1\n1.png,b,p1\nbad\x00name.png,a,p2\n2.png,b,p\x002\n3.png,a,p3\n")
    ds = scan(tmp_path)
    assert ds.ids == ["0.png", "1.png", "3.png"]
    assert [why for _, why in ds.dropped] == ["its 'image' value contains a NUL byte",
                                            "its 'patient_id' value contains a NUL byte"]


def test_an_id_column_read_as_labels_is_refused_up_front(tmp_path, monkeypatch):
    import medsearch.ingest.datasets as datasets_module

    monkeypatch.setattr(datasets_module, "MAX_LABEL_NAMES", 3)  # the real cap is 100,000 classes
    _images(tmp_path)
    _write_csv(tmp_path / "labels.csv", ["image", "label"], [[f"{i}.png", f"patient{i}"] for i in range(4)])
    with pytest.raises(MedsearchError, match="4 classes, more than the 3"):
        scan(tmp_path)
