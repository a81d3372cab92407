"""Embedding throughput of `medsearch index` against the same encoder's bare forward pass and a naive loop.

For each encoder, on N real JPEGs from ../shared/data/skin-isic2018, in one process:
  bare   - encoder forward on ready, preprocessed tensors (no decoding, no I/O), at each batch size; the best
           batch size is kept;
  index  - `medsearch index` at that batch size: the embedding phase it reports (decode, preprocess, forward,
           journal writes), and the whole call (plus scan, model load, store commits, FAISS build);
  naive  - one image at a time, in the calling thread: the same decoding (`load_image` with the encoder's draft
           size) and preprocessing (`Encoder.prepare`) as index, then the forward pass with batch 1; torch's
           thread count is the process default, as for index.
After a sweep picks the best batch size, bare, index and naive passes alternate for --rounds rounds (bare,
index, naive, bare, index, naive, ..., bare), so slow drift of a shared machine hits all alike. The table
shows the median of each, the median of the per-round ratios index/bare (each index pass against the mean of
the bare passes either side of it) and index/naive (against the naive pass of the same round), and the
range of index/naive over the rounds. The bare passes run inside `embed.reuse_freed_memory()`, as index's
forward passes do. With --ab overlap, each round also runs index with decoding forced to overlap the forward
pass, as it did before the thread rule of medsearch/embed.py; with --ab malloc, index with glibc's default
malloc settings (no `reuse_freed_memory`); with --ab before, both (index as it was before issue 12); either
way the change is measured in the same process. "others"
is the CPU time other processes used during a round, in cores (Linux /proc/stat; it cannot see the
neighbours of a virtual machine). --png-width indexes upscaled PNG copies instead of the JPEGs, where
decoding costs more than a cheap encoder's forward pass. CLIP and ResNet50 use random init (same compute).

    .venv/bin/python benchmarks/bench_index_throughput.py --n 160 --naive-n 32 --rounds 3
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack, contextmanager, redirect_stderr
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from medsearch.ingest import embed
from medsearch.ingest.indexing import index_dataset
from medsearch.ingest.encoders import load_encoder
from medsearch.ingest.images import load_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skin-isic2018"
OFFLINE_WEIGHTS = {"mobilenet-v2": str(Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth")}
RANDOM_INIT = {"clip-vit-b-32", "resnet50"}


def subset(n: int, folder: Path, png_width: int | None = None) -> list[Path]:
    """A folder-layout dataset of the first n images, one sub-folder per class: symlinks to the JPEGs, or with
    ``png_width`` copies upscaled (bicubic) to that width and saved as PNG, whose decoding costs far more."""
    rows = list(csv.DictReader(open(DATA / "labels.csv")))[:n]
    paths = []
    for r in rows:
        (folder / r["label"]).mkdir(parents=True, exist_ok=True)
        src = DATA / "images" / f"{r['image']}.jpg"
        if png_width:
            dst = folder / r["label"] / f"{r['image']}.png"
            with Image.open(src) as img:
                img.resize((png_width, png_width * img.height // img.width), Image.Resampling.BICUBIC).save(dst)
        else:
            dst = folder / r["label"] / f"{r['image']}.jpg"
            os.symlink(src, dst)
        paths.append(dst)
    return paths


def _machine_busy_s() -> float | None:
    """CPU seconds all processes have used since boot (Linux), None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fh.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn):
    """Run fn() -> img/s; return (img/s, CPU cores' worth of time other processes used meanwhile or nan)."""
    busy, own, t = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
    rate = fn()
    wall, busy_after = time.perf_counter() - t, _machine_busy_s()
    if busy is None or busy_after is None:
        return rate, float("nan")
    return rate, max(0.0, (busy_after - busy) - (_own_cpu_s() - own)) / wall


