"""Throughput of `medsearch index --engine ray` against the local engine on one machine: same encoder, same
images, in one process, runs alternating (local, ray, local, ray, ...) so that the machine's noise falls on
both alike.

Each run indexes the first --images images of --dataset (isic: ISIC 2018, 1,510 224x224 JPEG dermoscopy
images; odir: ODIR-5K, 6,392 224x224 JPEG fundus images; both in ../shared/data) into a fresh store. Reported per run: the whole `index_dataset` call (wall), and the steady embedding rate: rows
between the first and the last finished batch over the time between them, which leaves out the start-up
(Ray starting, actors loading the encoder, the first batch decoding); the start-up is given apart: seconds
from the call to its first finished batch. The ratio printed is ray / local of the median steady rate, and
of the median whole-call rate.

    .venv/bin/python benchmarks/bench_ray_engine.py [--dataset isic|odir] [--images N] [--repeats 3]
        [--model efficientnet-lite0]
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import medsearch.ingest.indexing as indexing
from medsearch.ingest.indexing import index_dataset
from medsearch.options import available_cores

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
# folder, image column, file suffix, label column
DATASETS = {"isic": ("skin-isic2018", "image", ".jpg", "label"), "odir": ("retina-odir", "filename", "", "labels")}


def subset(name: str, n: int, work: Path) -> Path:
    """A csv dataset of the first ``n`` images of dataset ``name`` (symlinks, one label column as given)."""
    folder, image_col, suffix, label_col = DATASETS[name]
    root = DATA / folder
    with open(root / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (root / "images" / (r[image_col] + suffix)).exists()][:n]
    (work / "images").mkdir(parents=True)
    for r in rows:
        os.symlink(root / "images" / (r[image_col] + suffix), work / "images" / (r[image_col] + suffix))
    with open(work / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label"])
        w.writeheader()
        w.writerows({"image": r[image_col] + suffix, "label": r[label_col]} for r in rows)
    return work


def timed_run(dataset: Path, out: Path, engine: str, model: str, batch: int) -> dict:
    """One `index` call, with the time each batch reached the writer."""
    stamps: list[tuple[float, int]] = []
    real = indexing._embed

    def spy(out_dir, data, m, embed, todo, encoder, journal, key, opts):
        def stamped(rows, enc, desc):
            for b in embed(rows, enc, desc):
                stamps.append((time.perf_counter(), len(b.rows)))
                yield b
        return real(out_dir, data, m, stamped, todo, encoder, journal, key, opts)

    indexing._embed = spy
    try:
        t0 = time.perf_counter()
        summary = index_dataset(str(dataset), out=str(out), models=(model,), engine=engine, batch_size=batch,
                                progress=False, commit_every=1e9)
        wall = time.perf_counter() - t0
    finally:
        indexing._embed = real
    rows = sum(n for _, n in stamps)
    steady = sum(n for _, n in stamps[1:]) / (stamps[-1][0] - stamps[0][0])
    emb = next(iter(summary.models.values()))
    return {"engine": engine, "rows": rows, "wall": wall, "whole": rows / wall, "steady": steady,
            "startup": stamps[0][0] - t0, "embedded": emb.embedded}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="isic")
    ap.add_argument("--images", type=int, default=1510)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        ds = subset(args.dataset, args.images, work / "ds")
        print(f"{args.images} {args.dataset} images, {args.model}, batch {args.batch_size}, {available_cores()} cores")
        runs = []
        for i in range(args.repeats):
            for engine in ("local", "ray"):
                out = work / f"{engine}-{i}"
                r = timed_run(ds, out, engine, args.model, args.batch_size)
                shutil.rmtree(out)
                runs.append(r)
                print(f"  {engine:5s} run {i}: {r['rows']} rows, wall {r['wall']:.1f} s ({r['whole']:.1f} img/s), "
                      f"steady {r['steady']:.1f} img/s, first batch after {r['startup']:.1f} s")
        med = {e: {k: statistics.median(r[k] for r in runs if r["engine"] == e) for k in ("steady", "whole", "startup")}
               for e in ("local", "ray")}
        print(f"steady rate: local {med['local']['steady']:.1f} img/s, ray {med['ray']['steady']:.1f} img/s, "
              f"ratio ray/local {med['ray']['steady'] / med['local']['steady']:.2f}")
        print(f"whole call:  local {med['local']['whole']:.1f} img/s, ray {med['ray']['whole']:.1f} img/s, "
              f"ratio ray/local {med['ray']['whole'] / med['local']['whole']:.2f}")
        print(f"start-up (call to first batch): local {med['local']['startup']:.1f} s, ray {med['ray']['startup']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
