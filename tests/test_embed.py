from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medsearch.embed import aligned_batches, embed_rows
from medsearch.errors import ImageError, MedsearchError
from medsearch.store import EMBEDDED, SKIPPED, ZERO_FILLED


class FakeEncoder:
    """Mean colour of an 8x8 thumbnail: enough to check the pipeline's bookkeeping."""

    dim = 3
    preprocess = SimpleNamespace(resize=8)

    def prepare(self, img):
        return np.asarray(img.resize((8, 8)), dtype=np.uint8)

    def encode(self, batch):
        return batch.reshape(len(batch), -1, 3).mean(1).astype(np.float32) + 1

    def encode_zero(self, n):
        return np.full((n, 3), -1, np.float32)


def _opener(bad=()):
    def open_image(row, draft_size=None):
        if row in bad:
            raise ImageError(f"row {row} is broken")
        return Image.new("RGB", (10, 10), (row, row, row))
    return open_image


def test_aligned_batches_do_not_depend_on_what_is_done():
    full = aligned_batches(np.arange(10), 4)
    assert [b.tolist() for b in full] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    resumed = aligned_batches(np.array([9, 4, 5, 6, 7, 8]), 4)  # rows 0-3 were done before a crash
    assert [b.tolist() for b in resumed] == [[4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize("workers", [1, 3])
def test_every_row_once_in_order(workers):
    batches = list(embed_rows(_opener(), np.arange(23), FakeEncoder(), batch_size=5, workers=workers, progress=False))
    rows = np.concatenate([b.rows for b in batches])
    assert rows.tolist() == list(range(23))
    emb = np.concatenate([b.embedding for b in batches])
    assert np.allclose(emb[:, 0], np.arange(23) + 1)


def test_skip_and_zero():
    skip = list(embed_rows(_opener({2}), np.arange(4), FakeEncoder(), batch_size=4, progress=False))[0]
    assert skip.state.tolist() == [EMBEDDED, EMBEDDED, SKIPPED, EMBEDDED] and skip.reason[2] == "row 2 is broken"
    zero = list(embed_rows(_opener({2}), np.arange(4), FakeEncoder(), batch_size=4, on_missing="zero", progress=False))[0]
    assert zero.state[2] == ZERO_FILLED and (zero.embedding[2] == -1).all()


def test_unexpected_decoder_error_is_a_skip_not_a_crash():
    def open_image(row, draft_size=None):
        raise RuntimeError("decoder bug")
    b = list(embed_rows(open_image, np.arange(2), FakeEncoder(), progress=False))[0]
    assert (b.state == SKIPPED).all() and "decoder bug" in b.reason[0]


def test_bad_options():
    with pytest.raises(MedsearchError, match="on-missing"):
        list(embed_rows(_opener(), np.arange(2), FakeEncoder(), on_missing="nope"))
