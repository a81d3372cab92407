"""Shared fixtures: small generated image datasets, paths to the real data beside the repo."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medsearch.errors import MedsearchError
from medsearch.storage.schema import EMBEDDED
from medsearch.storage.store import ModelData, StoreData, write_store

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
    """`index` (and `query` of the stores it makes) with the TinyEncoder in place of any --model."""
    import medsearch.ingest.indexing as index_module
    import medsearch.search.query as query_module

    monkeypatch.setattr(index_module, "load_encoder", lambda *a, **k: TinyEncoder())
    monkeypatch.setattr(index_module, "get_spec", lambda name: SimpleNamespace(preprocess=None))
    monkeypatch.setattr(index_module, "preprocess_with", lambda *a, **k: TinyEncoder.preprocess)
    monkeypatch.setattr(query_module, "load_encoder", lambda *a, **k: TinyEncoder())


def index_tiny(ds, out, **kw):
    """`index` of ``ds`` into ``out`` with the TinyEncoder (use with the ``tiny`` fixture)."""
    from medsearch.ingest.indexing import index_dataset

    return index_dataset(str(ds), out=str(out), models=("tiny",), progress=False, **kw)


@pytest.fixture(scope="module")
def one_blas_thread():
    """Tiny arrays: BLAS/OpenMP thread start-up would dominate the run time on a shared machine. A test module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def raises_one_line(call) -> str:
    """Run ``call``; it must raise a MedsearchError whose message is one non-empty line, which is returned."""
    with pytest.raises(MedsearchError) as info:
        call()
    assert "\n" not in str(info.value) and str(info.value)
    return str(info.value)


def run_cli(*args):
    """``medsearch ARGS...`` in this process (click's runner); every argument is passed as a string."""
    from click.testing import CliRunner

    from medsearch.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def cli_error_line(res, *fragments) -> str:
    """A CLI run that failed as a user error: exit code 2 and one line "medsearch: error: ..." holding every
    fragment; returns that output."""
    assert res.exit_code == 2, res.output
    assert res.output.startswith("medsearch: error:") and res.output.count("\n") == 1, res.output
    for f in fragments:
        assert f in res.output, res.output
    return res.output


def refused_by_each(commands: dict, store, *fragments, prefix: str = "medsearch: error: ") -> None:
    """Every command (name -> CLI arguments) refuses ``store`` as a user error, in one line starting with
    ``prefix``, naming the store and holding every fragment, never as an unexpected failure."""
    for name, args in commands.items():
        res = run_cli(*args)
        assert res.exit_code == 2, f"{name}: exit {res.exit_code}: {res.output}"
        assert res.output.startswith(prefix) and res.output.count("\n") == 1, f"{name}: {res.output}"
        assert all(f in res.output for f in (*fragments, str(store))), f"{name}: {res.output}"
        assert "unexpected" not in res.output, f"{name}: {res.output}"


def accepted_by_each(commands: dict) -> None:
    for name, args in commands.items():
        res = run_cli(*args)
        assert res.exit_code == 0, f"{name}: {res.output}"


# ---- synthetic stores for evaluation tests ----

QUICK = dict(C=(1.0,), n_boot=100, n_jobs=2, progress=False)  # the point of most tests is not the grid


def _provenance(key, dim):
    preprocess = {"resize": 64, "crop": 64, "interpolation": "bilinear", "norm": "imagenet",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    return json.dumps({"encoder": f"synthetic-{key}", "weights_source": "random-init", "weights_sha256": None,
                       "preprocess": preprocess, "dim": dim})


def make_store(path, task="multiclass", *, n=150, dim=64, groups_of=0, official=False, spread=1.0, seed=0,
               models=("m1",)):
    """Gaussian clusters, one per class (multilabel: labels read off the cluster); written with write_store."""
    rng = np.random.default_rng(seed)
    k = {"binary": 2, "multiclass": 3, "multilabel": 3}[task]
    cluster = np.arange(n) % k
    centres = rng.normal(0, 1, (k, dim)) * 3
    labels = cluster if task != "multilabel" else np.column_stack([cluster == 0, cluster == 1, cluster != 1]).astype(np.int8)
    names = ["a", "b", "c"][: (k if task != "multilabel" else 3)]
    ids = [f"img{i:04d}" for i in range(n)]
    groups = None
    if groups_of:  # consecutive images of one cluster share a patient
        order = np.argsort(cluster, kind="stable")
        patient = np.empty(n, dtype=object)
        patient[order] = [f"p{j // groups_of}" for j in range(n)]
        groups = list(patient)
    splits = list(np.where(np.arange(n) % 5 == 0, "test", np.where(np.arange(n) % 5 == 1, "val", "train"))) if official else None
    data = StoreData(ids, ids, labels, names, task, groups, splits, attrs={"dataset_root": str(path)})
    for key in models:
        emb = (centres[cluster] + rng.normal(0, spread, (n, dim))).astype(np.float32)
        data.models[key] = ModelData(emb, np.full(n, EMBEDDED, np.int8), [""] * n, {"provenance": _provenance(key, dim)})
    path.mkdir(parents=True, exist_ok=True)
    write_store(data, path)
    return path


def store_files(out) -> dict:
    """Every file of a store (format 2: the manifest and its segments; format 1: store.h5), by name, with its
    bytes: equal before and after means nothing stored changed."""
    out = Path(out)
    paths = [out / "store.json", out / "store.h5", *sorted((out / "segments").glob("*"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in paths if p.is_file()}


def as_format1(out) -> None:
    """Rewrite the store in ``out`` as a format-1 store.h5 (what medsearch wrote before format 2)."""
    import shutil

    from medsearch.storage.format1 import write_format1
    from medsearch.storage.store import read_store

    data = read_store(out)
    for m in data.models.values():
        m.embedding = np.asarray(m.embedding)
    write_format1(data, out)
    (Path(out) / "store.json").unlink()
    shutil.rmtree(Path(out) / "segments")
