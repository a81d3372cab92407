"""`query --where`: only neighbours whose stored DICOM header fields meet every condition (=, several values, !=),
k of them whenever k rows pass; each neighbour shows its fields; an unknown field or a store without header
fields is a one-line error naming the fields there are."""
import json

import pytest

from medsearch.errors import MedsearchError
from medsearch.search.query import query
from medsearch.storage.store import read_store

from ..conftest import cli_error_line, index_tiny, run_cli
from ..storage.header_stores import add_headers, modality, view


@pytest.fixture
def store(folder_dataset, tmp_path, tiny):
    out = tmp_path / "idx"
    index_tiny(folder_dataset, out)
    plain = tmp_path / "plain"
    index_tiny(folder_dataset, plain)
    add_headers(out)
    return folder_dataset, out, plain


def _rows(out, result):
    data = read_store(out)
    return [data.ids.index(n.id) for n in result.neighbours]


def test_where_restricts_the_neighbours(store):
    images, out, _ = store
    q = str(next((images / "benign").iterdir()))
    everyone = query([q], index_dir=str(out), k=6)[0]
    assert {view(r) for r in _rows(out, everyone)} == {"PA", "AP"}
    pa = query([q], index_dir=str(out), k=6, where=("viewposition=pa",))[0]  # names and values in any case
    assert len(pa.neighbours) == 6 and {view(r) for r in _rows(out, pa)} == {"PA"}
    assert pa.where == ["viewposition=pa"] and pa.neighbours[0].header["ViewPosition"] == "PA"
    two = query([q], index_dir=str(out), k=8, where=("Modality=CR,DX", "ViewPosition!=PA"))[0]
    rows = _rows(out, two)
    assert len(rows) == 8 and all(modality(r) in ("CR", "DX") and view(r) == "AP" for r in rows)


def test_where_is_shown_and_refused_in_one_line(store):
    images, out, plain = store
    q = str(next((images / "benign").iterdir()))
    res = run_cli("query", q, "--index", out, "-k", 2, "--where", "ViewPosition=AP")
    assert res.exit_code == 0, res.output
    assert "where ViewPosition=AP" in res.output and "Modality=" in res.output and "ViewPosition=AP" in res.output
    res = run_cli("query", q, "--index", out, "-k", 2, "--where", "Modality=MR", "--json")
    neighbours = json.loads(res.output)[0]["neighbours"]
    assert all(n["header"]["Modality"] == "MR" and len(n["header"]["study"]) == 32 for n in neighbours)
    line = cli_error_line(run_cli("query", q, "--index", out, "--where", "PatientName=DOE"))
    assert "no field 'PatientName'" in line and "Modality, ViewPosition, Laterality" in line
    line = cli_error_line(run_cli("query", q, "--index", plain, "--where", "ViewPosition=PA"))
    assert "holds no DICOM header fields" in line
    with pytest.raises(MedsearchError, match="not a condition: write FIELD=VALUE"):
        query([q], index_dir=str(out), where=("ViewPosition",))
