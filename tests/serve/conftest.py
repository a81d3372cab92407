"""A small real store for the server's tests: 48 BreastMNIST images from the bundled demo file, written as PNG
files with a patient column (two images each) and the official split, indexed with two real offline encoders
(efficientnet-lite0 and -lite1), evaluated once (so the eval page has a report) with a saved lr head."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medsearch.demo import demo_file
from medsearch.ingest.images import array_to_image

MODELS = ("efficientnet-lite0", "efficientnet-lite1")
PER_SPLIT = {"train": 32, "val": 8, "test": 8}


def _write_dataset(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    rows = []
    with np.load(demo_file("breastmnist"), allow_pickle=False) as z:
        names = ["benign", "malignant"]  # BreastMNIST: 0 malignant, 1 normal/benign; names only need to differ
        for split, n in PER_SPLIT.items():
            images, labels = z[f"{split}_images"], z[f"{split}_labels"][:, 0]
            # both classes in every split: the first n/2 of each class
            picked = [i for c in (0, 1) for i in np.flatnonzero(labels == c)[:n // 2]]
            for i in picked:
                name = f"{split}_{i:03d}.png"
                array_to_image(images[i]).resize((64, 64)).save(root / "images" / name)
                rows.append({"image": name, "label": names[int(labels[i])], "split": split,
                             "patient_id": f"{split}-p{len(rows) // 2}"})
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label", "split", "patient_id"])
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="session")
def served_store(tmp_path_factory) -> Path:
    """The index folder of the small real store (read-only for the tests)."""
    from medsearch.evaluation.evaluate import evaluate
    from medsearch.ingest.indexing import index_dataset

    base = tmp_path_factory.mktemp("serve")
    _write_dataset(base / "data")
    out = base / "index"
    index_dataset(str(base / "data"), out=str(out), models=MODELS, progress=False, workers=1)
    evaluate(str(out), heads=("lr",), knn=True, retrieval=True, n_boot=50, progress=False, n_jobs=1,
             save_head="lr", C=(1.0,), folds=2, train_fractions=(0.5, 1.0), fraction_seeds=1)
    return out


@pytest.fixture(scope="session")
def client(served_store):
    """A test client of the app over the small real store, addressed to the loopback (as a browser would)."""
    from fastapi.testclient import TestClient

    from medsearch.serve import create_app

    with TestClient(create_app([served_store]), base_url="http://127.0.0.1") as c:
        yield c


def png_of(path: Path) -> bytes:
    return Path(path).read_bytes()
