"""index / query / info end to end on generated images with a random-init encoder (tiny inputs for speed)."""
import json

import numpy as np
import pytest

import medsearch.ingest.indexing as index_module
from medsearch.ingest.indexing import index_dataset
from medsearch.storage.summary import store_summary
from medsearch.search.query import query
from medsearch.errors import MedsearchError
from medsearch.storage.journal import Journal
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store

from ..conftest import FAST, run_cli, store_files

MODEL = dict(models=("mobilenet-v2",), random_init=True, progress=False, **FAST)


def _index(ds, out, **kw):
    return index_dataset(str(ds), out=str(out), **{**MODEL, **kw})


def test_index_query_info(folder_dataset, tmp_path):
    out = tmp_path / "idx"
    summary = _index(folder_dataset, out, batch_size=5)
    assert summary.models["mobilenet-v2"].embedded == 24
    data = read_store(out)
    assert len(data) == 24 and (data.models["mobilenet-v2"].state == EMBEDDED).all()
    assert (out / "mobilenet-v2.faiss").exists() and (out / "index_report.json").exists()

    q = str(folder_dataset / "malignant" / "malignant_03.png")
    excluded = query([q], index_dir=str(out), k=5)[0]
    assert excluded.excluded_self and len(excluded.neighbours) == 5
    assert all(n.source != "malignant/malignant_03.png" for n in excluded.neighbours)
    assert abs(sum(excluded.vote.values()) - 1) < 1e-3
    included = query([q], index_dir=str(out), k=5, exclude_self=False)[0]
    assert included.neighbours[0].source == "malignant/malignant_03.png"
    assert included.neighbours[0].similarity > 0.999

    d = store_summary(str(out))
    assert d.rows == 24 and d.models["mobilenet-v2"].embedded == 24
    assert d.models["mobilenet-v2"].provenance["weights_source"] == "random-init"


def test_rerun_embeds_nothing_and_second_model_reuses_rows(folder_dataset, tmp_path):
    out = tmp_path / "idx"
    _index(folder_dataset, out)
    store_before = (out / "store.json").stat().st_mtime_ns
    again = _index(folder_dataset, out)
    assert again.models["mobilenet-v2"].embedded_this_run == 0
    assert (out / "store.json").stat().st_mtime_ns == store_before  # nothing new: store and index left alone
    (out / "mobilenet-v2.faiss").write_bytes(b"tampered")
    _index(folder_dataset, out)  # a damaged index file is rebuilt from the store
    assert read_store(out).models["mobilenet-v2"].attrs["index_ntotal"] == 24
    _index(folder_dataset, out, models=("resnet50",))
    data = read_store(out)
    assert set(data.models) == {"mobilenet-v2", "resnet50"} and len(data) == 24
    assert data.models["resnet50"].dim == 2048


def test_new_images_are_appended(folder_dataset, tmp_path):
    out = tmp_path / "idx"
    _index(folder_dataset, out)
    before = read_store(out)
    (folder_dataset / "benign" / "benign_00.png").rename(folder_dataset / "benign" / "zz_new.png")
    summary = _index(folder_dataset, out, auto_compact=False)
    after = read_store(out)
    assert len(after) == 25 and after.ids[:24] == before.ids
    assert summary.models["mobilenet-v2"].embedded_this_run == 1 and summary.changes.gone_from_dataset == 1
    # the row whose file is gone is removed: out of every search, its embedding forgotten; the others are kept
    gone = before.ids.index("benign/benign_00.png")
    assert after.removed[gone] and after.removed.sum() == 1 and gone not in after.models["mobilenet-v2"].usable()
    kept = np.arange(24) != gone
    assert (after.models["mobilenet-v2"].embedding[:24][kept] == np.asarray(before.models["mobilenet-v2"].embedding)[kept]).all()


def test_interrupted_run_resumes_to_identical_store(folder_dataset, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    _index(folder_dataset, clean, batch_size=4)

    real = index_module.embed_rows
    def dying(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt  # as if killed after 3 batches were journaled
            yield batch
    monkeypatch.setattr(index_module, "embed_rows", dying)
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        _index(folder_dataset, broken, batch_size=4)
    assert len(Journal(broken, "mobilenet-v2").parts()) == 3
    monkeypatch.setattr(index_module, "embed_rows", real)
    summary = _index(folder_dataset, broken, batch_size=4)
    assert summary.models["mobilenet-v2"].embedded_this_run == 12
    a, b = read_store(clean).models["mobilenet-v2"], read_store(broken).models["mobilenet-v2"]
    assert np.array_equal(a.embedding, b.embedding) and np.array_equal(a.state, b.state)


def test_mismatched_model_variant_is_refused_and_store_kept(folder_dataset, tmp_path):
    out = tmp_path / "idx"
    _index(folder_dataset, out)
    before = store_files(out)
    with pytest.raises(MedsearchError, match="another preprocess"):
        _index(folder_dataset, out, norm="median-mad")
    assert store_files(out) == before
    _index(folder_dataset, out, norm="median-mad", name="mobilenet-v2/mad")  # a name is made a safe key
    assert set(read_store(out).models) == {"mobilenet-v2", "mobilenet-v2_mad"}
    assert (out / "mobilenet-v2_mad.faiss").is_file()


def test_unreadable_images_skipped_or_zero_filled(folder_dataset, tmp_path):
    (folder_dataset / "benign" / "benign_05.png").write_bytes(b"\x89PNG truncated")
    summary = _index(folder_dataset, tmp_path / "skip")
    m = summary.models["mobilenet-v2"]
    assert m.skipped == 1 and m.problems[0]["source"] == "benign/benign_05.png"
    assert "not a readable image" in m.problems[0]["reason"]
    zero = _index(folder_dataset, tmp_path / "zero", on_missing="zero").models["mobilenet-v2"]
    assert zero.zero_filled == 1 and zero.skipped == 0
    report = json.loads((tmp_path / "zero" / "index_report.json").read_text())
    assert report["models"]["mobilenet-v2"]["problems"][0]["state"] == "zero-filled"


@pytest.mark.parametrize("args,match", [
    (["index", "/no/such/folder"], "does not exist"),
    (["index", "{tmp}", "--model", "nonsense-net"], "unknown encoder"),
    (["query", "{img}", "--index", "{tmp}"], "no medsearch store"),
    (["info", "{tmp}"], "no medsearch store"),
])
def test_cli_errors_are_one_line(folder_dataset, tmp_path, args, match):
    img = folder_dataset / "benign" / "benign_01.png"
    res = run_cli(*[a.format(tmp=tmp_path, img=img) for a in args])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and res.output.startswith("medsearch: error:")
    assert match in res.output.lower()


def test_cli_query_bad_image_and_wrong_model(folder_dataset, tmp_path):
    out = tmp_path / "idx"
    _index(folder_dataset, out)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    res = run_cli("query", bad, "--index", out)
    assert res.exit_code == 2 and "cannot read query image" in res.output
    res = run_cli("query", folder_dataset / "benign" / "benign_01.png", "--index", out, "--model", "resnet50")
    assert res.exit_code == 2 and "no model 'resnet50'" in res.output
    ok = run_cli("query", folder_dataset / "benign" / "benign_01.png", "--index", out, "-k", "3", "--json")
    assert ok.exit_code == 0 and len(json.loads(ok.output)[0]["neighbours"]) == 3
