"""`medsearch info DIR`: what a store holds — rows, labels, task, models and their provenance."""
from __future__ import annotations

import collections
import dataclasses
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
    format_version: int | None = None
    segments: int | None = None       # format 2: live segment files
    removed: int = 0                  # rows removed from the dataset, not yet compacted away
    verified: str | None = None       # with verify: what was checked beyond the metadata
    dicom: dict | None = None         # what is kept of DICOM headers (dicom_summary); None without

    OMIT_WHEN_NONE = ("verified", "dicom")


def _index_record(attrs: dict) -> dict:
    """A model's index_* attributes without the prefix; the search parameters and the shard records as the
    objects they encode, and for a sharded index ``shard_count`` (absent: one index file)."""
    record = {k[len("index_"):]: v for k, v in attrs.items() if k.startswith("index_")}
    if "search_params" in record:
        record["search_params"] = json.loads(record["search_params"])
    if "shards" in record:   # checked: a damaged record is refused in one line
        from .shard_files import shard_records

        record["shards"] = [dataclasses.asdict(r) for r in shard_records(attrs)]
        record["shard_count"] = len(record["shards"])
    return record


def store_summary(index_dir: str, *, verify: bool = False) -> StoreSummary:
    """Read and validate the store in ``index_dir`` and sum it up. The metadata is validated whole on every
    open; ``verify`` also reads every stored embedding (each must be finite) and hashes every index file whole
    against its recorded sha256, which costs a read of the whole store."""
    data = read_store(index_dir)
    verified = _verify(index_dir, data) if verify else None
    if data.task == "multilabel":
        counts = dict(zip(data.label_names, (int(c) for c in data.labels.sum(0))))
    else:
        counts = {data.label_names[c]: int(n) for c, n in sorted(collections.Counter(data.labels.tolist()).items())}
    return StoreSummary(
        store=index_dir, rows=len(data), task=data.task, labels=counts,
        groups=len(set(data.groups)) if data.groups is not None else None,
        splits=dict(collections.Counter(data.splits)) if data.splits is not None else None,
        dataset_root=data.attrs.get("dataset_root"), created=data.attrs.get("created"),
        updated=data.attrs.get("updated"), models={key: _model_summary(m) for key, m in data.models.items()},
        format_version=data.attrs.get("format_version"),
        segments=len(data.origin.manifest.segments) if data.origin is not None else None,
        removed=int(data.is_removed().sum()), verified=verified, dicom=dicom_summary(data))


NOT_STORED = ("patient names, birth dates, addresses, accession numbers, institution names, free text (descriptions, "
              "comments) and every other header value; raw patient, study and series ids")


def dicom_summary(data) -> dict | None:
    """What the store keeps of DICOM headers: the fields, the identifiers as keyed hashes and where their key
    lives, how many rows have a header and how many lack a PatientID; and what is never stored."""
    from .schema import HEADER_IDS, NO_PATIENT_GROUP

    h = data.header
    if h is None:
        return None
    ids = h.ids
    by_patient = ids.get("groups", "").startswith("PatientID")
    hashed = [c for c in HEADER_IDS if c in h.columns] + (["patient (the groups)"] if by_patient else [])
    return {"fields": h.fields(), "hashed_ids": hashed, "hash": ids.get("hash"), "key": ids.get("key"),
            "key_check": ids.get("key_check"), "groups": ids.get("groups"),
            "rows_with_header": _rows_with_values(h.columns, len(data)),
            "rows_without_patient_id": sum(1 for g in data.groups or () if g.startswith(NO_PATIENT_GROUP)),
            "not_stored": NOT_STORED}


def _rows_with_values(columns: dict, n: int) -> int:
    has = np.zeros(n, dtype=bool)
    for values in columns.values():
        has |= np.asarray(values, dtype=object) != ""
    return int(has.sum())


VERIFY_BLOCK_ROWS = 65_536  # embeddings read at a time by --verify


def _verify(index_dir: str, data) -> str:
    """Read every embedding (a non-finite value is refused where it is read) and hash every index file."""
    from .shard_files import open_index

    for key, m in data.models.items():
        for start in range(0, len(data), VERIFY_BLOCK_ROWS):
            m.embedding[start:start + VERIFY_BLOCK_ROWS]
        if "index_file" in m.attrs:
            open_index(index_dir, m.attrs, dim=m.dim, mmap=True, verify=True)  # every shard file, when sharded
    return "every embedding read and finite; every index file's sha256 equal to the one recorded"


def _model_summary(m: ModelData) -> ModelSummary:
    states = {s: int(np.sum(m.state == s)) for s in (EMBEDDED, ZERO_FILLED, SKIPPED, PENDING)}
    return ModelSummary(dim=m.dim, embedded=states[EMBEDDED], zero_filled=states[ZERO_FILLED],
                        skipped=states[SKIPPED], pending=states[PENDING],
                        index=_index_record(m.attrs),
                        provenance=provenance(m))
