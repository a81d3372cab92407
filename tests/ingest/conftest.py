"""Helpers shared by tests/ingest: manifests and images written into a folder, a random-init model small enough
for quick index runs (the CLI runner and its one-line error check are in tests/conftest.py)."""
import csv
import os
from pathlib import Path

from ..conftest import FAST, SHARED_DATA, make_image

BUSI = SHARED_DATA / "breast-busi"

REAL = dict(models=("mobilenet-v2",), random_init=True, progress=False, **FAST)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_images(root, n=4):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(root / f"{i}.png", i % 2, i)


def two_classes(root, names=("a", "b"), seed=0):
    for c in ("benign", "malignant"):
        (root / c).mkdir(parents=True)
        for j, n in enumerate(names):
            make_image(root / c / f"{n}.png", int(c == "malignant"), seed + 10 * j + int(c == "malignant"))
    return root


def busi_subset(root: Path, per_class: int, classes=("benign", "malignant", "normal")) -> Path:
    """A class-folder dataset of the first ``per_class`` real BUSI images of each of ``classes`` (symlinks)."""
    for cls in classes:
        (root / cls).mkdir(parents=True)
        names = sorted(p.name for p in (BUSI / cls).iterdir() if p.suffix == ".png")[:per_class]
        for name in names:
            os.symlink(BUSI / cls / name, root / cls / name)
    return root
