"""Test-time views (`index --views hflip`): each embedding is the mean of the encoder's embeddings of the image
and of its views, stored as the model variant MODEL-hflip with the views in its provenance, and queried the
same way; real EfficientNet-Lite0 weights, real BUSI images."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from medsearch.errors import MedsearchError
from medsearch.ingest.encoders import get_spec, load_encoder, preprocess_with
from medsearch.ingest.index_options import IndexOptions
from medsearch.ingest.indexing import index_dataset
from medsearch.search.query import query
from medsearch.storage.store import provenance, read_store

from ..conftest import needs_shared, raises_one_line
from .conftest import busi_subset

MODEL = "efficientnet-lite0"


@pytest.fixture(scope="module")
def preprocess():
    return preprocess_with(get_spec(MODEL).preprocess, resize=72, crop=64)


def _pixels(img, encoder):
    return np.stack([encoder.prepare(img)])


def test_a_view_embedding_is_the_mean_over_the_image_and_its_mirror(preprocess):
    busi = needs_shared("breast-busi")
    img = Image.open(busi / "benign" / "benign (3).png").convert("RGB")
    plain = load_encoder(MODEL, preprocess=preprocess)
    flipped = load_encoder(MODEL, preprocess=preprocess, views=("hflip",))
    a, b = plain.encode(_pixels(img, plain)), plain.encode(_pixels(ImageOps.mirror(img), plain))
    both = flipped.encode(_pixels(img, flipped))
    np.testing.assert_allclose(both, (a + b) / 2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-3)  # the mirror really is another input
    # hence a view model cannot tell an image from its mirror (up to the resampling of the crop)
    np.testing.assert_allclose(flipped.encode(_pixels(ImageOps.mirror(img), flipped)), both, rtol=1e-3, atol=1e-3)
    assert flipped.provenance()["views"] == ["hflip"] and "views" not in plain.provenance()


def test_index_stores_the_view_variant_beside_the_plain_model_and_query_uses_its_views(tmp_path):
    busi = needs_shared("breast-busi")
    ds = busi_subset(tmp_path / "ds", 8, classes=("benign", "malignant"))
    out = tmp_path / "idx"
    common = dict(out=str(out), models=(MODEL,), resize=72, crop=64, progress=False)
    index_dataset(str(ds), **common)
    summary = index_dataset(str(ds), views=("hflip",), **common)
    assert list(summary.models) == [f"{MODEL}-hflip"]
    data = read_store(out)
    assert sorted(data.models) == [MODEL, f"{MODEL}-hflip"]
    assert provenance(data.models[f"{MODEL}-hflip"])["views"] == ["hflip"]
    probe = sorted((busi / "benign").iterdir())[20]
    mirrored = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(probe)).save(mirrored)
    a, b = query([str(probe), str(mirrored)], index_dir=str(out), model=f"{MODEL}-hflip", k=5)
    assert [n.id for n in a.neighbours] == [n.id for n in b.neighbours]
    np.testing.assert_allclose([n.similarity for n in a.neighbours], [n.similarity for n in b.neighbours], atol=2e-3)
    assert json.dumps(a.to_json())  # the result serialises as any other


def test_views_are_checked_and_never_mixed_into_a_plain_model(tmp_path):
    with pytest.raises(MedsearchError, match="use hflip or vflip"):
        IndexOptions(views=("rot90",)).store_keys()
    assert IndexOptions(models=("m",), views=("vflip", "hflip")).store_keys() == {"m": "m-hflip-vflip"}
    assert IndexOptions(models=("m",), views=("hflip",), name="mine").store_keys() == {"m": "mine"}
    needs_shared("breast-busi")
    ds = busi_subset(tmp_path / "ds", 2, classes=("benign", "malignant"))
    common = dict(out=str(tmp_path / "idx"), models=(MODEL,), resize=72, crop=64, progress=False, name="x")
    index_dataset(str(ds), **common)
    line = raises_one_line(lambda: index_dataset(str(ds), views=("hflip",), **common))
    assert "already holds 'x' made with another views" in line
