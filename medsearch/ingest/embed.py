"""Turn rows of a dataset into embeddings, batch by batch, as fast as the forward pass allows.

Decoding (PIL, which releases the GIL) runs in a pool of ``workers`` threads (`medsearch index --workers`, one
per CPU by default). Whether it may run alongside the forward pass depends on the cores the forward pass needs
(``overlaps_forward``): a model on an accelerator leaves every CPU core to decoding, so the pool decodes a few
batches ahead of it; a model on the CPU keeps torch's intra-op threads busy, and when those plus the decode
threads exceed the cores, decoding and the forward pass take turns instead, each with all its threads: the
pool decodes the next batch while the caller handles the current one (journal writes), and no decoding is in
flight while the model runs. Running both at once there oversubscribes the cores: a descheduled intra-op
thread stalls the others at the end of every operator, which costs the forward pass more than the decoding
it hides once decoding is a sizeable share of the work. torch's thread count is left as it is.

On the CPU, glibc's malloc hands every freed block above its mmap threshold (at most 32 MiB) back to the
kernel, and a CNN's activations for a batch are larger (EfficientNet-Lite0's expanded layers hold 96 x 112 x
112 floats per image), so every forward pass mapped and zero-filled them again (page faults that grow with
the batch; figures in benchmarks/RESULTS.md). ``reuse_freed_memory`` keeps freed memory in the heap while the
batches run, then hands it back.

Batches are aligned to row numbers (row // batch_size), so a resumed run forms exactly the batches an
uninterrupted run would have formed and produces bit-identical embeddings.
"""
from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ImageError, MedsearchError
from ..options import available_cores
from ..storage.schema import EMBEDDED, SKIPPED, ZERO_FILLED
from .sources import SHA256_INFO

ON_MISSING = ("skip", "zero")


@dataclass
class Batch:
    rows: np.ndarray          # store row numbers
    embedding: np.ndarray     # float32 (len(rows), dim); zeros for skipped rows
    state: np.ndarray         # int8 EMBEDDED / ZERO_FILLED / SKIPPED
    reason: list[str]         # why a row was skipped or zero-filled
    sha256: list[str] | None = None  # sha256 of the bytes read, for rows read from a URI ('' for the others)


def aligned_batches(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split sorted row numbers into batches by ``row // batch_size``."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(rows // batch_size)) + 1
    return np.split(rows, cuts)


def overlaps_forward(workers: int, *, cores: int, torch_threads: int, on_cpu: bool) -> bool:
    """Whether ``workers`` decode threads may run while the forward pass does: when the forward pass runs on
    an accelerator, or when its ``torch_threads`` and the decode threads fit in ``cores`` together."""
    return not on_cpu or workers + torch_threads <= cores


# glibc's mallopt parameters (malloc.h), its default mmap count limit, and the mmap threshold its dynamic
# adjustment stops at (DEFAULT_MMAP_THRESHOLD_MAX), with the trim threshold it pairs with it (twice as much).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_DEFAULT_MMAP_MAX = 65536
_MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)
_KEEP_UP_TO = 2**31 - 1  # mallopt takes an int
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_malloc_lock = threading.Lock()
_malloc_depth = 0


