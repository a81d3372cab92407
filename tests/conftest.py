"""Shared fixtures: small generated image datasets, paths to the real data beside the repo."""
from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_WEIGHTS = REPO.parent / "shared" / "weights"
# Tiny inputs keep random-init CNNs fast in unit tests.
FAST = dict(resize=64, crop=64)


def needs_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def make_image(path: Path, cls: int, seed: int, size=(40, 32)) -> None:
    """A class-dependent pattern (stripes vs blobs) plus noise, so neighbours of a class are close."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / (2 + 3 * cls)) * 100 + 128) if cls % 2 == 0 else (np.cos(yy / (2 + 3 * cls)) * 100 + 128)
    img = np.clip(base[..., None] + rng.normal(0, 10, (h, w, 3)) + cls * 20, 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


@pytest.fixture
def folder_dataset(tmp_path) -> Path:
    root = tmp_path / "folders"
    for c, name in enumerate(["benign", "malignant"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            make_image(root / name / f"{name}_{i:02d}.png", c, seed=100 * c + i)
    return root


@pytest.fixture
def csv_dataset(tmp_path) -> Path:
    """Images named without extension in the manifest, a patient column that repeats, a string label."""
    root = tmp_path / "csvdata"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(18):
        c = i % 3
        make_image(root / "images" / f"img{i:03d}.jpg", c, seed=i)
        rows.append({"image": f"img{i:03d}", "label": ["nevus", "melanoma", "bcc"][c], "patient_id": f"p{i // 2}"})
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label", "patient_id"])
        w.writeheader()
        w.writerows(rows)
    return root


class TinyEncoder:
    """Stands in for a network where the point is the input handling, not the embedding: the mean colour."""

    dim = 3
    preprocess = SimpleNamespace(resize=8, crop=8)
    weights_source = "test"
    weights_sha256 = None

    def prepare(self, img):
        return np.asarray(img.resize((8, 8)), dtype=np.uint8)

    def encode(self, batch):
        return batch.reshape(len(batch), -1, 3).mean(1).astype(np.float32) + 1

    def encode_zero(self, n):
        return np.zeros((n, 3), np.float32)

    def provenance(self):
        return {"encoder": "tiny", "dim": 3, "weights_source": "test", "weights_sha256": None,
                "preprocess": {"resize": 8, "crop": 8, "interpolation": "bilinear", "norm": "mean-std",
                               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}


@pytest.fixture
def tiny(monkeypatch):
    """`index` with the TinyEncoder in place of any --model."""
    import medsearch.commands.index as index_module

    monkeypatch.setattr(index_module, "load_encoder", lambda *a, **k: TinyEncoder())
    monkeypatch.setattr(index_module, "get_spec", lambda name: SimpleNamespace(preprocess=None))
    monkeypatch.setattr(index_module, "preprocess_with", lambda *a, **k: TinyEncoder.preprocess)


def index_tiny(ds, out, **kw):
    """`index` of ``ds`` into ``out`` with the TinyEncoder (use with the ``tiny`` fixture)."""
    from medsearch.commands.index import index

    return index(str(ds), out=str(out), models=("tiny",), progress=False, **kw)
