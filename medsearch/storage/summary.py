"""`medsearch info DIR`: what a store holds — rows, labels, task, models and their provenance."""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field

import numpy as np

from ..results import JsonResult
from .schema import EMBEDDED, PENDING, SKIPPED, STATE_NAMES, ZERO_FILLED
from .store import ModelData, provenance, read_store


@dataclass
class ModelSummary(JsonResult):
    """One model of a store: embedding dimension, rows per state, its index_* attributes (without the
    ``index_`` prefix) and its recorded provenance."""

    JSON_NAMES = {"zero_filled": STATE_NAMES[ZERO_FILLED]}

    dim: int
    embedded: int
    zero_filled: int
    skipped: int
    pending: int
    index: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


@dataclass
class StoreSummary(JsonResult):
    """A store at a glance: rows per label, distinct groups and official split sizes (None when the store
    has none), where it was built from, when, and each model."""

    store: str
    rows: int
    task: str
    labels: dict[str, int]
    groups: int | None
    splits: dict[str, int] | None
    dataset_root: str | None
    created: str | None
    updated: str | None
    models: dict[str, ModelSummary] = field(default_factory=dict)


def _index_record(attrs: dict) -> dict:
    """A model's index_* attributes without the prefix; the search parameters as the object they encode."""
    record = {k[len("index_"):]: v for k, v in attrs.items() if k.startswith("index_")}
    if "search_params" in record:
        record["search_params"] = json.loads(record["search_params"])
    return record


def store_summary(index_dir: str) -> StoreSummary:
    """Read and validate the store in ``index_dir`` and sum it up."""
    data = read_store(index_dir)
    if data.task == "multilabel":
        counts = dict(zip(data.label_names, (int(c) for c in data.labels.sum(0))))
    else:
        counts = {data.label_names[c]: int(n) for c, n in sorted(collections.Counter(data.labels.tolist()).items())}
    return StoreSummary(
        store=index_dir, rows=len(data), task=data.task, labels=counts,
        groups=len(set(data.groups)) if data.groups is not None else None,
        splits=dict(collections.Counter(data.splits)) if data.splits is not None else None,
        dataset_root=data.attrs.get("dataset_root"), created=data.attrs.get("created"),
        updated=data.attrs.get("updated"), models={key: _model_summary(m) for key, m in data.models.items()})


def _model_summary(m: ModelData) -> ModelSummary:
    states = {s: int(np.sum(m.state == s)) for s in (EMBEDDED, ZERO_FILLED, SKIPPED, PENDING)}
    return ModelSummary(dim=m.dim, embedded=states[EMBEDDED], zero_filled=states[ZERO_FILLED],
                        skipped=states[SKIPPED], pending=states[PENDING],
                        index=_index_record(m.attrs),
                        provenance=provenance(m))
