"""`medsearch info DIR`: what a store holds — rows, labels, task, models and their provenance."""
from __future__ import annotations

import collections

import numpy as np

from .store import EMBEDDED, PENDING, SKIPPED, STATE_NAMES, ZERO_FILLED, provenance, read_store


def store_summary(index_dir: str) -> dict:
    data = read_store(index_dir)
    if data.task == "multilabel":
        counts = dict(zip(data.label_names, (int(c) for c in data.labels.sum(0))))
    else:
        counts = {data.label_names[c]: int(n) for c, n in sorted(collections.Counter(data.labels.tolist()).items())}
    out = {
        "store": index_dir, "rows": len(data), "task": data.task, "labels": counts,
        "groups": len(set(data.groups)) if data.groups is not None else None,
        "splits": dict(collections.Counter(data.splits)) if data.splits is not None else None,
        "dataset_root": data.attrs.get("dataset_root"), "created": data.attrs.get("created"),
        "updated": data.attrs.get("updated"), "models": {},
    }
    for key, m in data.models.items():
        states = {STATE_NAMES[s]: int(np.sum(m.state == s)) for s in (EMBEDDED, ZERO_FILLED, SKIPPED, PENDING)}
        out["models"][key] = {"dim": m.dim, **states,
                              "index": {k[len("index_"):]: v for k, v in m.attrs.items() if k.startswith("index_")},
                              "provenance": provenance(m)}
    return out
