"""Embedding throughput of `medsearch index` against the same encoder's bare forward pass and a naive loop.

For each encoder, on N real JPEGs from ../shared/data/skin-isic2018, in one process:
  bare   - encoder forward on ready, preprocessed tensors (no decoding, no I/O), at each batch size; the best
           batch size is kept;
  index  - `medsearch index` at that batch size: the embedding phase it reports (decode, preprocess, forward,
           journal writes), and the whole call (plus scan, model load, store commits, FAISS build);
  naive  - one image at a time: decode, preprocess, forward with batch 1.
After a sweep picks the best batch size, bare and index passes alternate for --rounds rounds (bare, index,
bare, index, ...), so slow drift of a shared machine hits both alike; the table shows the median of each and
the median of the per-round ratios index/bare (each index pass against the mean of the bare passes either
side of it). Prints img/s and the ratios. CLIP and ResNet50 use random init (same compute).

    .venv/bin/python benchmarks/bench_index_throughput.py --n 256 --rounds 3
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import statistics

import numpy as np
import torch

from medsearch.commands.index import index
from medsearch.encoders import load_encoder
from medsearch.images import load_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skin-isic2018"
OFFLINE_WEIGHTS = {"mobilenet-v2": str(Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth")}
RANDOM_INIT = {"clip-vit-b-32", "resnet50"}


def subset(n: int, folder: Path) -> list[Path]:
    """A folder-layout dataset of the first n images (symlinks, one sub-folder per class)."""
    rows = list(csv.DictReader(open(DATA / "labels.csv")))[:n]
    paths = []
    for r in rows:
        (folder / r["label"]).mkdir(parents=True, exist_ok=True)
        link = folder / r["label"] / f"{r['image']}.jpg"
        os.symlink(DATA / "images" / f"{r['image']}.jpg", link)
        paths.append(link)
    return paths


def bare_rate(encoder, ready: np.ndarray, batch_size: int) -> float:
    encoder.encode(ready[:batch_size])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(ready), batch_size):
        encoder.encode(ready[i:i + batch_size])
    return len(ready) / (time.perf_counter() - t)


def naive_rate(encoder, paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        encoder.encode(encoder.prepare(load_image(p))[None])
    return len(paths) / (time.perf_counter() - t)


def index_rate(dataset: Path, model: str, batch_size: int, workers: int) -> tuple[float, float]:
    """(embedding-phase img/s as `index` reports it, whole-call img/s including model load and index build)."""
    out = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        t = time.perf_counter()
        summary = index(str(dataset), out=str(out), models=(model,), random_init=model in RANDOM_INIT,
                        weights=(OFFLINE_WEIGHTS[model],) if model in OFFLINE_WEIGHTS else (),
                        batch_size=batch_size, workers=workers, progress=False)
        wall = time.perf_counter() - t
        return summary["models"][model]["images_per_second"], summary["rows"] / wall
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["clip-vit-b-32", "resnet50", "efficientnet-lite0", "mobilenet-v2"])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--naive-n", type=int, default=48)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16, 32, 64])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/index rounds at the best batch size")
    args = ap.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), {args.n} images from {DATA.name}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'model':<20} {'best bs':>7} {'bare img/s':>10} {'index img/s':>11} {'call img/s':>10} {'naive img/s':>11} {'index/bare':>10} {'index/naive':>11}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        paths = subset(args.n, tmp / "ds")
        for model in args.models:
            enc = load_encoder(model, random_init=model in RANDOM_INIT, weights=OFFLINE_WEIGHTS.get(model))
            ready = np.stack([enc.prepare(load_image(p)) for p in paths])
            rates = {bs: bare_rate(enc, ready, bs) for bs in args.batch_sizes}
            best = max(rates, key=rates.get)
            naive = naive_rate(enc, paths[:args.naive_n])
            bares, idxs, calls = [bare_rate(enc, ready, best)], [], []
            for _ in range(args.rounds):
                idx, call = index_rate(tmp / "ds", model, best, args.workers)
                idxs.append(idx)
                calls.append(call)
                bares.append(bare_rate(enc, ready, best))
            ratios = [i / ((a + b) / 2) for i, a, b in zip(idxs, bares, bares[1:])]
            bare, idx, call = (statistics.median(v) for v in (bares, idxs, calls))
            print(f"{model:<20} {best:>7} {bare:>10.1f} {idx:>11.1f} {call:>10.1f} {naive:>11.1f} "
                  f"{statistics.median(ratios):>10.2f} {idx / naive:>11.2f}", flush=True)
            print(f"{'':<20} bare img/s by batch size: " + ", ".join(f"{bs}: {r:.1f}" for bs, r in rates.items()), flush=True)
            print(f"{'':<20} rounds: bare " + ", ".join(f"{r:.1f}" for r in bares) + "; index "
                  + ", ".join(f"{r:.1f}" for r in idxs) + "; index/bare " + ", ".join(f"{r:.2f}" for r in ratios), flush=True)
            del enc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
