"""Where a row's image is read from: URIs read where they are (file://; s3:// and gs:// through pyarrow),
paths under the dataset root, arrays of an .npz, and the guard that keeps stored paths under the root."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
from PIL import Image

from medsearch.errors import ImageError
from medsearch.ingest.sources import (SHA256_INFO, RowSource, open_source, open_stored_file, open_uri, read_uri,
                                      unreadable_uri, uri_scheme)

from ..conftest import make_image


@pytest.mark.parametrize("source, scheme", [("s3://b/k.png", "s3"), ("GS://b/k", "gs"), ("file:///x.png", "file"),
                                            ("images/a.png", None), ("C:/x.png", None), ("a://", "a")])
def test_uri_scheme(source, scheme):
    assert uri_scheme(source) == scheme


def test_unreadable_uris_say_why():
    assert "scheme 'http' is not read" in unreadable_uri("http://example.org/x.png")
    assert "absolute path" in unreadable_uri("file://relative/x.png")
    assert unreadable_uri("s3://bucket/x.png") is None and unreadable_uri("images/x.png") is None


def test_a_file_uri_is_read_with_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "dir with space" / "x.png"
    path.parent.mkdir()
    make_image(path, 1, 3)
    img = open_uri(path.as_uri())  # percent-encoded space
    assert img.mode == "RGB" and img.size == Image.open(path).size
    assert img.info[SHA256_INFO] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ImageError, match="file not found"):
        read_uri((tmp_path / "gone.png").as_uri())
    with pytest.raises(ImageError, match="not a readable image"):
        (tmp_path / "junk.png").write_bytes(b"not an image")
        open_uri((tmp_path / "junk.png").as_uri())


def test_paths_and_uris_open_alike_and_stored_paths_stay_under_the_root(tmp_path):
    make_image(tmp_path / "a.png", 0, 1)
    by_path = np.asarray(open_source(str(tmp_path), "a.png"))
    assert (np.asarray(open_source("/elsewhere", (tmp_path / "a.png").as_uri())) == by_path).all()
    assert (np.asarray(open_stored_file(str(tmp_path), "a.png")) == by_path).all()
    for bad in ("../a.png", "/etc/passwd"):
        with pytest.raises(ImageError, match="not a path under the dataset root"):
            open_stored_file(str(tmp_path), bad)


def test_a_row_source_travels_to_another_process_and_reads_npz_rows(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    np.savez(tmp_path / "d.npz", train_images=images, train_labels=np.zeros((2, 1)))
    source = pickle.loads(pickle.dumps(RowSource(str(tmp_path / "d.npz"), npz=True)))
    assert np.asarray(source.open("train/1"))[:, :, 0].tolist() == images[1].tolist()
