"""DICOM files in every layout `index` reads: class folders (.dcm or no extension, found by content), a CSV
manifest, a plain tree labelled by a header keyword, a DICOMDIR export; multi-frame files as one row per frame;
hostile files skipped with their reason; the store's pixel settings followed by every reader."""
import csv
import os

import numpy as np
import pytest
from pydicom import uid as U

from medsearch.ingest.datasets import scan
from medsearch.ingest.dicom.pixel_options import PixelOptions, pixel_options_of
from medsearch.ingest.sources import RowSource, open_stored_file, read_query_image
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store

from ...conftest import SHARED_DATA, cli_error_line, index_tiny, raises_one_line, run_cli
from .test_hostile import hostile_files
from .writers import busi_grey, dataset, isic_rgb, to_12bit, write

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "breast-busi").exists(), reason="../shared/data not available")


def grey_file(path, n, syntax=U.ExplicitVRLittleEndian, **tags):
    arr = busi_grey(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(path, dataset(arr, **tags), syntax, arr)


def class_folders(root):
    """benign: two .dcm files and one without extension; malignant: a PNG and two DICOM files."""
    from PIL import Image

    grey_file(root / "benign" / "a.dcm", 0)
    grey_file(root / "benign" / "b.dcm", 1, U.RLELossless)
    grey_file(root / "benign" / "IM000001", 2, U.JPEG2000Lossless)
    (root / "benign" / "notes.txt").write_text("not an image")
    Image.fromarray(isic_rgb(0)).save(root / "malignant" / "c.png") if (root / "malignant").mkdir() is None else None
    grey_file(root / "malignant" / "1.2.840.99.3", 3, U.JPEGLSLossless)  # a UID as its name: found by content
    grey_file(root / "malignant" / "d.dcm", 4, U.JPEGBaseline8Bit)
    return root


def test_class_folders_with_dcm_and_extensionless_files(tmp_path, tiny):
    root = class_folders(tmp_path / "ds")
    ds = scan(root)
    assert ds.layout == "folders" and ds.label_names == ["benign", "malignant"]
    assert sorted(ds.sources) == sorted(["benign/a.dcm", "benign/b.dcm", "benign/IM000001", "malignant/c.png",
                                         "malignant/1.2.840.99.3", "malignant/d.dcm"])
    index_tiny(root, tmp_path / "out")
    data = read_store(tmp_path / "out")
    m = data.models["tiny"]
    assert (m.state == EMBEDDED).all(), m.reason
    assert pixel_options_of(data.attrs) == PixelOptions()


def test_csv_manifest_naming_dcm_and_extensionless_files(tmp_path, tiny):
    root = tmp_path / "ds"
    for i, name in enumerate(["a.dcm", "b", "c.dcm", "d"]):
        grey_file(root / "images" / name, i, U.RLELossless if i % 2 else U.ExplicitVRLittleEndian)
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "label"], ["a.dcm", "x"], ["b", "y"], ["c", "x"], ["d", "y"]])
    ds = scan(root)
    assert ds.layout == "csv" and ds.sources == ["images/a.dcm", "images/b", "images/c.dcm", "images/d"]
    index_tiny(root, tmp_path / "out")
    assert (read_store(tmp_path / "out").models["tiny"].state == EMBEDDED).all()


def tree(root):
    """A hospital-style export: PATIENT/STUDY/SERIES/file, no extensions, labelled only in the headers."""
    parts = [("CHEST", "P1"), ("CHEST", "P2"), ("BREAST", "P3"), ("BREAST", "P4"), ("", "P5")]
    for n, (body, patient) in enumerate(parts):
        tags = {"BodyPartExamined": body} if body else {}
        grey_file(root / patient / "ST1" / "SE1" / f"IM{n}", n, **tags)
    return root


def test_plain_tree_needs_label_tag_and_takes_labels_from_it(tmp_path, tiny):
    root = tree(tmp_path / "export")
    res = run_cli("index", root, "--out", tmp_path / "out", "--model", "tiny", "--quiet")
    cli_error_line(res, "--label-tag", "--manifest")
    ds = scan(root, label_tag="BodyPartExamined")
    assert ds.label_names == ["BREAST", "CHEST"] and ds.task == "binary" and ds.layout == "dicom"
    assert [ds.label_names[y] for y in ds.labels] == ["CHEST", "CHEST", "BREAST", "BREAST"]
    assert ds.dropped == [("P5/ST1/SE1/IM4", "its header has no BodyPartExamined")]
    index_tiny(root, tmp_path / "out", label_tag="BodyPartExamined")
    stored = read_store(tmp_path / "out")
    assert (stored.models["tiny"].state == EMBEDDED).all() and stored.attrs["layout"] == "dicom"
    cli_error_line(run_cli("index", root, "--layout", "dicom", "--out", tmp_path / "o2", "--model", "tiny"),
                   "--label-tag")
    assert "not a DICOM keyword" in raises_one_line(lambda: scan(root, label_tag="BodyPart"))


