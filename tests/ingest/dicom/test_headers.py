"""attach_headers: groups are keyed hashes of PatientID, study and series hashed, the few fields read; the id key
lives beside the store (0600), is reused by a re-run, and another key is refused in one line."""
import os
import stat

import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.ingest.dicom.headers import attach_headers
from medsearch.ingest.dicom.identifiers import MIN_KEY_CHARS, default_key_path
from medsearch.ingest.layouts import Dataset
from medsearch.storage.row_headers import merge_headers
from medsearch.storage.schema import NO_PATIENT_GROUP
from medsearch.storage.store import StoreData, write_store
from .phi_files import busi_pixels, patient_id, phi_dataset, series_uid, study_uid, write_dicom
from ...conftest import make_image


def _dataset(root, sources, groups=None):
    labels = np.array([int("malignant" in s) for s in sources])
    return Dataset(list(sources), list(sources), labels, ["benign", "malignant"], "binary", groups,
                   root=str(root), layout="folders")


def _sources(root):
    return sorted(os.path.relpath(p, root) for p in phi_dataset(root))


def _stored(ds, out):
    """What `index` stores of ``ds``'s rows and headers (reconcile's part), without embedding anything."""
    data = StoreData([], [], np.zeros(0, np.int64), ds.label_names, ds.task, groups=[] if ds.groups else None)
    data.ids, data.sources, data.labels = list(ds.ids), list(ds.sources), ds.labels.copy()
    data.groups = list(ds.groups) if ds.groups is not None else None
    merge_headers(data, ds, np.arange(len(ds)))
    out.mkdir(exist_ok=True)
    write_store(data, out)
    return data


def test_groups_studies_and_fields(tmp_path):
    root, out = tmp_path / "data", tmp_path / "idx"
    ds = _dataset(root, _sources(root))
    attach_headers(ds, out, None, progress=False)
    by_patient = {}
    for source, group in zip(ds.sources, ds.groups):
        by_patient.setdefault(source.split("/")[1][2], set()).add(group)
    assert all(len(g) == 1 for g in by_patient.values()) and len(set.union(*by_patient.values())) == 4
    g = ds.groups[0]
    assert len(g) == 32 and not g.strip("0123456789abcdef") and patient_id(0) not in g
    cols = ds.header.columns
    assert len(set(cols["study"])) == 4 and len(set(cols["series"])) == 4 and cols["study"][0] != cols["series"][0]
    assert study_uid(0, 1) not in cols["study"]
    row = ds.header.values(0)
    assert {k: row[k] for k in ("Modality", "BodyPartExamined", "ViewPosition", "Laterality", "Manufacturer",
                                "Rows", "Columns", "PixelSpacing")} == {
        "Modality": "US", "BodyPartExamined": "BREAST", "ViewPosition": "PA", "Laterality": "L",
        "Manufacturer": "ACME Imaging", "Rows": "96", "Columns": "96", "PixelSpacing": "0.1\\0.1"}
    assert ds.header.ids["groups"] == "PatientID (keyed hash)"


def test_the_key_lives_beside_the_store_and_is_reused(tmp_path):
    root, out = tmp_path / "data", tmp_path / "idx"
    sources = _sources(root)
    ds = _dataset(root, sources)
    attach_headers(ds, out, None, progress=False)
    key = default_key_path(out)
    assert key.parent == tmp_path and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not out.exists() or key not in out.rglob("*")
    _stored(ds, out)
    again = _dataset(root, sources)
    attach_headers(again, out, None, progress=False)  # a re-run: same key, same groups
    assert again.groups == ds.groups and again.header.columns == ds.header.columns
    same = tmp_path / "same.key"
    same.write_bytes(key.read_bytes())
    attach_headers(_dataset(root, sources), out, str(same), progress=False)  # the same key, given: accepted
    other = tmp_path / "other.key"
    other.write_text("f" * 64)
    with pytest.raises(MedsearchError, match="not the one the store's identifiers were hashed with.*--id-key"):
        attach_headers(_dataset(root, sources), out, str(other), progress=False)
    key.unlink()
    with pytest.raises(MedsearchError, match="not at .*give that key with --id-key"):
        attach_headers(_dataset(root, sources), out, None, progress=False)


@pytest.mark.parametrize("content, message", [(None, "is not a key file"),
                                              ("short", f"holds 5 characters; a key needs at least {MIN_KEY_CHARS}")])
def test_a_bad_key_file_is_refused(tmp_path, content, message):
    root = tmp_path / "data"
    key = tmp_path / "k"
    if content is not None:
        key.write_text(content)
    with pytest.raises(MedsearchError, match=message):
        attach_headers(_dataset(root, _sources(root)), tmp_path / "idx", str(key), progress=False)


def test_rows_without_patient_id_and_other_files(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "idx"
    paths = phi_dataset(root, patients=2, per_patient=2, missing_id=2)
    make_image(root / "benign" / "extra.png", 0, 1)
    write_dicom(root / "benign" / "multi.dcm", busi_pixels(7), patient_id="MRN-9", study=study_uid(9, 1),
                series=series_uid(9, 1))
    sources = sorted(os.path.relpath(p, root) for p in paths) + ["benign/extra.png", "benign/multi.dcm#2"]
    ds = _dataset(root, sources)
    attach_headers(ds, out, None, progress=False)
    no_id = [g for g in ds.groups if g.startswith(NO_PATIENT_GROUP)]
    assert len(no_id) == 3 and len(set(no_id)) == 3  # the two files without PatientID and the PNG: one group each
    assert ds.header.values(sources.index("benign/extra.png")) == {}
    frame = ds.header.values(len(sources) - 1)  # a frame row has its file's header
    assert frame["Modality"] == "US" and frame["study"]
    assert "3 of 6 rows have no PatientID: each is its own group" in capsys.readouterr().err


def test_a_group_column_is_kept_and_no_dicom_costs_nothing(tmp_path):
    root, out = tmp_path / "data", tmp_path / "idx"
    sources = _sources(root)
    ds = _dataset(root, sources, groups=[f"lesion{i}" for i in range(len(sources))])
    attach_headers(ds, out, None, progress=False)
    assert ds.groups == [f"lesion{i}" for i in range(len(sources))]
    assert ds.header.ids["groups"] == "the dataset's group column" and len(set(ds.header.columns["study"])) == 4
    pngs = tmp_path / "pngs"
    (pngs / "a").mkdir(parents=True)
    make_image(pngs / "a" / "0.png", 0, 0)
    plain = _dataset(pngs, ["a/0.png"])
    attach_headers(plain, tmp_path / "idx2", None, progress=False)
    assert plain.header is None and plain.groups is None and not default_key_path(tmp_path / "idx2").exists()


def test_the_frames_of_a_file_without_patient_id_are_one_group(tmp_path):
    """`--frames all` rows of one file share a group even without a PatientID: a split keeps a cine together."""
    root, out = tmp_path / "data", tmp_path / "idx"
    for name in ("a", "b"):
        write_dicom(root / "benign" / f"{name}.dcm", busi_pixels(1), patient_id=None, study=study_uid(1, 1),
                    series=series_uid(1, 1))
    sources = [f"benign/{name}.dcm#{f}" for name in ("a", "b") for f in range(3)]
    ds = _dataset(root, sources)
    attach_headers(ds, out, None, progress=False)
    assert len(set(ds.groups[:3])) == len(set(ds.groups[3:])) == 1 and ds.groups[0] != ds.groups[3]
    assert all(g.startswith(NO_PATIENT_GROUP) for g in ds.groups)
