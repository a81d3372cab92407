"""No protected health information in a store (issue 18): a store built from DICOM files that carry a patient name,
birth date, address, accession number, institution and free text holds none of them, nor the raw patient, study or
series ids, in any byte of any file of its folder; and it still groups by patient."""
import os

import numpy as np

from medsearch.evaluation.splits import holdout_split
from medsearch.ingest.dicom.headers import attach_headers
from medsearch.ingest.dicom.identifiers import default_key_path
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import ModelData, read_store, write_store
from .phi_files import patient_id, phi, phi_dataset, series_uid, study_uid
from .test_headers import _dataset, _stored
from ...conftest import _provenance, index_tiny

PATIENTS = 6


def _identifying_values() -> list[bytes]:
    values = set()
    for p in range(PATIENTS):
        values.update(phi(p).values())
        values.update((patient_id(p), study_uid(p, 1), series_uid(p, 1)))
    values.update(v.split("^")[0] for v in list(values) if "^" in v)  # a family name on its own
    return sorted(v.encode() for v in values)


def _found(folder) -> list[str]:
    """'file: value' for each identifying value in the raw bytes of each file under ``folder``."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        hits += [f"{path.name}: {v.decode()}" for v in _identifying_values() if v in raw or v.lower() in raw.lower()]
    return hits


def test_no_identifying_value_reaches_the_store_and_groups_still_hold(tmp_path):
    root, out = tmp_path / "data", tmp_path / "idx"
    paths = phi_dataset(root, patients=PATIENTS, per_patient=3)
    assert all(any(v in p.read_bytes() for v in _identifying_values()) for p in paths)  # the files do carry PHI
    ds = _dataset(root, sorted(os.path.relpath(p, root) for p in paths))
    attach_headers(ds, out, None, progress=False)
    data = _stored(ds, out)
    rng = np.random.default_rng(0)
    data.models["m"] = ModelData(rng.normal(size=(len(data), 8)).astype(np.float32),
                                 np.full(len(data), EMBEDDED, np.int8), [""] * len(data), {"provenance": _provenance("m", 8)})
    write_store(data, out)
    (out / "index_report.json").write_text('{"rows": %d}' % len(data))

    assert _found(out) == []
    assert default_key_path(out).parent == out.parent  # the key is not in the folder that gets shared

    back = read_store(out)
    patient_of = [int(s.split("/")[1][2]) for s in back.sources]
    group_of = dict(zip(patient_of, back.groups))
    assert len(set(back.groups)) == PATIENTS and [group_of[p] for p in patient_of] == back.groups
    train, test = holdout_split(back.labels, back.task, groups=np.asarray(back.groups), test_size=0.34, seed=0)
    assert test.size and not set(np.asarray(patient_of)[train]) & set(np.asarray(patient_of)[test])


def test_medsearch_index_of_files_with_phi(tmp_path, tiny):
    """The same through `index` (class folders of extensionless DICOM files): no identifying byte in the index
    folder, one group per patient."""
    root, out = tmp_path / "data", tmp_path / "idx"
    phi_dataset(root, patients=4, per_patient=2)
    index_tiny(root, out)
    assert _found(out) == [] and default_key_path(out).is_file()
    data = read_store(out)
    patient_of = [int(s.split("/")[1][2]) for s in data.sources]
    assert len(set(data.groups)) == 4
    assert all(len({g for g, p in zip(data.groups, patient_of) if p == q}) == 1 for q in range(4))


def test_medsearch_index_stores_the_header_fields(tmp_path, tiny):
    root, out = tmp_path / "data", tmp_path / "idx"
    phi_dataset(root, patients=2, per_patient=2)
    first = index_tiny(root, out)
    data = read_store(out)
    assert data.header is not None and data.header.values(0)["Modality"] == "US"
    assert _found(out) == []
    assert first.changes.new_rows == 4 and first.changes.relabelled == 0  # new rows are not "relabelled"
    again = index_tiny(root, out)
    assert again.changes.new_rows == 0 and again.changes.relabelled == 0
