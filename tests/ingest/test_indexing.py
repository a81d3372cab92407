"""`medsearch index` refuses what would make a store lie (issue 12): another dataset poured into a store, a
store key that aliases the index folder, sizes no encoder can use, names that split output lines; and it
notices what changed on disk and which images are duplicates."""
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from medsearch.cli import main
from medsearch.ingest.indexing import index_dataset
from medsearch.search.query import query
from medsearch.storage.store import EMBEDDED, read_store

from ..conftest import FAST, index_tiny, make_image, needs_shared

REAL = dict(models=("mobilenet-v2",), random_init=True, progress=False, **FAST)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(res, *fragments):
    assert res.exit_code == 2, res.output
    assert res.output.startswith("medsearch: error:") and res.output.count("\n") == 1, res.output
    for f in fragments:
        assert f in res.output, res.output


def _two_classes(root, names=("a", "b"), seed=0):
    for c in ("benign", "malignant"):
        (root / c).mkdir(parents=True)
        for j, n in enumerate(names):
            make_image(root / c / f"{n}.png", int(c == "malignant"), seed + 10 * j + int(c == "malignant"))
    return root


# ---- defect 3: one dataset per store ------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("a", "b"), ("c", "d")])
def test_another_dataset_is_refused_and_nothing_stored_changes(tmp_path, tiny, names):
    """Same class names, same or other file names: still another dataset; the store is left byte for byte."""
    first = _two_classes(tmp_path / "first")
    other = _two_classes(tmp_path / "other", names, seed=50)
    out = tmp_path / "out"
    index_tiny(first, out)
    before = (out / "store.h5").read_bytes()
    res = _run("index", other, "--out", out, "--model", "tiny", "--quiet")
    _one_line_error(res, "belongs to the dataset", str(first.resolve()), "--moved-from")
    assert (out / "store.h5").read_bytes() == before


def test_a_moved_dataset_is_followed_and_verified_file_by_file(tmp_path, tiny):
    first = _two_classes(tmp_path / "first")
    out = tmp_path / "out"
    index_tiny(first, out)
    before = read_store(out)
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)  # a copy: new mtimes, same bytes
    make_image(moved / "benign" / "b.png", 1, 99)  # ... but one file was replaced on the way
    (tmp_path / "link").symlink_to(tmp_path)  # the old place named through a link still counts
    summary = index_tiny(moved, out, moved_from=str(tmp_path / "link" / "first"))
    after = read_store(out)
    assert after.attrs["dataset_root"] == str(moved.resolve()) and after.ids == before.ids
    assert summary.changes.changed_on_disk == 1
    assert summary.models["tiny"].embedded_this_run == 1
    row = after.ids.index("benign/b.png")
    same = [r for r in range(len(after)) if r != row]
    assert (after.models["tiny"].embedding[same] == before.models["tiny"].embedding[same]).all()
    assert not (after.models["tiny"].embedding[row] == before.models["tiny"].embedding[row]).all()
    res = _run("index", moved, "--out", out, "--model", "tiny", "--moved-from", tmp_path / "elsewhere", "--quiet")
    _one_line_error(res, "is not where the store's dataset was")


def test_a_file_changed_in_place_is_re_embedded_and_found_by_query(tmp_path, folder_dataset):
    out = tmp_path / "out"
    index_dataset(str(folder_dataset), out=str(out), **REAL)
    target = folder_dataset / "benign" / "benign_03.png"
    shutil.copy(folder_dataset / "malignant" / "malignant_07.png", target)  # same name, other image
    summary = index_dataset(str(folder_dataset), out=str(out), **REAL)
    assert summary.changes.changed_on_disk == 1 and summary.models["mobilenet-v2"].embedded_this_run == 1
    data = read_store(out)
    assert (data.models["mobilenet-v2"].state == EMBEDDED).all()
    hits = query([str(folder_dataset / "malignant" / "malignant_07.png")], index_dir=str(out), k=2,
                 exclude_self=False)[0].neighbours
    top = {h.source: h.similarity for h in hits}  # the index holds the new content under the old row
    assert set(top) == {"benign/benign_03.png", "malignant/malignant_07.png"} and min(top.values()) > 0.999
    again = index_dataset(str(folder_dataset), out=str(out), **REAL)
    assert again.changes.changed_on_disk == 0 and again.models["mobilenet-v2"].embedded_this_run == 0