def test_dicomdir_export_lists_its_files(tmp_path):
    from pydicom.fileset import FileSet

    fs = FileSet()
    for n, body in enumerate(["CHEST", "CHEST", "HAND", "HAND"]):
        arr = busi_grey(n)
        ds = dataset(arr, BodyPartExamined=body, PatientID=f"P{n}", PatientName="", StudyInstanceUID=U.generate_uid(),
                     SeriesInstanceUID=U.generate_uid(), StudyDate="20200101", StudyTime="120000", StudyID="1",
                     AccessionNumber="", SeriesNumber=1, InstanceNumber=1, Modality="CR")
        fs.add(ds)
    fs.write(tmp_path / "export")
    (tmp_path / "export" / "stray.dcm").write_bytes(b"not listed in the DICOMDIR")
    with pytest.raises(Exception, match="--label-tag"):
        scan(tmp_path / "export")
    ds = scan(tmp_path / "export", label_tag="BodyPartExamined")
    assert len(ds) == 4 and "stray.dcm" not in ds.sources and ds.label_names == ["CHEST", "HAND"]
    assert all(os.path.isfile(os.path.join(ds.root, s)) for s in ds.sources)


def test_frames_all_one_row_per_frame_and_every_reader_follows(tmp_path, tiny):
    root = tmp_path / "ds"
    frames = np.stack([to_12bit(busi_grey(i)) for i in (5, 6, 7)])
    (root / "a").mkdir(parents=True)
    write(root / "a" / "cine.dcm", dataset(frames, bits_stored=12, frames=3), U.RLELossless, frames)
    grey_file(root / "a" / "one.dcm", 8)
    grey_file(root / "b" / "two.dcm", 9)
    grey_file(root / "b" / "three", 10)
    out = tmp_path / "out"
    index_tiny(root, out, frames="all", window="none")
    data = read_store(out)
    assert sorted(data.ids) == sorted(["a/cine.dcm#0", "a/cine.dcm#1", "a/cine.dcm#2", "a/one.dcm", "b/two.dcm",
                                       "b/three"])
    assert (data.models["tiny"].state == EMBEDDED).all()
    pixels = pixel_options_of(data.attrs)
    assert pixels == PixelOptions(window="none", frames="all")
    # every reader opens frame 2 min-max windowed, as `index` did
    want = frames[2].astype(float)
    want = np.rint((want - want.min()) / (want.max() - want.min()) * 255).astype(np.uint8)
    root_s = data.attrs["dataset_root"]
    for img in (open_stored_file(root_s, "a/cine.dcm#2", pixels=pixels),
                RowSource(root_s, pixels=pixels).open("a/cine.dcm#2"),
                read_query_image(str(root / "a" / "cine.dcm#2"), data.attrs)):
        np.testing.assert_array_equal(np.asarray(img)[..., 0], want)
    # the same store with other pixel settings is refused, naming the flags
    msg = raises_one_line(lambda: index_tiny(root, out, frames="all", window="lung"))
    assert "--window none --frames all" in msg and "--out" in msg


def test_hostile_files_are_skipped_through_index(tmp_path, tiny):
    root = tmp_path / "ds"
    (root / "bad").mkdir(parents=True)
    reasons = hostile_files(root / "bad")
    os.remove(root / "bad" / "good.dcm")
    grey_file(root / "good" / "g1.dcm", 1)
    grey_file(root / "good" / "g2.dcm", 2)
    res = run_cli("index", root, "--out", tmp_path / "out", "--model", "tiny", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    data = read_store(tmp_path / "out")
    m = data.models["tiny"]
    import re

    for r, source in enumerate(data.sources):
        if source.startswith("good/"):
            assert m.state[r] == EMBEDDED
        else:
            why = m.reason[r]
            assert m.state[r] != EMBEDDED and "\n" not in why and re.search(reasons[os.path.basename(source)], why), \
                (source, why)


def test_dicom_options_on_a_dataset_without_dicom_are_refused(tmp_path, tiny):
    """--window, --frames and --id-key would be silently ignored on PNG files: refused in one line, and a PNG
    store records no DICOM pixel settings (so a later run with other settings is not refused for them)."""
    from PIL import Image

    for c, name in enumerate(["a", "b"]):
        (tmp_path / "ds" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(isic_rgb(3 * c + i)).save(tmp_path / "ds" / name / f"{i}.png")
    message = raises_one_line(lambda: index_tiny(tmp_path / "ds", tmp_path / "out", window="lung"))
    assert "--window applies to DICOM files" in message and "drop it" in message
    message = raises_one_line(lambda: index_tiny(tmp_path / "ds", tmp_path / "out", frames="all",
                                                 id_key=str(tmp_path / "k")))
    assert "--frames and --id-key apply to DICOM files" in message
    index_tiny(tmp_path / "ds", tmp_path / "out")
    assert "dicom_pixels" not in read_store(tmp_path / "out").attrs
