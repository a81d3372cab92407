"""Stores written before the issue-13 restructuring open after it and give the same answers.

tests/golden/store-before-issue-13/ holds a small synthetic store written by the code of commit cf7a35d (the
last one before the move into sub-packages) and what that code answered on it: `eval` (lr, linear-svc, k-NN,
retrieval on a split grouped by patient) and `info`. make_fixture.py beside them is the script that wrote both;
run it with that commit's code on PYTHONPATH to write them again.
"""
import json
import shutil
from pathlib import Path

import pytest

from medsearch.evaluation.evaluate import evaluate
from medsearch.storage.store import read_store
from medsearch.storage.summary import store_summary

FIXTURE = Path(__file__).parent / "golden" / "store-before-issue-13"
VOLATILE = {"created", "updated", "fit_seconds", "report_dir", "store", "index_dir", "medsearch_version"}


def _comparable(obj):
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    if isinstance(obj, float):
        return pytest.approx(obj, abs=1e-9)
    return obj


@pytest.fixture
def old_store(tmp_path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(FIXTURE / "store.h5", folder / "store.h5")
    return folder


def test_a_store_written_before_the_move_reads_and_answers_the_same(old_store, tmp_path):
    answers = json.loads((FIXTURE / "answers.json").read_text())
    data = read_store(old_store)  # validated in full at open
    assert len(data) == 60 and data.label_names == ["a", "b", "c"] and data.sha256 is not None
    result = evaluate(str(old_store), heads=("lr", "linear-svc"), C=(0.1, 1.0), n_boot=100, n_jobs=1,
                      progress=False, report_dir=tmp_path / "report").to_json()
    assert result["split"]["mode"] == "grouped" and result["models"]["m1"]["methods"]["lr"]["auc"] > 0.8
    assert _comparable(result) == _comparable(answers["eval"])
    info = store_summary(str(old_store)).to_json()
    assert (info.pop("format_version"), info.pop("segments"), info.pop("removed")) == (1, None, 0)  # issue 14's
    assert _comparable(info) == _comparable(answers["info"])


def test_a_format1_store_upgrades_to_format2_and_answers_the_same(old_store, tmp_path):
    """Issue 14: `compact` rewrites a format-1 store as format 2 (store.h5 gone, store.json and segments in
    place), with the same rows, embeddings, eval figures and summary."""
    from medsearch.ingest.compact import compact

    answers = json.loads((FIXTURE / "answers.json").read_text())
    before = read_store(old_store)
    compact(str(old_store))
    assert not (old_store / "store.h5").exists() and (old_store / "store.json").exists()
    after = read_store(old_store)
    assert after.ids == before.ids and (after.labels == before.labels).all() and after.groups == before.groups
    for key, m in before.models.items():
        assert (after.models[key].embedding[:] == m.embedding).all() and (after.models[key].state == m.state).all()
    result = evaluate(str(old_store), heads=("lr", "linear-svc"), C=(0.1, 1.0), n_boot=100, n_jobs=1,
                      progress=False, report_dir=tmp_path / "report").to_json()
    assert _comparable(result) == _comparable(answers["eval"])
    info = store_summary(str(old_store)).to_json()
    assert (info.pop("format_version"), info.pop("segments"), info.pop("removed")) == (2, 1, 0)
    assert _comparable(info) == _comparable(answers["info"])