def test_a_corrected_manifest_updates_the_stored_labels(tmp_path, tiny):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    for i in range(4):
        make_image(root / "images" / f"{i}.png", i % 2, i)
    (root / "labels.csv").write_text("image,label\n0.png,a\n1.png,b\n2.png,a\n3.png,b\n")
    index_tiny(root, tmp_path / "out")
    (root / "labels.csv").write_text("image,label\n0.png,a\n1.png,b\n2.png,b\n3.png,b\n")
    summary = index_tiny(root, tmp_path / "out")
    assert summary.changes.relabelled == 1 and read_store(tmp_path / "out").labels.tolist() == [0, 1, 1, 1]


# ---- defect 4: duplicates reported, on the real BUSI data ----------------------------------------------------


def test_real_busi_duplicate_with_two_labels_is_reported(tmp_path, tiny):
    busi = needs_shared("breast-busi")
    summary = index_tiny(busi, tmp_path / "out", workers=2)
    dup = summary.duplicates
    assert dup.identical_files == 1 and dup.with_conflicting_labels == 1
    assert sorted(r["id"] for r in dup.groups[0]) == ["benign/benign (433).png", "malignant/malignant (145).png"]
    data = read_store(tmp_path / "out")
    assert len(data.sha256) == 780 and all(len(s) == 64 for s in data.sha256)


# ---- defect 7: store keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "!!!", ".hidden", "/"])
def test_names_that_alias_the_folder_are_refused(tmp_path, tiny, folder_dataset, name):
    res = _run("index", folder_dataset, "--out", tmp_path / "out", "--model", "tiny", "--name", name, "--quiet")
    _one_line_error(res, "--name")
    assert not (tmp_path / "out").exists()


# ---- defect 9: sizes and options checked before any work -----------------------------------------------------


@pytest.mark.parametrize("args,fragment", [
    (["--crop", "100000"], "GiB"),
    (["--crop", "1"], "too small"),
    (["--resize", "0"], "--resize 0 is too small"),
    (["--resize", "64", "--crop", "128"], "larger than --resize"),
    (["--batch-size", "100000", "--crop", "1024"], "--batch-size"),
    (["--commit-every", "nan"], "--commit-every"),
    (["--device", "quantum"], "unknown device"),
])
def test_bad_sizes_are_refused_up_front(tmp_path, folder_dataset, args, fragment):
    res = _run("index", folder_dataset, "--out", tmp_path / "out", "--model", "mobilenet-v2", "--random-init",
               "--quiet", *args)
    _one_line_error(res, fragment)
    assert not (tmp_path / "out").exists()


def test_identical_embeddings_are_warned_about(tmp_path, tiny, monkeypatch):
    import medsearch.ingest.indexing as index_module
    from ..conftest import TinyEncoder

    class Flat(TinyEncoder):
        def encode(self, batch):
            return np.ones((len(batch), 3), np.float32)

    monkeypatch.setattr(index_module, "load_encoder", lambda *a, **k: Flat())
    summary = index_tiny(_two_classes(tmp_path / "ds"), tmp_path / "out")
    assert summary.models["tiny"].identical_embeddings["all_identical"]
    again = index_tiny(tmp_path / "ds", tmp_path / "out")  # a run that embeds nothing does not hash every row again
    assert again.models["tiny"].identical_embeddings == {"checked": False, "why": "nothing was embedded in this run"}


# ---- defect 10: one line per item ------------------------------------------------------------------------------


def test_newline_in_a_file_name_does_not_split_index_output(tmp_path, tiny):
    root = _two_classes(tmp_path / "ds")
    (root / "benign" / "evil\nskipped: fake.png").write_bytes(b"not an image")
    res = _run("index", root, "--out", tmp_path / "out", "--model", "tiny", "--quiet")
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
    res = _run("query", folder_dataset / "malignant" / "malignant_07.png", "--index", out)
    _one_line_error(res, "out of date", "medsearch index")
    index_dataset(str(folder_dataset), out=str(out), **REAL)  # finishing the run makes the index current again
    assert _run("query", folder_dataset / "malignant" / "malignant_07.png", "--index", out).exit_code == 0


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
    summary = index_tiny(_two_classes(tmp_path / "ds"), tmp_path / "out")
    m = summary.models["tiny"]
    assert m.skipped == 1 and m.embedded == 3 and "not finite" in m.problems[0]["reason"]
    assert np.isfinite(read_store(tmp_path / "out").models["tiny"].embedding).all()
