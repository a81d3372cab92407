"""Hostile and odd inputs: each is either indexed, or skipped with its reason in the report, or refused with a
one-line error — never a traceback, and never at the cost of what is already stored."""
import csv
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medsearch.cli import main
from medsearch.ingest.indexing import index_dataset
from medsearch.errors import MedsearchError
from medsearch.ingest.images import MAX_PIXELS
from medsearch.storage.store import read_store

from ..conftest import index_tiny, make_image, store_files


_index = index_tiny


def _hostile_folder(root):
    good, odd = root / "good", root / "odd"
    good.mkdir(parents=True)
    odd.mkdir()
    for i in range(4):
        make_image(good / f"g{i}.png", 0, i)
    rnd = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rnd).save(odd / "truncated.jpg")
    (odd / "truncated.jpg").write_bytes((odd / "truncated.jpg").read_bytes()[:200])
    (odd / "empty.png").write_bytes(b"")
    (odd / "text.png").write_text("hello, I am not a PNG")
    Image.fromarray((np.arange(4096).reshape(64, 64) * 16).astype(np.uint16)).save(odd / "sixteen.png")
    Image.new("P", (16, 16), 3).save(odd / "palette.png")
    Image.new("CMYK", (16, 16), (0, 50, 100, 0)).save(odd / "cmyk.jpg")
    side = int(MAX_PIXELS ** 0.5) + 1
    Image.new("1", (side, side)).save(odd / "bomb.png")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(odd / "one.png")
    frames = [Image.new("P", (8, 8), c) for c in (1, 2)]
    frames[0].save(odd / "anim.gif", save_all=True, append_images=frames[1:])
    os.symlink(odd / "loop_b.png", odd / "loop_a.png")
    os.symlink(odd / "loop_a.png", odd / "loop_b.png")
    Image.new("RGB", (8, 8)).save(os.path.join(os.fsencode(odd), b"caf\xe9-latin1.png"))  # not valid UTF-8
    return root


def test_every_odd_file_is_indexed_or_reported(tmp_path, tiny):
    root = _hostile_folder(tmp_path / "ds")
    summary = _index(root, tmp_path / "out")
    problems = {os.path.basename(p["source"]): p["reason"] for p in summary.models["tiny"].problems}
    assert "cannot decode" in problems["truncated.jpg"]
    assert "not a readable image" in problems["empty.png"]
    assert "not a readable image" in problems["text.png"]
    assert "too large" in problems["bomb.png"]
    assert "symbolic links" in problems["loop_a.png"] and "symbolic links" in problems["loop_b.png"]
    assert len(problems) == 6
    data = read_store(tmp_path / "out")
    embedded = {os.path.basename(s) for s, st_ in zip(data.sources, data.models["tiny"].state) if st_ == 1}
    assert {"sixteen.png", "palette.png", "cmyk.jpg", "one.png", "anim.gif", "caf\udce9-latin1.png"} <= embedded
    report = json.loads((tmp_path / "out" / "index_report.json").read_text())
    assert len(report["models"]["tiny"]["problems"]) == 6


def test_permission_denied_is_a_reported_skip(tmp_path, tiny, monkeypatch):
    root = tmp_path / "ds"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        make_image(root / c / "x.png", 0, 0)
        make_image(root / c / "y.png", 1, 1)
    os.chmod(root / "a" / "x.png", 0)
    if os.geteuid() == 0:  # root reads anything: make the OS answer as it would for a normal user
        real_open = Image.open
        def deny(fp, *a, **k):
            if str(fp).endswith(os.path.join("a", "x.png")):
                raise PermissionError(13, "Permission denied", str(fp))
            return real_open(fp, *a, **k)
        monkeypatch.setattr("medsearch.ingest.images.Image.open", deny)
    summary = _index(root, tmp_path / "out")
    problems = summary.models["tiny"].problems
    assert [(p["source"], p["reason"]) for p in problems] == [("a/x.png", "permission denied")]


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_manifest_escape_and_missing_are_reported_not_read(tmp_path, tiny):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        make_image(root / "images" / f"{i}.png", i % 2, i)
    _csv(root / "labels.csv", ["image", "label"],
         [["0.png", "a"], ["1.png", "b"], ["2.png", "a"], ["../../etc/passwd", "b"], ["gone.png", "a"]])
    problems = {p["id"]: p["reason"] for p in _index(root, tmp_path / "out").models["tiny"].problems}
    assert problems == {"../../etc/passwd": "path escapes the dataset folder", "gone.png": "file not found"}


