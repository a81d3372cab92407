"""Tests for medsearch.ingest.reconcile (issue 12, defect 3): a store belongs to one dataset, follows it when it
moves (verified file by file), re-embeds a file changed on disk and takes over corrected labels."""

import shutil

import pytest

from medsearch.ingest.indexing import index_dataset
from medsearch.search.query import query
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import read_store

from ..conftest import cli_error_line, index_tiny, make_image, run_cli, store_files
from .conftest import REAL, two_classes


@pytest.mark.parametrize("names", [("a", "b"), ("c", "d")])
def test_another_dataset_is_refused_and_nothing_stored_changes(tmp_path, tiny, names):
    """Same class names, same or other file names: still another dataset; the store is left byte for byte."""
    first = two_classes(tmp_path / "first")
    other = two_classes(tmp_path / "other", names, seed=50)
    out = tmp_path / "out"
    index_tiny(first, out)
    before = store_files(out)
    res = run_cli("index", other, "--out", out, "--model", "tiny", "--quiet")
    cli_error_line(res, "belongs to the dataset", str(first.resolve()), "--moved-from")
    assert store_files(out) == before


def test_a_moved_dataset_is_followed_and_verified_file_by_file(tmp_path, tiny):
    first = two_classes(tmp_path / "first")
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
    res = run_cli("index", moved, "--out", out, "--model", "tiny", "--moved-from", tmp_path / "elsewhere", "--quiet")
    cli_error_line(res, "is not where the store's dataset was")


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
