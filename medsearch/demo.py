"""`medsearch demo`: the whole flow, offline, on a bundled MedMNIST file: index, query one test image, summarise."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from .ingest.images import array_to_image
from .storage.store import read_store
from .ingest.indexing import index_dataset
from .storage.summary import store_summary
from .search.query import query

DEMO_DATASETS = ("breastmnist", "retinamnist")
DEMO_MODEL = "efficientnet-lite0"


def demo_file(name: str) -> Path:
    return Path(str(resources.files("medsearch") / "demo_data" / f"{name}.npz"))


def demo(*, dataset: str = "breastmnist", out: str | None = None, model: str = DEMO_MODEL, k: int = 5,
         batch_size: int = 64, workers: int = 2, progress: bool = True) -> dict:
    """Index a bundled MedMNIST file and query it with its first official test image (itself left out).
    Returns the store summary, the query results and the query's true label."""
    out_dir = Path(out or f"indexes/demo-{dataset}")
    npz = demo_file(dataset)
    index_dataset(str(npz), out=str(out_dir), models=(model,), batch_size=batch_size, workers=workers,
                  progress=progress)
    with np.load(npz, allow_pickle=False) as z:
        image, label = z["test_images"][0], int(z["test_labels"][0][0])
    query_png = out_dir / "demo_query.png"
    array_to_image(image).save(query_png)
    results = query([str(query_png)], index_dir=str(out_dir), model=model, k=k, exclude_ids=("test/0",))
    return {"dataset": dataset, "summary": store_summary(str(out_dir)),
            "true_label": read_store(out_dir).label_names[label], "results": results}