@pytest.mark.parametrize("cols,rows,match", [
    (["image", "A", "B"], [["0.png", "1", "yes"], ["1.png", "0", "1"]], None),  # not 0/1: B is no label column
    (["image"], [["0.png"], ["1.png"]], "no label column"),
    (["image", "label"], [["0.png", "x"], ["0.png", "y"]], "twice"),
    (["image", "label"], [["0.png", "x"], ["1.png", "x"]], "single class"),
])
def test_bad_manifests_are_one_line_errors(tmp_path, tiny, cols, rows, match):
    root = tmp_path / "ds"
    root.mkdir()
    for i in range(2):
        make_image(root / f"{i}.png", i, i)
    _csv(root / "labels.csv", cols, rows)
    if match is None:
        with pytest.raises(MedsearchError, match="no label column"):
            _index(root, tmp_path / "out")
        with pytest.raises(MedsearchError, match="must hold 0 or 1"):
            _index(root, tmp_path / "out", label_cols=["A", "B"])
    else:
        with pytest.raises(MedsearchError, match=match):
            _index(root, tmp_path / "out")


def test_unknown_class_names_do_not_touch_the_store(tmp_path, tiny):
    root = tmp_path / "ds"
    for c in ("benign", "malignant"):
        (root / c).mkdir(parents=True)
        make_image(root / c / "1.png", 0, 1)
    _index(root, tmp_path / "out")
    before = store_files(tmp_path / "out")
    (root / "normal").mkdir()
    make_image(root / "normal" / "1.png", 1, 2)
    with pytest.raises(MedsearchError, match="holds a different dataset"):
        _index(root, tmp_path / "out")
    assert store_files(tmp_path / "out") == before


def test_foreign_index_file_is_refused_by_query(tmp_path, folder_dataset):
    out = tmp_path / "out"
    index_dataset(str(folder_dataset), out=str(out), models=("mobilenet-v2",), random_init=True, progress=False, resize=64, crop=64)
    (out / "mobilenet-v2.faiss").write_bytes(b"\x00" * 100)
    res = CliRunner().invoke(main, ["query", str(folder_dataset / "benign" / "benign_00.png"), "--index", str(out)])
    assert res.exit_code == 2 and "does not match the store" in res.output and res.output.count("\n") == 1


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=12)
cells = st.one_of(names, st.sampled_from(["0", "1", "0.0", "", "a.png", "../x.png", "1.png", "b0.png", "b1", "b2.png"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.one_of(names, st.sampled_from(["image", "label", "A", "B", "patient_id"])), min_size=1, max_size=5),
       body=st.lists(st.lists(cells, min_size=0, max_size=6), min_size=0, max_size=8),
       blobs=st.lists(st.binary(max_size=300), min_size=0, max_size=3))
def test_property_any_manifest_and_bytes_index_or_report(tmp_path_factory, tiny, header, body, blobs):
    root = tmp_path_factory.mktemp("prop")
    make_image(root / "1.png", 0, 0)
    for i, blob in enumerate(blobs):
        (root / f"b{i}.png").write_bytes(blob)
    _csv(root / "labels.csv", header, body)
    try:
        summary = _index(root, root / "out")
    except MedsearchError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    m = summary.models["tiny"]
    assert m.embedded + m.skipped + m.zero_filled == summary.rows
