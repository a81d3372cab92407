"""Images named by s3:// URIs, read where they are through pyarrow: a local S3 server (moto, in its own process)
holds real BUSI images; both engines index them, record each source as given with the sha256 of the bytes
read, and embed them as they embed the same images read from disk."""
from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from medsearch.storage.schema import EMBEDDED, SKIPPED
from medsearch.storage.store import read_store

from ..conftest import needs_shared
from .conftest import BUSI
from .ray_helpers import MODEL, RAY_ENV, free_port, index_cmd

pytest.importorskip("moto")
pytest.importorskip("pyarrow")
pytest.importorskip("ray")
SMALL = ("--resize", "72", "--crop", "64")


@pytest.fixture(scope="module")
def s3():
    """A local S3 endpoint and the environment every process (driver, Ray workers) reads it with."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/scans", method="PUT"))  # the bucket
        yield {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": endpoint}
    finally:
        server.kill()
        server.wait()


def _upload(env: dict, files: list, prefix: str) -> list[str]:
    from pyarrow import fs

    bucket = fs.S3FileSystem(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                             region=env["AWS_DEFAULT_REGION"], endpoint_override=env["AWS_ENDPOINT_URL"])
    uris = []
    for i, path in enumerate(files):
        key = f"scans/{prefix}/{i:02d}_{path.name}"
        with bucket.open_output_stream(key) as f:
            f.write(path.read_bytes())
        uris.append(f"s3://{key}")
    return uris


def _manifest(folder, images, labels):
    folder.mkdir(exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "label"], *zip(images, labels)])
    return folder


def _index(dataset, out, env, *extra):
    res = subprocess.run(index_cmd(dataset, out, *SMALL, *extra), env={**os.environ, **RAY_ENV, **env},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return read_store(out)


def test_s3_images_are_read_where_they_are_by_both_engines(s3, tmp_path):
    needs_shared("breast-busi")
    files = sorted((BUSI / "benign").iterdir())[:5] + sorted((BUSI / "malignant").iterdir())[:5]
    labels = ["benign"] * 5 + ["malignant"] * 5
    uris = _upload(s3, files, "busi") + ["s3://scans/busi/not-there.png"]
    on_s3 = _manifest(tmp_path / "s3", uris, labels + ["benign"])
    (tmp_path / "disk" / "images").mkdir(parents=True)
    for uri, path in zip(uris, files):
        os.symlink(path, tmp_path / "disk" / "images" / uri.rsplit("/", 1)[1])
    on_disk = _manifest(tmp_path / "disk", [u.rsplit("/", 1)[1] for u in uris[:10]], labels)
    disk = _index(on_disk, tmp_path / "disk-store", {})
    want = disk.models[MODEL].embedding[np.arange(10)]
    for engine in ("local", "ray"):
        data = _index(on_s3, tmp_path / engine, s3, "--engine", engine)
        m = data.models[MODEL]
        assert data.sources == uris
        assert (m.state[:10] == EMBEDDED).all() and m.state[10] == SKIPPED and m.reason[10] == "file not found"
        assert data.sha256[:10] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
        np.testing.assert_allclose(m.embedding[np.arange(10)], want, rtol=1e-4, atol=1e-4)
