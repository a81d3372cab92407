"""What one `index` run did, as typed results: ``IndexSummary`` is printed by ``--json`` and written to
index_report.json; ``to_json()`` gives the plain dict of both."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..display import printable
from ..results import JsonResult
from ..storage.schema import EMBEDDED, PENDING, SKIPPED, STATE_NAMES, ZERO_FILLED
from ..storage.store import ModelData, StoreData
from .log import log

REPORT_FILE = "index_report.json"
EXAMPLES_SHOWN = 5


@dataclass
class Changes(JsonResult):
    """How the store's rows followed the dataset: ``moved_from`` is the old root of a moved dataset (else None);
    ``relabelled`` rows got new labels, groups or splits; ``gone_from_dataset`` rows were removed now (their
    image is no longer in the dataset: out of every search, out of the files at the next compaction);
    ``changed_on_disk`` rows had new bytes and go back to pending."""

    moved_from: str | None
    new_rows: int
    relabelled: int
    gone_from_dataset: int
    changed_on_disk: int


@dataclass
class Duplicates(JsonResult):
    """Byte-identical image files among the dataset's rows: each group lists its rows' ids and labels."""

    identical_files: int
    rows: int
    with_conflicting_labels: int
    groups: list[list[dict]]


@dataclass
class ModelIndexSummary(JsonResult):
    """One model after the run: rows per state, what this run embedded and how fast, its FAISS index file,
    the rows skipped or zero-filled with their reasons, and the identical-embedding check."""

    JSON_NAMES = {"zero_filled": STATE_NAMES[ZERO_FILLED]}

    embedded: int
    zero_filled: int
    skipped: int
    pending: int
    embedded_this_run: int
    seconds: float
    images_per_second: float | None
    index_file: str
    problems: list[dict]
    identical_embeddings: dict = field(default_factory=dict)


@dataclass
class IndexSummary(JsonResult):
    """The dataset indexed (its root, rows, task, how its labels were read, manifest rows not stored), the
    store folder, each model's summary under its store key, what changed, the duplicate files, and the
    compaction the run ended with (absent when none was needed)."""

    OMIT_WHEN_NONE = ("compaction",)

    dataset: str
    out: str
    rows: int
    task: str
    reading: str
    dropped_manifest_rows: list[dict]
    models: dict[str, ModelIndexSummary] = field(default_factory=dict)
    changes: Changes | None = None
    duplicates: Duplicates | None = None
    compaction: object | None = None   # compact.CompactSummary


def model_index_summary(data: StoreData, m: ModelData, n_done: int, seconds: float) -> ModelIndexSummary:
    """Counts and problems of model ``m`` after a run that embedded ``n_done`` rows in ``seconds``; the first
    problems are logged."""
    problems = [{"id": data.ids[r], "source": data.sources[r], "state": STATE_NAMES[int(m.state[r])], "reason": m.reason[r]}
                for r in np.flatnonzero((m.state == SKIPPED) | (m.state == ZERO_FILLED))]
    for p in problems[:EXAMPLES_SHOWN]:
        log(f"  {p['state']}: {printable(p['source'])}: {printable(p['reason'])}")
    if len(problems) > EXAMPLES_SHOWN:
        log(f"  ... and {len(problems) - EXAMPLES_SHOWN} more (see {REPORT_FILE})")

    def count(state: int) -> int:
        return int((m.state == state).sum())

    return ModelIndexSummary(
        embedded=count(EMBEDDED), zero_filled=count(ZERO_FILLED), skipped=count(SKIPPED), pending=count(PENDING),
        embedded_this_run=int(n_done),
        seconds=round(seconds, 2), images_per_second=round(n_done / seconds, 2) if seconds > 0 and n_done else None,
        index_file=m.attrs["index_file"], problems=problems)
