"""Helpers shared by the dataset tests of tests/ingest (manifests and images written into a folder)."""
import csv

from ..conftest import make_image


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_images(root, n=4):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(root / f"{i}.png", i % 2, i)
