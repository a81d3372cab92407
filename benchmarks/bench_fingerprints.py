"""What content fingerprints and duplicate checks add to `medsearch index`, against work index does anyway.

Part 1, real files (../shared/data/skin-isic2018, 1,510 JPEGs): the first fingerprint pass (stat + sha256 of
every file) and a re-run (stat only, nothing changed) against decoding the same images with the decoder index
uses (load_image with the encoder's draft size), in the same process. Part 2, scale: the per-run bookkeeping
at N rows (duplicate groups over N sha256 strings, the embedding-duplicate digests over N x D float32 rows)
against building the flat FAISS index of the same embeddings, which every index run that embeds anything does.

    .venv/bin/python benchmarks/bench_fingerprints.py --rows 1000000 --dim 1280
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from pathlib import Path

import numpy as np

from medsearch.ingest.datasets import scan
from medsearch.ingest.fingerprints import duplicate_groups, fingerprint
from medsearch.ingest.images import load_image
from medsearch.storage.faiss_index import build_index

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skin-isic2018"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def real_files(workers: int) -> None:
    ds = scan(DATA)
    n = len(ds)
    decode = timed(lambda: [load_image(ds.path(i), draft_size=256) for i in range(n)])
    first = timed(lambda: fingerprint(ds, range(n), workers=workers, progress=False))
    shas, stats = fingerprint(ds, range(n), workers=workers, progress=False)
    rerun = timed(lambda: fingerprint(ds, range(n), known_sha=shas, known_stat=stats, workers=workers, progress=False))
    print(f"real files: {n} ISIC JPEGs, {workers} threads")
    print(f"  decode (serial, as one index worker)  {decode:7.2f} s  {n / decode:8.0f} img/s")
    print(f"  fingerprint, first run (sha256)       {first:7.2f} s  {n / first:8.0f} img/s  {first / decode:.3f}x decode")
    print(f"  fingerprint, re-run (stat only)       {rerun:7.2f} s  {n / rerun:8.0f} img/s  {rerun / decode:.3f}x decode")


def scale(rows: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((rows, dim), dtype=np.float32)
    shas = [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(rows)]
    base = timed(lambda: build_index(emb, np.arange(rows), "flat"))
    groups = timed(lambda: duplicate_groups(shas))
    digests = timed(lambda: duplicate_groups([hashlib.blake2b(emb[r].tobytes(), digest_size=16).hexdigest()
                                              for r in range(rows)]))
    print(f"scale: {rows} rows x {dim}")
    print(f"  flat FAISS build (baseline)           {base:7.2f} s")
    print(f"  duplicate groups over sha256          {groups:7.2f} s  {groups / base:.3f}x baseline")
    print(f"  embedding digests + groups            {digests:7.2f} s  {digests / base:.3f}x baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    real_files(args.workers)
    scale(args.rows, args.dim)


if __name__ == "__main__":
    main()
