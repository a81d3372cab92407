"""An index of DICOM copies of real images finds the same neighbours as the index of the originals: every query's
top-1 for lossless transfer syntaxes (the pixels are the same), at least 95% for JPEG baseline. Real weights
(efficientnet-lite0), 60 ISIC 2018 dermoscopy images; and `query` with a DICOM file against the DICOM store.

(BUSI is not used here: it holds near-duplicate images whose top-1 flips between two almost equal neighbours
under any small change of pixels, re-encoding the originals as JPEG included.)"""
import csv
import os

import numpy as np
import pytest
from pydicom import uid as U

from medsearch.ingest.indexing import index_dataset
from medsearch.search.query import query
from medsearch.storage.store import read_store

from ...conftest import needs_shared
from .writers import dicom_copy

pytestmark = pytest.mark.slow
MODEL = "efficientnet-lite0"
LOSSLESS = (U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian, U.DeflatedExplicitVRLittleEndian, U.RLELossless,
            U.JPEGLSLossless, U.JPEG2000Lossless, U.JPEGLosslessSV1)


def isic_subset(root, per_class=20, classes=("0", "1", "4")):
    """Class folders of the first ``per_class`` ISIC 2018 images of classes MEL, NV and BKL (symlinks)."""
    isic = needs_shared("skin-isic2018")
    with open(isic / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for c in classes:
        (root / c).mkdir(parents=True)
        for r in [r for r in rows if r["label"] == c][:per_class]:
            os.symlink(isic / "images" / f"{r['image']}.jpg", root / c / f"{r['image']}.jpg")
    return root


def dicom_copies(src, dst, syntaxes):
    """The dataset ``src`` (class folders) as DICOM files, the i-th file in ``syntaxes[i % len]``, extensionless
    every third one (found by content)."""
    for i, png in enumerate(sorted(p for p in src.rglob("*.jpg"))):
        rel = png.relative_to(src)
        out = dst / rel.parent / (rel.stem + ("" if i % 3 == 2 else ".dcm"))
        out.parent.mkdir(parents=True, exist_ok=True)
        dicom_copy(png, out, syntaxes[i % len(syntaxes)])
    return dst


def top1(out) -> dict[str, str]:
    """Each row's nearest other row (cosine), keyed by file stem so that copies and originals compare."""
    data = read_store(out)
    m = data.models[MODEL]
    emb = np.asarray(m.embedding[np.arange(len(data))], np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    stem = [s.rsplit("/", 1)[-1].removesuffix(".jpg").removesuffix(".dcm") for s in data.sources]
    return {stem[r]: stem[int(np.argmax(sims[r]))] for r in range(len(data))}


def test_dicom_copies_find_the_same_neighbours(tmp_path):
    src = isic_subset(tmp_path / "originals")
    common = dict(models=(MODEL,), resize=128, crop=112, progress=False)
    index_dataset(str(src), out=str(tmp_path / "i_orig"), **common)
    want = top1(tmp_path / "i_orig")
    assert len(want) == 60
    lossless = dicom_copies(src, tmp_path / "lossless", LOSSLESS)
    index_dataset(str(lossless), out=str(tmp_path / "i_lossless"), **common)
    assert top1(tmp_path / "i_lossless") == want
    jpeg = dicom_copies(src, tmp_path / "jpeg", (U.JPEGBaseline8Bit,))
    index_dataset(str(jpeg), out=str(tmp_path / "i_jpeg"), **common)
    got = top1(tmp_path / "i_jpeg")
    agree = np.mean([got[k] == v for k, v in want.items()])
    assert agree >= 0.95, agree
    # a DICOM file as the query, against the DICOM store: it is found as itself (left out) and its neighbour agrees
    probe = sorted((lossless / "0").iterdir())[0]
    (res,) = query([str(probe)], index_dir=str(tmp_path / "i_lossless"), k=3)
    assert res.neighbours and res.neighbours[0].id.rsplit("/", 1)[-1].removesuffix(".dcm") == \
        want[probe.name.removesuffix(".dcm")]
