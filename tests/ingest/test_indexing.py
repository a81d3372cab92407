"""`medsearch index` end to end (issue 12): names that would split output lines, an index left behind by an
interrupted run, copies of stored images, and encoder output that is not finite. The guards of the options,
the store's dataset and the duplicate reports are tested in test_index_options, test_reconcile and
test_duplicates."""

import shutil

import numpy as np
import pytest

from medsearch.ingest.indexing import index_dataset
from medsearch.search.query import query
from medsearch.storage.store import read_store

from ..conftest import cli_error_line, index_tiny, needs_shared, run_cli
from .conftest import REAL, two_classes


def test_newline_in_a_file_name_does_not_split_index_output(tmp_path, tiny):
    root = two_classes(tmp_path / "ds")
    (root / "benign" / "evil\nskipped: fake.png").write_bytes(b"not an image")
    res = run_cli("index", root, "--out", tmp_path / "out", "--model", "tiny", "--quiet")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    problem = [ln for ln in lines if "evil" in ln]
    assert len(problem) == 1 and "evil\\nskipped: fake.png" in problem[0]
    assert not any(ln.startswith("skipped: fake") for ln in lines)


def test_query_refuses_an_index_left_behind_by_an_interrupted_run(tmp_path, folder_dataset, monkeypatch):
    """A file changed on disk, then `index` was stopped before re-embedding it: the FAISS file still holds the old
    image's vector under that row, so `query` must not answer from it."""
    import medsearch.ingest.indexing as index_module

    out = tmp_path / "out"
    index_dataset(str(folder_dataset), out=str(out), **REAL)
    shutil.copy(folder_dataset / "malignant" / "malignant_07.png", folder_dataset / "benign" / "benign_03.png")

    def stopped(*a, **k):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(index_module, "embed_rows", stopped)
    with pytest.raises(KeyboardInterrupt):
        index_dataset(str(folder_dataset), out=str(out), **REAL)
    monkeypatch.undo()
    res = run_cli("query", folder_dataset / "malignant" / "malignant_07.png", "--index", out)
    cli_error_line(res, "out of date", "medsearch index")
    index_dataset(str(folder_dataset), out=str(out), **REAL)  # finishing the run makes the index current again
    assert run_cli("query", folder_dataset / "malignant" / "malignant_07.png", "--index", out).exit_code == 0


def test_a_copy_of_a_stored_image_is_recognised_as_itself(tmp_path, folder_dataset):
    """A query from outside the dataset with the bytes of a stored image (and a stored duplicate of it) must not
    come back as its own neighbour at similarity 1.0 and vote for its own label."""
    out = tmp_path / "out"
    shutil.copy(folder_dataset / "benign" / "benign_05.png", folder_dataset / "malignant" / "zz_dup_of_b5.png")
    index_dataset(str(folder_dataset), out=str(out), **REAL)
    outside = tmp_path / "downloads" / "copy.png"
    outside.parent.mkdir()
    shutil.copy(folder_dataset / "benign" / "benign_05.png", outside)
    res = query([str(outside)], index_dir=str(out), k=5)[0]
    assert sorted(res.self_ids) == ["benign/benign_05.png", "malignant/zz_dup_of_b5.png"]
    assert all(n.similarity < 0.9999 for n in res.neighbours) and len(res.neighbours) == 5
    kept = query([str(outside)], index_dir=str(out), k=5, exclude_self=False)[0]
    assert {n.id for n in kept.neighbours[:2]} == set(res.self_ids)


def test_eval_warns_when_a_test_image_has_a_copy_in_training(tmp_path, tiny):
    """Real BUSI: benign (433) and malignant (145) are one file; under 5-fold CV one of them is always tested
    while the other is trained on."""
    from medsearch.evaluation.evaluate import evaluate

    index_tiny(needs_shared("breast-busi"), tmp_path / "out")
    res = evaluate(str(tmp_path / "out"), heads=(), retrieval=False, cv=5, n_boot=10, progress=False,
                   report_dir=str(tmp_path / "report"))
    assert sum(r.test_rows_with_a_training_copy for r in res.split.rounds) == 2
    assert any("byte-identical copy among the training images" in w for w in res.warnings)


def test_non_finite_encoder_output_is_a_skipped_row_not_a_broken_store(tmp_path, tiny, monkeypatch):
    import medsearch.ingest.indexing as index_module
    from ..conftest import TinyEncoder

    class Broken(TinyEncoder):
        def encode(self, batch):
            out = super().encode(batch)
            out[0, 1] = np.nan
            return out

    monkeypatch.setattr(index_module, "load_encoder", lambda *a, **k: Broken())
    summary = index_tiny(two_classes(tmp_path / "ds"), tmp_path / "out")
    m = summary.models["tiny"]
    assert m.skipped == 1 and m.embedded == 3 and "not finite" in m.problems[0]["reason"]
    assert np.isfinite(read_store(tmp_path / "out").models["tiny"].embedding).all()


def test_a_dataset_with_no_readable_image_is_one_line_naming_the_first_reason(tmp_path, tiny):
    for c in ("benign", "malignant"):
        (tmp_path / "ds" / c).mkdir(parents=True)
        (tmp_path / "ds" / c / "x.png").write_bytes(b"not a png")
    res = run_cli("index", tmp_path / "ds", "--out", tmp_path / "idx", "--model", "tiny", "--quiet")
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 2 and last.startswith("medsearch: error: no image of the dataset could be read for 'tiny' "
                                                  "(2 tried; the first, benign/x.png: not a readable image")
    assert last.endswith("run `index` again")