def bare_rate(encoder, ready: np.ndarray, batch_size: int) -> float:
    with embed.reuse_freed_memory():
        encoder.encode(ready[:batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(ready), batch_size):
            encoder.encode(ready[i:i + batch_size])
        return len(ready) / (time.perf_counter() - t)


def naive_rate(encoder, paths: list[Path]) -> float:
    draft = encoder.preprocess.resize

    def one(p):
        return encoder.encode(encoder.prepare(load_image(p, draft_size=draft))[None])

    one(paths[0])  # warm-up: batch-1 shapes after the batched passes
    t = time.perf_counter()
    for p in paths:
        one(p)
    return len(paths) / (time.perf_counter() - t)


@contextmanager
def variant(name: str):
    """index as it ran before the changes of issue 12 to medsearch/embed.py: 'overlap' (decoding runs ahead of
    the forward pass whatever the cores), 'malloc' (glibc's default malloc settings during the forward passes),
    or 'before' (both)."""
    with ExitStack() as stack:
        if name in ("overlap", "before"):
            stack.enter_context(mock.patch.object(embed, "overlaps_forward", lambda *a, **k: True))
        if name in ("malloc", "before"):
            stack.enter_context(mock.patch.object(embed, "_glibc", lambda: None))
        yield


def index_rate(dataset: Path, model: str, batch_size: int, workers: int) -> tuple[float, float]:
    """(embedding-phase img/s as `index` reports it, whole-call img/s including model load and index build)."""
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    out = work / "store"  # a DICOM dataset's id key is written beside the store: inside work, removed with it
    try:
        t = time.perf_counter()
        with redirect_stderr(io.StringIO()):  # index's progress log, once per pass
            summary = index_dataset(str(dataset), out=str(out), models=(model,), random_init=model in RANDOM_INIT,
                            weights=(OFFLINE_WEIGHTS[model],) if model in OFFLINE_WEIGHTS else (),
                            batch_size=batch_size, workers=workers, progress=False)
        wall = time.perf_counter() - t
        return summary.models[model].images_per_second, summary.rows / wall
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(values, spec=".1f") -> str:
    return ", ".join(format(v, spec) for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["clip-vit-b-32", "resnet50", "efficientnet-lite0", "mobilenet-v2"])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--naive-n", type=int, default=48)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="decode threads of index (default as the CLI's: one per CPU)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/index/naive rounds at the best batch size")
    ap.add_argument("--png-width", type=int, help="index PNG copies upscaled to this width instead of the JPEGs "
                    "(decoding then costs more than a cheap encoder's forward pass)")
    ap.add_argument("--ab", choices=["overlap", "malloc", "before"],
                    help="also run index as before issue 12: decoding overlapping the forward pass, default malloc, or both")
    args = ap.parse_args()
    cores, threads = embed.available_cores(), torch.get_num_threads()
    overlap = embed.overlaps_forward(args.workers, cores=cores, torch_threads=threads, on_cpu=True)
    print(f"# {platform.node()} {_cpu_model()}, {cores} cores, torch {torch.__version__} ({threads} threads), "
          f"{args.workers} decode workers ({'overlapping' if overlap else 'taking turns with'} the forward pass), "
          f"{args.n} images from {DATA.name}{f' as {args.png_width}-wide PNGs' if args.png_width else ''}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'model':<20} {'best bs':>7} {'bare img/s':>10} {'index img/s':>11} {'call img/s':>10} {'naive img/s':>11} "
          f"{'index/bare':>10} {'index/naive':>11} {'(range)':>11}" + (f" {args.ab + '/naive':>13}" if args.ab else ""))
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        paths = subset(args.n, tmp / "ds", args.png_width)
        for model in args.models:
            enc = load_encoder(model, random_init=model in RANDOM_INIT, weights=OFFLINE_WEIGHTS.get(model))
            ready = np.stack([enc.prepare(load_image(p, draft_size=enc.preprocess.resize)) for p in paths])
            rates = {bs: bare_rate(enc, ready, bs) for bs in args.batch_sizes}
            best = max(rates, key=rates.get)
            naive_rate(enc, paths[:2])
            bares, others = [timed(lambda: bare_rate(enc, ready, best))], []
            idxs, calls, naives, variants = [], [], [], []
            for _ in range(args.rounds):
                (idx, call), o1 = timed(lambda: index_rate(tmp / "ds", model, best, args.workers))
                naive, o2 = timed(lambda: naive_rate(enc, paths[:args.naive_n]))
                idxs.append(idx), calls.append(call), naives.append(naive)
                round_others = [o1, o2]
                if args.ab:
                    with variant(args.ab):
                        (var, _), o3 = timed(lambda: index_rate(tmp / "ds", model, best, args.workers))
                    variants.append(var), round_others.append(o3)
                bares.append(timed(lambda: bare_rate(enc, ready, best)))
                others.append(max(round_others + [bares[-1][1]]))
            bare_rates = [b for b, _ in bares]
            vs_bare = [i / ((a + b) / 2) for i, a, b in zip(idxs, bare_rates, bare_rates[1:])]
            vs_naive = [i / n for i, n in zip(idxs, naives)]
            var_naive = [v / n for v, n in zip(variants, naives)]
            med = statistics.median
            print(f"{model:<20} {best:>7} {med(bare_rates):>10.1f} {med(idxs):>11.1f} {med(calls):>10.1f} "
                  f"{med(naives):>11.1f} {med(vs_bare):>10.2f} {med(vs_naive):>11.2f} "
                  f"{f'{min(vs_naive):.2f}-{max(vs_naive):.2f}':>11}" + (f" {med(var_naive):>13.2f}" if args.ab else ""),
                  flush=True)
            print(f"{'':<20} bare img/s by batch size: " + ", ".join(f"{bs}: {r:.1f}" for bs, r in rates.items()), flush=True)
            print(f"{'':<20} rounds: bare {_fmt(bare_rates)}; index {_fmt(idxs)}; naive {_fmt(naives)}"
                  + (f"; index with {args.ab} {_fmt(variants)}" if args.ab else ""), flush=True)
            print(f"{'':<20} index/bare {_fmt(vs_bare, '.2f')}; index/naive {_fmt(vs_naive, '.2f')}"
                  + (f"; {args.ab}/naive {_fmt(var_naive, '.2f')}" if args.ab else "")
                  + f"; others' CPU (cores, most in a round) {_fmt(others, '.2f')}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
