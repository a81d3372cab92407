"""`medsearch demo`: the whole flow, offline, on a bundled MedMNIST file: index, query one test image, summarise.

This module is imported by the CLI for its defaults, so the engines load only when ``demo`` runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .ingest.index_options import IndexOptions

DEMO_DATASETS = ("breastmnist", "retinamnist")
DEMO_MODEL = "efficientnet-lite0"


@dataclass
class DemoOptions:
    """Which bundled file to index (``dataset``, one of DEMO_DATASETS) into ``out`` (default
    ``indexes/demo-<dataset>``) with ``model``, and how many neighbours ``k`` the query shows. The bundled
    files hold small arrays, not files to decode: two decode threads keep up, on any machine."""

    dataset: str = DEMO_DATASETS[0]
    out: str | None = None
    model: str = DEMO_MODEL
    k: int = 5
    batch_size: int = IndexOptions.batch_size
    workers: int = 2
    progress: bool = True


@dataclass
class DemoResult:
    """The store summary after indexing, the query's results and the query image's true label."""

    dataset: str
    summary: object
    true_label: str
    results: list


def demo_file(name: str) -> Path:
    return Path(str(resources.files("medsearch") / "demo_data" / f"{name}.npz"))


def demo(options: DemoOptions | None = None, **overrides) -> DemoResult:
    """Index a bundled MedMNIST file and query it with its first official test image (itself left out)."""
    import dataclasses

    import numpy as np

    from .ingest.images import array_to_image
    from .ingest.indexing import index_dataset
    from .search.query import query
    from .storage.store import read_store
    from .storage.summary import store_summary

    o = dataclasses.replace(options or DemoOptions(), **overrides)
    out_dir = Path(o.out or f"indexes/demo-{o.dataset}")
    npz = demo_file(o.dataset)
    index_dataset(str(npz), out=str(out_dir), models=(o.model,), batch_size=o.batch_size, workers=o.workers,
                  progress=o.progress)
    with np.load(npz, allow_pickle=False) as z:
        image, label = z["test_images"][0], int(z["test_labels"][0][0])
    query_png = out_dir / "demo_query.png"
    array_to_image(image).save(query_png)
    results = query([str(query_png)], index_dir=str(out_dir), model=o.model, k=o.k, exclude_ids=("test/0",))
    return DemoResult(dataset=o.dataset, summary=store_summary(str(out_dir)),
                      true_label=read_store(out_dir).label_names[label], results=results)
