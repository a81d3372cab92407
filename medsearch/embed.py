"""Turn rows of a dataset into embeddings, batch by batch, as fast as the forward pass allows.

Decoding (PIL, which releases the GIL) runs in a thread pool a few batches ahead of the model, so the CPU
cores the forward pass leaves idle decode the next batches. Batches are aligned to row numbers
(row // batch_size), so a resumed run forms exactly the batches an uninterrupted run would have formed and
produces bit-identical embeddings.
"""
from __future__ import annotations

import collections
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from .errors import ImageError, MedsearchError
from .store import EMBEDDED, SKIPPED, ZERO_FILLED

ON_MISSING = ("skip", "zero")


@dataclass
class Batch:
    rows: np.ndarray          # store row numbers
    embedding: np.ndarray     # float32 (len(rows), dim); zeros for skipped rows
    state: np.ndarray         # int8 EMBEDDED / ZERO_FILLED / SKIPPED
    reason: list[str]         # why a row was skipped or zero-filled


def aligned_batches(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split sorted row numbers into batches by ``row // batch_size``."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(rows // batch_size)) + 1
    return np.split(rows, cuts)


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
        try:
            return encoder.prepare(open_image(int(row), draft_size=draft)), ""
        except ImageError as exc:
            return None, str(exc)
        except Exception as exc:  # a decoder bug on one odd file must not end a long run
            return None, f"cannot decode: {type(exc).__name__}: {exc}".replace("\n", " ")

    bar = tqdm(total=int(sum(len(b) for b in batches)), unit="img", desc=desc, disable=not progress,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        queue: collections.deque[tuple[np.ndarray, list[Future]]] = collections.deque()
        pending = iter(batches)

        def fill() -> None:
            while len(queue) < prefetch + 1:
                batch = next(pending, None)
                if batch is None:
                    return
                queue.append((batch, [pool.submit(decode, r) for r in batch]))

        fill()
        try:
            while queue:
                batch, futures = queue.popleft()
                fill()
                decoded = [f.result() for f in futures]
                yield _encode_batch(batch, decoded, encoder, on_missing)
                bar.update(len(batch))
        finally:
            for _, futures in queue:
                for f in futures:
                    f.cancel()
            bar.close()


def _encode_batch(batch: np.ndarray, decoded: list, encoder, on_missing: str) -> Batch:
    ok = [i for i, (arr, _) in enumerate(decoded) if arr is not None]
    embedding = np.zeros((len(batch), encoder.dim), dtype=np.float32)
    state = np.full(len(batch), EMBEDDED, dtype=np.int8)
    reason = [why for _, why in decoded]
    if ok:
        embedding[ok] = encoder.encode(np.stack([decoded[i][0] for i in ok]))
    failed = [i for i in range(len(batch)) if decoded[i][0] is None]
    if failed:
        if on_missing == "zero":
            embedding[failed] = encoder.encode_zero(len(failed))
            state[failed] = ZERO_FILLED
        else:
            state[failed] = SKIPPED
    return Batch(batch, embedding, state, reason)
