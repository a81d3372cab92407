"""DICOM header columns in the store: round trip, incremental commits, compaction, old stores without them, and
validation that refuses any column outside the schema (so no other header value can ever be stored)."""
import json

import h5py
import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.storage.compaction import compact_rows
from medsearch.storage.row_headers import RowHeaders, merge_headers
from medsearch.storage.store import commit_store, read_store, write_store
from ..conftest import make_store

IDS = {"hash": "HMAC-SHA256, 128 bits, hex", "key_check": "0123456789abcdef", "key": "beside the store"}


def _header(n):
    return RowHeaders({"study": [f"{i % 3:032x}" for i in range(n)], "Modality": ["CR" if i % 2 else "DX" for i in range(n)],
                       "ViewPosition": ["PA" if i % 3 else "" for i in range(n)]}, dict(IDS))


def _with_header(tmp_path, n=30):
    make_store(tmp_path, n=n)
    data = read_store(tmp_path)
    data.header = _header(n)
    write_store(data, tmp_path)
    return data


def test_round_trip_and_old_stores(tmp_path):
    make_store(tmp_path / "old", n=12)
    assert read_store(tmp_path / "old").header is None  # stores written before issue 18 read as before
    data = _with_header(tmp_path / "new")
    back = read_store(tmp_path / "new")
    assert back.header.columns == data.header.columns and back.header.ids == IDS
    assert back.header.names() == ["study", "Modality", "ViewPosition"]
    assert back.header.fields() == ["Modality", "ViewPosition"]
    assert back.header.values(0) == {"study": "0" * 32, "Modality": "DX"}
    assert "dicom_ids" not in back.attrs  # held by the header, written back as the root attribute
    assert json.loads(json.loads((tmp_path / "new" / "store.json").read_text())["attrs"]["dicom_ids"]) == IDS


def test_incremental_commit_and_compaction(tmp_path):
    data = _with_header(tmp_path)
    data.header.columns["Modality"][4] = "MR"
    data.touch(4)
    commit_store(data, tmp_path)
    back = read_store(tmp_path)
    assert len(back.origin.manifest.segments) == 2  # the change alone, as a new segment
    assert back.header.columns["Modality"][4] == "MR" and back.header.columns["Modality"][3] == "CR"
    back.removed = np.zeros(len(back), dtype=bool)
    back.removed[[0, 1]] = True
    keep = compact_rows(back, tmp_path)
    after = read_store(tmp_path)
    assert after.header.columns["Modality"] == [data.header.columns["Modality"][r] for r in keep]


def test_merge_headers_takes_the_dataset_values(tmp_path):
    data = _with_header(tmp_path, n=6)
    ds = type("DS", (), {})()
    ds.header = RowHeaders({"Modality": ["XA", "DX"], "Laterality": ["L", "R"]}, dict(IDS))
    changed = merge_headers(data, ds, np.array([0, 5]))
    assert changed == 2 and data.header.columns["Laterality"] == ["L", "", "", "", "", "R"]
    assert data.header.columns["Modality"][0] == "XA"
    commit_store(data, tmp_path)  # a new column: the store is written whole, and reads back
    assert read_store(tmp_path).header.columns["Laterality"][5] == "R"
    ds.header = RowHeaders({"Modality": ["XA", "DX"]}, {**IDS, "key_check": "f" * 16})
    with pytest.raises(MedsearchError, match="another key.*--id-key"):
        merge_headers(data, ds, np.array([0, 5]))


@pytest.mark.parametrize("column, value, message", [
    ("PatientName", "DOE^JANE", "PatientName is not a column a store may hold"),
    ("study", "1.2.840.113619.2.55", "keyed hash of 32 lowercase hex"),
    ("Modality", "x" * 65, "at most 64 printable"),
])
def test_a_column_outside_the_schema_is_refused(tmp_path, column, value, message):
    data = _with_header(tmp_path, n=4)
    data.header.columns[column] = [value] * 4
    with pytest.raises(MedsearchError, match=message):
        write_store(data, tmp_path)
    data.header.columns.pop(column)
    if column == "PatientName":  # written into a segment behind medsearch's back: refused at open
        for f in data.origin.files:
            f.close()
        seg = sorted((tmp_path / "segments").glob("seg-*.h5"))[-1]
        with h5py.File(seg, "a") as f:
            f["rows/header"].create_dataset("PatientName", data=np.frombuffer(b"DOE^JANE" * 4, np.uint8))
        with pytest.raises(MedsearchError, match="damaged.*PatientName is not a column a store may hold"):
            read_store(tmp_path)


def test_header_columns_without_their_key_record_are_damage(tmp_path):
    _with_header(tmp_path, n=4)
    manifest = json.loads((tmp_path / "store.json").read_text())
    del manifest["attrs"]["dicom_ids"]
    (tmp_path / "store.json").write_text(json.dumps(manifest))
    with pytest.raises(MedsearchError, match="dicom_ids is missing"):
        read_store(tmp_path)


def test_info_states_what_is_stored(tmp_path):
    from ..conftest import run_cli

    data = _with_header(tmp_path, n=6)
    data.groups = ["a", "a", "no-patient-id:" + "1" * 32, "b", "b", "c"]
    write_store(data, tmp_path)
    res = run_cli("info", tmp_path)
    assert res.exit_code == 0, res.output
    assert "fields stored: Modality, ViewPosition" in res.output and "keyed hashes" in res.output
    assert "id key: beside the store, check 0123456789abcdef" in res.output
    assert "1 rows have no PatientID" in res.output and "never stored: patient names, birth dates" in res.output
    got = json.loads(run_cli("info", tmp_path, "--json").output)["dicom"]
    assert got["fields"] == ["Modality", "ViewPosition"] and got["hashed_ids"] == ["study"]
    assert got["rows_with_header"] == 6
    make_store(tmp_path / "old", n=12)
    assert "dicom" not in json.loads(run_cli("info", tmp_path / "old", "--json").output)
