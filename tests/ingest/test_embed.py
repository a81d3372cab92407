import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from medsearch.ingest import embed
from medsearch.ingest.embed import aligned_batches, embed_rows
from medsearch.errors import ImageError, MedsearchError
from medsearch.storage.schema import EMBEDDED, SKIPPED, ZERO_FILLED


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


# --- how decoding shares the cores with the forward pass (issue 12) ---

@pytest.mark.parametrize("workers, cores, torch_threads, on_cpu, overlap", [
    (2, 2, 2, True, False),     # 2-core machine, defaults: decoding and the forward pass take turns
    (1, 2, 2, True, False),     # one decode thread would still take a core from torch
    (1, 2, 1, True, True),      # torch limited to one thread: the other core decodes meanwhile
    (16, 16, 16, True, False),  # big box, torch on every core
    (2, 16, 14, True, True),    # torch limited by the user: the cores it leaves decode meanwhile
    (16, 16, 16, False, True),  # model on an accelerator: every core decodes ahead of it
])
def test_overlap_rule(workers, cores, torch_threads, on_cpu, overlap):
    assert embed.overlaps_forward(workers, cores=cores, torch_threads=torch_threads, on_cpu=on_cpu) is overlap


class TracingEncoder(FakeEncoder):
    """Records which rows had been opened, and how many decodes were in flight, at each forward pass."""

    def __init__(self, device="cpu"):
        self.device = SimpleNamespace(type=device)
        self.lock = threading.Lock()
        self.opened, self.in_flight, self.seen = [], 0, []

    def opener(self):
        def open_image(row, draft_size=None):
            with self.lock:
                self.opened.append(row)
                self.in_flight += 1
            try:
                time.sleep(0.002)  # long enough for a decode to be caught in flight
                return Image.new("RGB", (10, 10), (row, row, row))
            finally:
                with self.lock:
                    self.in_flight -= 1
        return open_image

    def encode(self, batch):
        with self.lock:
            self.seen.append((len(batch), sorted(self.opened), self.in_flight))
        return super().encode(batch)


def test_cpu_forward_pass_and_decoding_take_turns(monkeypatch):
    monkeypatch.setattr(embed, "available_cores", lambda: 2)  # 2 decode threads + torch's >= 1 > 2 cores
    enc = TracingEncoder("cpu")
    batches = list(embed_rows(enc.opener(), np.arange(20), enc, batch_size=4, workers=2, progress=False))
    assert np.concatenate([b.rows for b in batches]).tolist() == list(range(20))
    assert len(enc.seen) == 5
    for k, (n, opened, in_flight) in enumerate(enc.seen):
        # no decode runs during a forward pass, and no later batch has even started decoding
        assert in_flight == 0 and opened == list(range(4 * (k + 1))), (k, opened, in_flight)


def test_decoding_runs_ahead_of_a_model_on_an_accelerator():
    enc = TracingEncoder("cuda")
    second_batch_opened = threading.Event()
    base = enc.opener()

    def open_image(row, draft_size=None):
        if row == 4:
            second_batch_opened.set()
        return base(row, draft_size)

    def encode(batch, _encode=enc.encode):
        if not enc.seen:  # the first forward pass waits for the pool to reach the second batch
            assert second_batch_opened.wait(10), "the next batch was not decoding during the forward pass"
        return _encode(batch)

    enc.encode = encode
    batches = list(embed_rows(open_image, np.arange(12), enc, batch_size=4, workers=2, progress=False))
    assert [b.rows.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_torch_thread_count_is_left_as_it_was():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        list(embed_rows(_opener(), np.arange(10), FakeEncoder(), batch_size=4, workers=2, progress=False))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


RESTORED = [("mallopt", embed._M_MMAP_MAX, 65536), ("mallopt", embed._M_MMAP_THRESHOLD, 32 << 20),
            ("mallopt", embed._M_TRIM_THRESHOLD, 64 << 20), ("malloc_trim", 0)]


def test_reuse_freed_memory_sets_once_and_restores_once():
    libc = FakeLibc()
    with embed.reuse_freed_memory(libc):
        kept = [("mallopt", embed._M_MMAP_MAX, 0), ("mallopt", embed._M_TRIM_THRESHOLD, 2**31 - 1)]
        assert libc.calls == kept
        with embed.reuse_freed_memory(libc):  # nested (a benchmark around index): no change inside
            assert libc.calls == kept
        assert libc.calls == kept
    assert libc.calls == kept + RESTORED


def test_embed_rows_restores_malloc_when_the_caller_stops_early(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(embed, "_glibc", lambda: libc)
    rows = embed_rows(_opener(), np.arange(12), FakeEncoder(), batch_size=4, progress=False)
    next(rows)
    assert libc.calls[-1] == ("mallopt", embed._M_TRIM_THRESHOLD, 2**31 - 1)
    rows.close()
    assert libc.calls[-4:] == RESTORED


def test_embed_rows_leaves_malloc_alone_for_a_model_on_an_accelerator(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(embed, "_glibc", lambda: libc)
    enc = TracingEncoder("cuda")
    list(embed_rows(enc.opener(), np.arange(4), enc, batch_size=4, progress=False))
    assert libc.calls == []


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_MAX_": "0"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1000000"}])
def test_malloc_tuned_in_the_environment_is_left_alone(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert embed._glibc() is None
