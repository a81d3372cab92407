"""Real ImageNet weights on real medical images: neighbours found through the store and the FAISS index
share the query's diagnosis far more often than chance."""
import csv
import os
from pathlib import Path

import numpy as np
import pytest

from medsearch.ingest.indexing import index_dataset
from medsearch.search.query import query
from medsearch.storage.faiss_index import load_index, search
from medsearch.storage.store import read_store

from .conftest import SHARED_WEIGHTS, needs_shared
from .crash_harness import symlink_subset


def nn_agreement(out: Path, key: str) -> tuple[float, float]:
    """(share of rows whose nearest other row has the same label, chance level sum_c p_c^2)."""
    data = read_store(out)
    m = data.models[key]
    idx = load_index(out / m.attrs["index_file"], dim=m.dim, ntotal=int(m.attrs["index_ntotal"]), sha256=m.attrs["index_sha256"])
    rows = m.usable()
    _, nbrs = search(idx, m.embedding[rows], 2)
    other = np.where(nbrs[:, 0] == rows, nbrs[:, 1], nbrs[:, 0])  # the query itself excluded
    y = data.labels
    p = np.bincount(y[rows]) / len(rows)
    return float((y[other] == y[rows]).mean()), float((p ** 2).sum())


def test_efficientnet_lite0_on_breast_ultrasound(tmp_path):
    ds = symlink_subset(needs_shared("breast-busi"), tmp_path / "busi", per_class=50)
    out = tmp_path / "out"
    summary = index_dataset(str(ds), out=str(out), models=("efficientnet-lite0",), progress=False)
    assert summary.models["efficientnet-lite0"].embedded == 150
    agree, chance = nn_agreement(out, "efficientnet-lite0")
    assert chance == pytest.approx(1 / 3)
    assert agree > chance + 0.25, (agree, chance)

    q = ds / "malignant" / sorted(os.listdir(ds / "malignant"))[0]
    res = query([str(q)], index_dir=str(out), k=10)[0]
    assert res.excluded_self and len(res.neighbours) == 10
    assert all(n.labels[0] in ("benign", "malignant", "normal") for n in res.neighbours)


def test_mobilenet_v2_offline_weights_on_dermoscopy(tmp_path):
    weights = SHARED_WEIGHTS / "mobilenet_v2_imagenet.pth"
    if not weights.exists():
        pytest.skip("no MobileNetV2 weights")
    src = needs_shared("skin-isic2018")
    root = tmp_path / "skin"
    (root / "images").mkdir(parents=True)
    rows = list(csv.DictReader(open(src / "labels.csv")))
    # up to 40 images of each of the 4 commonest classes, so chance is not dominated by naevi
    picked, per = [], {}
    for r in rows:
        if r["label"] in ("0", "1", "2", "4") and per.get(r["label"], 0) < 40:
            per[r["label"]] = per.get(r["label"], 0) + 1
            picked.append(r)
            os.symlink(src / "images" / f"{r['image']}.jpg", root / "images" / f"{r['image']}.jpg")
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(picked)
    out = tmp_path / "out"
    index_dataset(str(root), out=str(out), models=("mobilenet-v2",), weights=(str(weights),), progress=False)
    data = read_store(out)
    assert data.task == "multiclass" and data.label_names == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    agree, chance = nn_agreement(out, "mobilenet-v2")
    assert agree > chance + 0.15, (agree, chance)
