"""Content fingerprints of a dataset's images: what ties each stored row to the bytes it was embedded from.

Each row records the sha256 of its image file (of the image array for an .npz) and the file's (size,
mtime_ns); a row read from a URI, the sha256 of the bytes its worker read when it was embedded (its
stat is unknown, so a later run does not re-read it). A later `index` run stats every file again (cheap) and re-hashes only those whose stat changed, so
a file edited or replaced on disk is found and re-embedded, a dataset moved or copied elsewhere is verified
byte for byte, and byte-identical images (a known source of train/test leakage) can be reported.
"""
from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from ..storage.atomic import sha256_file

UNKNOWN_STAT = (-1, -1)


def file_stat(path: str | None) -> tuple[int, int]:
    """(size, mtime_ns) of ``path`` following links, or (-1, -1) when it cannot be stat'ed."""
    if path is None:
        return UNKNOWN_STAT
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return UNKNOWN_STAT
    return st.st_size, st.st_mtime_ns


def sha256_of_file(path: str) -> str:
    """Hex sha256 of a file's bytes, or '' when it cannot be read (it is then reported by the embedding step)."""
    try:
        return sha256_file(path)
    except (OSError, ValueError):
        return ""


def sha256_of_array(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def fingerprint(ds, rows, *, known_sha: list[str] | None = None, known_stat: np.ndarray | None = None,
                workers: int = 2, progress: bool = True, chunk: int = 4096) -> tuple[list[str], np.ndarray]:
    """sha256 and (size, mtime_ns) of the dataset rows ``rows``, in that order.

    ``known_sha`` / ``known_stat`` (aligned with ``rows``) are the recorded values: a file whose stat is unchanged
    keeps its recorded sha256 without being read. Files are stat'ed and hashed in ``workers`` threads (both
    release the GIL), ``chunk`` rows at a time so that memory stays flat at millions of rows, with a progress
    bar showing rate and ETA."""
    rows = list(rows)
    n = len(rows)
    shas = [""] * n
    stats = np.full((n, 2), -1, dtype=np.int64)

    def one(j: int) -> tuple[str, tuple[int, int]]:
        i = rows[j]
        if i in ds.missing or ds.is_uri(i):  # a URI's bytes are fingerprinted by the worker that reads them
            return "", UNKNOWN_STAT
        path = ds.path(i)
        if path is None:
            return sha256_of_array(ds.array(i)), UNKNOWN_STAT
        stat = file_stat(path)
        if known_sha is not None and known_sha[j] and stat[0] >= 0 and tuple(known_stat[j]) == stat:
            return known_sha[j], stat
        return sha256_of_file(path), stat

    bar = tqdm(total=n, unit="img", desc="fingerprints", disable=not progress or n == 0, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.05)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sha256") as pool:
        for start in range(0, n, chunk):
            part = range(start, min(n, start + chunk))
            for j, (sha, stat) in zip(part, pool.map(one, part)):
                shas[j], stats[j] = sha, stat
            bar.update(len(part))
    bar.close()
    return shas, stats


def duplicate_groups(keys: list[str]) -> list[list[int]]:
    """Positions sharing a non-empty key, one list per key seen more than once, in first-seen order."""
    where: dict[str, list[int]] = {}
    for pos, key in enumerate(keys):
        if key:
            where.setdefault(key, []).append(pos)
    return [group for group in where.values() if len(group) > 1]
