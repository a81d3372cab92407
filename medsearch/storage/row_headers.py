"""What a store keeps of DICOM headers, per row: the study and series as keyed hashes and a few non-identifying
fields (schema.HEADER_COLUMNS, nothing else; validation refuses any other column). The record of how the
identifiers were hashed (``ids``: the scheme, a check value of the key, where the key lives) is a root attribute,
so a later run can refuse a different key instead of silently splitting every patient in two.

Reconciling a store with its dataset (``merge_headers``) takes the dataset's header values of its rows, like labels
and groups; rows the dataset has no header for keep '' (no value)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import MedsearchError
from .schema import HEADER_COLUMNS, HEADER_IDS

ID_RECORD_ATTR = "dicom_ids"  # the root attribute holding RowHeaders.ids (JSON)


@dataclass
class RowHeaders:
    """``columns``: column name (one of schema.HEADER_COLUMNS) -> one string per row, '' where the row's header
    lacks it; ``ids``: how identifiers were hashed (``hash``, ``key_check``, ``key``, ``groups``)."""

    columns: dict[str, list[str]]
    ids: dict = field(default_factory=dict)

    def names(self) -> list[str]:
        """The stored columns, in schema order."""
        return [c for c in HEADER_COLUMNS if c in self.columns]

    def fields(self) -> list[str]:
        """The stored non-identifying fields (the columns other than the hashed ids)."""
        return [c for c in self.names() if c not in HEADER_IDS]

    def values(self, row: int) -> dict[str, str]:
        """Row ``row``'s stored values, those it has only, in schema order."""
        return {c: self.columns[c][row] for c in self.names() if self.columns[c][row]}

    def take(self, rows: list[int]) -> RowHeaders:
        return RowHeaders({c: [v[r] for r in rows] for c, v in self.columns.items()}, dict(self.ids))

    def pad(self, n: int) -> None:
        """Give rows appended since (up to ``n`` rows) no value."""
        for values in self.columns.values():
            values.extend([""] * (n - len(values)))

    def ids_json(self) -> str:
        return json.dumps(self.ids, sort_keys=True)


def merge_headers(data, ds, row_of: np.ndarray, fresh=()) -> int:
    """Take the header values of the dataset ``ds``'s rows (store rows ``row_of``) into the store ``data``, marking
    the rows whose values changed; returns how many changed, not counting the rows ``fresh`` (appended by this run). A store built with another identifier key is refused
    (its hashes would no longer match its patients)."""
    n = len(data)
    if data.header is not None:
        data.header.pad(n)
    got = ds.header
    if got is None:
        return 0
    if data.header is None:
        data.header = RowHeaders({}, {})
    have = data.header
    old_check, new_check = have.ids.get("key_check"), got.ids.get("key_check")
    if old_check and new_check and old_check != new_check:
        raise MedsearchError(f"the store's identifiers were hashed with another key (check {old_check}, this run's "
                             f"{new_check}): give the store's key with --id-key, or index into a new --out folder")
    have.ids = dict(got.ids)
    changed = np.zeros(n, dtype=bool)
    rows = row_of.tolist()
    for name in got.names():
        if name not in have.columns:
            have.columns[name] = [""] * n
        column = have.columns[name]
        for r, value in zip(rows, got.columns[name]):
            if column[r] != value:
                column[r] = value
                changed[r] = True
    data.touch(np.flatnonzero(changed))
    changed[np.asarray(fresh, dtype=np.int64)] = False
    return int(changed.sum())


def stored_id_record(directory) -> dict | None:
    """The ``ids`` record of the store in ``directory`` from its manifest alone (cheap: no segment is opened);
    None without a store or without DICOM headers. A damaged manifest is left for read_store to refuse."""
    from .manifest import manifest_path, read_manifest
    from .validation import Damage

    path = manifest_path(directory)
    if not path.exists():
        return None
    try:
        raw = read_manifest(path).attrs.get(ID_RECORD_ATTR)
        record = json.loads(raw) if isinstance(raw, str) else None
    except (Damage, ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None
