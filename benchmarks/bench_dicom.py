"""DICOM decoding throughput per transfer syntax against PNG of the same pixels, and `medsearch index` of DICOM
copies against the bare embedding loop (issue 18): does decoding DICOM keep embedding the bottleneck?

Real images from ../shared/data, each written as PNG and as DICOM in every transfer syntax the decoders handle,
with the test helpers (tests/ingest/dicom/writers.py), into a temporary folder deleted afterwards. Variants:
  grey8  - BUSI ultrasound (256x256, MONOCHROME2, 8 bits);
  rgb8   - ISIC 2018 dermoscopy (224x224 RGB, 8 bits; JPEG baseline as YBR_FULL_422);
  grey16 - the same BUSI pixels as 12 bits stored in 16 (PNG: 16-bit grey); no JPEG baseline (8 bits only);
  xray16 - grey16 at a radiograph's size (2048x2500, bicubic upscale; use a small --n): there the frame is
           box-averaged before windowing (dicom.pixels.reduce_for), and one more pass reads the uncompressed
           copies whole (reduction off) to show what that saves.

Decoding: each row read as `index` reads it (`RowSource.open` with the store's default pixel options and the
encoder's draft size), one pass over all images per syntax, PNG passes alternating with DICOM passes (png,
syntax 1, png, syntax 2, ..., png) in one process; syntax/png is each DICOM pass against the mean of the PNG
passes either side. Lossless syntaxes are checked to decode to exactly the explicit VR little endian pixels.

Index: `index_dataset` with the encoder's real weights and default settings (batch size, decode workers) of the
PNG folder and of the uncompressed, JPEG-baseline and JPEG 2000 lossless (the slowest decoder) DICOM folders,
against the bare forward pass on ready, preprocessed tensors, as benchmarks/bench_index_throughput.py measures
it (its `bare_rate`, `index_rate`): passes alternate bare, png, native, jpeg, j2k, bare, ... and index/bare is each index pass's
embedding-phase rate against the mean of the bare passes either side of its round.

    .venv/bin/python benchmarks/bench_dicom.py [--n 600] [--rounds 3] [--model efficientnet-lite0]
    .venv/bin/python benchmarks/bench_dicom.py --variants xray16 --index-variants xray16 --n 60
"""
from __future__ import annotations

import argparse
import csv
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydicom import uid as U

from bench_index_throughput import _cpu_model, bare_rate, index_rate, timed
from medsearch.ingest import embed
from medsearch.ingest.dicom.decoders import syntax_name
from medsearch.ingest.dicom.pixel_options import PixelOptions
from medsearch.ingest.encoders import load_encoder
from medsearch.ingest.images import load_image
from medsearch.ingest.index_options import IndexOptions
from medsearch.ingest.sources import RowSource

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.ingest.dicom.writers import BUSI, ISIC, dataset, to_12bit, write  # noqa: E402

SYNTAXES = (U.ExplicitVRLittleEndian, U.RLELossless, U.JPEGBaseline8Bit, U.JPEGLosslessSV1, U.JPEGLSLossless,
            U.JPEG2000Lossless, U.JPEG2000)
LOSSY = (U.JPEGBaseline8Bit, U.JPEG2000)
BY_KEYWORD = {s.keyword: s for s in SYNTAXES}  # folder name -> syntax
VARIANTS = ("grey8", "rgb8", "grey16", "xray16")
XRAY_SIZE = (2048, 2500)  # width, height of the xray16 variant


