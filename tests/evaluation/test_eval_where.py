"""`eval --where`: only the rows whose stored DICOM header meets the conditions are evaluated, chosen before the
split, and the report says so; an unknown field, a store without header fields, or too few rows left is a
one-line error; grouped rows without a PatientID are warned about."""
import pytest

from medsearch.errors import MedsearchError
from medsearch.evaluation.evaluate import evaluate
from medsearch.storage.schema import NO_PATIENT_GROUP
from medsearch.storage.store import read_store, write_store

from ..conftest import QUICK, cli_error_line, make_store, run_cli
from ..storage.header_stores import add_headers, modality, view


def _store(tmp_path, **kw):
    store = make_store(tmp_path / "s", n=120, **kw)
    add_headers(store)
    return store


def test_where_restricts_the_rows_before_the_split(tmp_path):
    store = _store(tmp_path, groups_of=2)
    r = evaluate(store, heads=("lr",), where=("ViewPosition=PA", "Modality!=MR"), report_dir=tmp_path / "rep",
                 **QUICK).to_json()
    kept = [i for i in range(120) if view(i) == "PA" and modality(i) != "MR"]
    assert r["store"]["n_evaluated"] == len(kept)
    assert sum(x["n_test"] + x["n_train"] for x in r["split"]["rounds"]) == len(kept)
    assert r["config"]["where"] == ["ViewPosition=PA", "Modality!=MR"]
    note = f"only the {len(kept)} of 120 embedded rows whose DICOM header meets ViewPosition=PA and Modality!=MR"
    assert any(note in n for n in r["notes"])
    assert note in (tmp_path / "rep" / "results.md").read_text()
    plain = evaluate(store, heads=("lr",), report_dir=tmp_path / "rep2", **QUICK).to_json()
    assert "where" not in plain["config"] and plain["store"]["n_evaluated"] == 120


def test_where_errors_are_one_line(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(MedsearchError, match="no field 'Manufacturer'; its fields are Modality, ViewPosition"):
        evaluate(store, heads=("lr",), where=("Manufacturer=ACME",), **QUICK)
    with pytest.raises(MedsearchError, match="only 0 of the 120 embedded rows meet it.*loosen --where"):
        evaluate(store, heads=("lr",), where=("Modality=CT",), **QUICK)
    plain = make_store(tmp_path / "plain", n=30)
    line = cli_error_line(run_cli("eval", "--index", plain, "--where", "ViewPosition=PA", "--quiet"))
    assert "holds no DICOM header fields" in line
    line = cli_error_line(run_cli("eval", "--index", plain, "--where", "ViewPosition"))
    assert "not a condition" in line


def test_rows_without_patient_id_are_warned_about(tmp_path, capsys):
    store = _store(tmp_path, groups_of=3)
    data = read_store(store)
    for r in range(0, 120, 10):
        data.groups[r] = f"{NO_PATIENT_GROUP}{r:032x}"
    write_store(data, store)
    r = evaluate(store, heads=("lr",), report_dir=tmp_path / "rep", **QUICK)
    assert any("12 evaluated rows have no PatientID" in w for w in r.warnings)