def _glibc():
    """The C library when it is glibc and the user has not tuned its malloc (environment), else None."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in _MALLOC_ENV) \
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (musl has no malloc_trim)
        return libc
    except (OSError, AttributeError):
        return None


@contextmanager
def reuse_freed_memory(libc=None):
    """While inside, glibc's malloc serves every block from the heap and keeps freed memory there (up to
    2 GiB), so the equally sized buffers of successive forward passes reuse pages already mapped. On leaving
    the outermost such block, blocks above 32 MiB are mapped separately again, free memory above 64 MiB goes
    back to the kernel (the thresholds glibc's own adjustment settles at once a process has freed a 32 MiB
    block), and ``malloc_trim`` returns the rest. No-op without glibc, or when the environment tunes malloc.
    ``libc``: for tests, an object with ``mallopt`` and ``malloc_trim``."""
    global _malloc_depth
    libc = libc or _glibc()
    if libc is None:
        yield
        return
    with _malloc_lock:
        _malloc_depth += 1
        if _malloc_depth == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO)
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_depth -= 1
            if _malloc_depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
                libc.malloc_trim(0)


def _on_cpu(encoder) -> bool:
    return getattr(getattr(encoder, "device", None), "type", "cpu") == "cpu"


def embed_rows(open_image: Callable[..., object], rows: np.ndarray, encoder, *, batch_size: int = 64,
               workers: int = 2, prefetch: int = 2, on_missing: str = "skip", progress: bool = True,
               desc: str = "embedding") -> Iterator[Batch]:
    """Yield one Batch per aligned batch of ``rows``. ``open_image(row, draft_size=...)`` returns an RGB PIL image
    or raises ImageError; such rows are skipped, or embedded from a zero input tensor with ``on_missing='zero'``."""
    if on_missing not in ON_MISSING:
        raise MedsearchError(f"unknown --on-missing '{on_missing}': use skip or zero")
    if batch_size < 1 or workers < 1:
        raise MedsearchError("--batch-size and --workers must be at least 1")
    batches = aligned_batches(rows, batch_size)
    draft = encoder.preprocess.resize

    def decode(row: int):
        return decode_row(lambda: open_image(int(row), draft_size=draft), encoder.prepare)

    on_cpu = _on_cpu(encoder)
    overlap = overlaps_forward(workers, cores=available_cores(), torch_threads=torch.get_num_threads(), on_cpu=on_cpu)
    bar = tqdm(total=int(sum(len(b) for b in batches)), unit="img", desc=desc, disable=not progress,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
    with reuse_freed_memory() if on_cpu else nullcontext(), \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        queue: collections.deque[tuple[np.ndarray, list[Future]]] = collections.deque()
        pending = iter(batches)

        def fill(depth: int) -> None:
            while len(queue) < depth:
                batch = next(pending, None)
                if batch is None:
                    return
                queue.append((batch, [pool.submit(decode, r) for r in batch]))

        fill(prefetch + 1 if overlap else 1)
        try:
            while queue:
                batch, futures = queue.popleft()
                if overlap:
                    fill(prefetch + 1)
                decoded = [f.result() for f in futures]
                out = encode_batch(batch, decoded, encoder, on_missing)
                if not overlap:  # the next batch decodes while the caller handles this one, not during a forward pass
                    fill(1)
                yield out
                bar.update(len(batch))
        finally:
            for _, futures in queue:
                for f in futures:
                    f.cancel()
            bar.close()


def decode_row(open_image: Callable[[], object], prepare: Callable) -> tuple[np.ndarray | None, str, str]:
    """(prepared pixels or None, why not, sha256 of the bytes when read from a URI) of one row."""
    try:
        img = open_image()
        return prepare(img), "", img.info.get(SHA256_INFO, "")
    except ImageError as exc:
        return None, str(exc), ""
    except Exception as exc:  # a decoder bug on one odd file must not end a long run
        return None, f"cannot decode: {type(exc).__name__}: {exc}".replace("\n", " "), ""


def encode_batch(batch: np.ndarray, decoded: list, encoder, on_missing: str) -> Batch:
    """Encode the rows of ``batch`` that ``decode_row`` decoded; the others are skipped or zero-filled."""
    ok = [i for i, (arr, _, _) in enumerate(decoded) if arr is not None]
    embedding = np.zeros((len(batch), encoder.dim), dtype=np.float32)
    state = np.full(len(batch), EMBEDDED, dtype=np.int8)
    reason = [why for _, why, _ in decoded]
    if ok:
        embedding[ok] = encoder.encode(np.stack([decoded[i][0] for i in ok]))
    failed = [i for i in range(len(batch)) if decoded[i][0] is None]
    if failed:
        if on_missing == "zero":
            embedding[failed] = encoder.encode_zero(len(failed))
            state[failed] = ZERO_FILLED
        else:
            state[failed] = SKIPPED
    broken = np.flatnonzero(~np.isfinite(embedding).all(axis=1))
    if broken.size:  # a store holds finite embeddings only: such a row is skipped with the reason, not stored
        embedding[broken] = 0
        state[broken] = SKIPPED
        for i in broken:
            reason[i] = "the encoder's output is not finite (NaN or infinity): check the weights and --norm"
    shas = [sha for _, _, sha in decoded]
    return Batch(batch, embedding, state, reason, shas if any(shas) else None)