def real_images(variant: str, n: int) -> list[tuple[str, np.ndarray]]:
    """(class, pixels) of the first ``n`` images of the variant's dataset, classes taken in turn."""
    if variant == "rgb8":
        with open(ISIC.parent / "labels.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if (ISIC / f"{r['image']}.jpg").exists()][:n]
        return [(f"c{r['label']}", np.asarray(Image.open(ISIC / f"{r['image']}.jpg").convert("RGB"))) for r in rows]
    per_class = {c: sorted(p for p in (BUSI / c).iterdir() if p.suffix == ".png")
                 for c in ("benign", "malignant", "normal")}
    longest = max(map(len, per_class.values()))
    picked = [(c, ps[i]) for i in range(longest) for c, ps in per_class.items() if i < len(ps)]
    out = []
    for c, p in picked[:n]:
        grey = Image.open(p).convert("L")
        grey = np.asarray(grey.resize(XRAY_SIZE, Image.BICUBIC) if variant == "xray16" else grey)
        out.append((c, to_12bit(grey) if variant in ("grey16", "xray16") else grey))
    return out


def write_copies(variant: str, images, root: Path) -> dict[str, list[str]]:
    """PNG and one DICOM copy per syntax of every image, in class folders under root/<format>; the sources
    (relative paths) of each format."""
    syntaxes = [s for s in SYNTAXES if not (variant in ("grey16", "xray16") and s == U.JPEGBaseline8Bit)]
    sources: dict[str, list[str]] = {"png": []}
    for i, (cls, arr) in enumerate(images):
        (root / "png" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / "png" / cls / f"{i}.png")
        sources["png"].append(f"{cls}/{i}.png")
        for s in syntaxes:
            (root / s.keyword / cls).mkdir(parents=True, exist_ok=True)
            tags = {"bits_stored": 12} if variant in ("grey16", "xray16") else {}
            write(root / s.keyword / cls / f"{i}.dcm", dataset(arr, **tags), s, arr)
            sources.setdefault(s.keyword, []).append(f"{cls}/{i}.dcm")
    return sources


def decode_pass(root: Path, sources: list[str], draft: int) -> tuple[float, list[np.ndarray]]:
    """(images/s, decoded arrays) of one pass reading every row as `index` does."""
    reader = RowSource(str(root), pixels=PixelOptions())
    reader.open(sources[0], draft_size=draft)  # warm-up: imports, the decoder plugin
    t = time.perf_counter()
    arrays = [np.asarray(reader.open(s, draft_size=draft)) for s in sources]
    return len(sources) / (time.perf_counter() - t), arrays


def decoding_table(variant: str, root: Path, sources: dict[str, list[str]], draft: int) -> None:
    """One pass per syntax, alternating with PNG passes; prints images/s, syntax/png, MB on disk, exactness."""
    syntaxes = [k for k in sources if k != "png"]
    pngs = [decode_pass(root / "png", sources["png"], draft)[0]]
    native = None
    for name in syntaxes:
        rate, arrays = decode_pass(root / name, sources[name], draft)
        pngs.append(decode_pass(root / "png", sources["png"], draft)[0])
        native = arrays if name == U.ExplicitVRLittleEndian.keyword else native
        # xray16's JPEG 2000 frames are decoded at a reduced wavelet level (dicom/j2k_reduced.py), the others
        # averaged down: not the same pixels by design, so compared on their common part by mean difference
        by_level = variant == "xray16" and name in (U.JPEG2000Lossless.keyword, U.JPEG2000.keyword)
        pairs = [(a[:min(len(a), len(b))].astype(int), b[:min(len(a), len(b))].astype(int))
                 for a, b in zip(arrays, native)]
        diff = max(int(np.abs(a - b).max()) for a, b in pairs)
        mean_diff = float(np.mean([np.abs(a - b).mean() for a, b in pairs]))
        lossless = BY_KEYWORD[name] not in LOSSY
        if lossless and diff and not by_level:
            raise SystemExit(f"{variant} {name}: a lossless syntax decoded to other pixels (max diff {diff})")
        mb = sum(p.stat().st_size for p in (root / name).rglob("*.dcm")) / 1e6
        png_rate = (pngs[-2] + pngs[-1]) / 2
        label = syntax_name(str(BY_KEYWORD[name]))
        pixels = f"level: mean {mean_diff:.2f}" if by_level else "exact" if not diff else f"max |diff| {diff}"
        print(f"{variant:<7} {label:<26} {rate:>9.1f} {png_rate:>9.1f} {rate / png_rate:>9.2f} {mb:>8.1f} "
              f"{pixels:>14}", flush=True)
    if variant == "xray16":  # the uncompressed copies once more, read whole: what reduce_for saves
        from medsearch.ingest.dicom import pixels

        name, kept = U.ExplicitVRLittleEndian.keyword, pixels.REDUCE_FROM
        pixels.REDUCE_FROM = 10 ** 9
        try:
            rate = decode_pass(root / name, sources[name], draft)[0]
        finally:
            pixels.REDUCE_FROM = kept
        print(f"{variant:<7} {'explicit VR LE, read whole':<26} {rate:>9.1f} {statistics.median(pngs):>9.1f} "
              f"{rate / statistics.median(pngs):>9.2f}", flush=True)
    png_mb = sum(p.stat().st_size for p in (root / "png").rglob("*.png")) / 1e6
    print(f"{variant:<7} {'PNG (all its passes)':<26} {statistics.median(pngs):>9.1f} {'':>9} {'':>9} {png_mb:>8.1f}",
          flush=True)


def index_table(variant: str, root: Path, model: str, rounds: int) -> None:
    """index of PNG, uncompressed, JPEG-baseline and JPEG 2000 lossless DICOM against the bare forward pass on
    the same images."""
    opts = IndexOptions()
    folders = {"png": root / "png", "native": root / U.ExplicitVRLittleEndian.keyword,
               "jpeg": root / U.JPEGBaseline8Bit.keyword, "j2k": root / U.JPEG2000Lossless.keyword}
    folders = {fmt: folder for fmt, folder in folders.items() if folder.is_dir()}  # xray16: no JPEG baseline
    enc = load_encoder(model)
    paths = sorted((root / "png").rglob("*.png"))
    ready = np.stack([enc.prepare(load_image(p, draft_size=enc.preprocess.resize)) for p in paths])
    bares, others = [timed(lambda: bare_rate(enc, ready, opts.batch_size))], []
    rates: dict[str, list[float]] = {k: [] for k in folders}
    for _ in range(rounds):
        for fmt, folder in folders.items():
            (rate, _call), o = timed(lambda: index_rate(folder, model, opts.batch_size, opts.workers))
            rates[fmt].append(rate), others.append(o)
        bares.append(timed(lambda: bare_rate(enc, ready, opts.batch_size)))
        others.append(bares[-1][1])
    bare = [b for b, _ in bares]
    per_round = [(a + b) / 2 for a, b in zip(bare, bare[1:])]
    med = statistics.median
    for fmt in folders:
        vs_bare = [r / b for r, b in zip(rates[fmt], per_round)]
        vs_png = [r / p for r, p in zip(rates[fmt], rates["png"])]
        print(f"{variant:<7} {fmt:<7} {med(bare):>10.1f} {med(rates[fmt]):>11.1f} {med(vs_bare):>10.2f} "
              f"{med(vs_png):>9.2f}   rounds: index/bare {', '.join(f'{v:.2f}' for v in vs_bare)}", flush=True)
    print(f"{variant:<7} bare img/s by round {', '.join(f'{b:.1f}' for b in bare)}; others' CPU (cores, most in a "
          f"pass) {max(others):.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images per variant")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/index rounds")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=["grey8", "rgb8", "grey16"])
    ap.add_argument("--index-variants", nargs="*", choices=("grey8", "rgb8", "xray16"), default=["grey8", "rgb8"])
    args = ap.parse_args()
    opts = IndexOptions()
    print(f"# {platform.machine()} {_cpu_model()}, {embed.available_cores()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {args.model}, batch {opts.batch_size}, {opts.workers} decode workers, "
          f"{args.n} images per variant, {time.strftime('%Y-%m-%d')}")
    draft = load_encoder(args.model).preprocess.resize
    work = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    (work / "tmp").mkdir()
    tempfile.tempdir = str(work / "tmp")  # index_rate's stores and the id-key files beside them go with `work`
    try:
        print(f"{'variant':<7} {'syntax':<26} {'img/s':>9} {'png img/s':>9} {'/png':>9} {'MB':>8} {'pixels':>14}")
        for variant in args.variants:
            t = time.perf_counter()
            sources = write_copies(variant, real_images(variant, args.n), work / variant)
            print(f"# {variant}: {len(sources['png'])} images written as PNG and {len(sources) - 1} DICOM syntaxes "
                  f"in {time.perf_counter() - t:.0f} s", flush=True)
            decoding_table(variant, work / variant, sources, draft)
            for name in list(sources):
                if variant not in args.index_variants and name != "png":
                    shutil.rmtree(work / variant / name)
        print(f"{'variant':<7} {'format':<7} {'bare img/s':>10} {'index img/s':>11} {'index/bare':>10} "
              f"{'index/png':>9}")
        for variant in args.index_variants:
            index_table(variant, work / variant, args.model, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
