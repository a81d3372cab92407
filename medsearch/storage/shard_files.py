"""A sharded index on disk: one ordinary FAISS file per shard, each written atomically and checked on open
(size and cheap fingerprint, the sha256 on request) exactly as an unsharded index file is, and recorded in
the model's ``index_shards`` attribute (JSON list of {file, ntotal, size, fingerprint, sha256, first_row,
end_row}, in row order). The other index_* attributes hold the whole: ``index_file`` names shard 0,
``index_ntotal`` and ``index_size`` are the sums, ``index_sha256`` and ``index_fingerprint`` digests of the
shards' own (an older medsearch that knows no shards opens ``index_file``, finds it smaller than recorded and
refuses it, asking for a rebuild, rather than answer from one shard).

A store without ``index_shards`` keeps the single-file format. Opened for searching, shard files are
memory-mapped (index_shards and faiss_index.load_index say what FAISS maps); opened to be changed (add,
remove, renumber), they are read whole.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import MedsearchError
from .faiss_index import index_fingerprint, load_index, save_index
from .index_shards import combine, is_sharded, shards_of

SHARD_FILE = re.compile(r"(?P<stem>[^/\\]+?)\.shard-(?P<j>[0-9]+)-of-(?P<n>[0-9]+)\.faiss")
RECORD_FIELDS = ("file", "ntotal", "size", "fingerprint", "sha256", "first_row", "end_row")


@dataclass
class ShardRecord:
    """One shard file as the store records it: it holds ``ntotal`` rows of [first_row, end_row)."""

    file: str
    ntotal: int
    size: int
    fingerprint: str
    sha256: str
    first_row: int
    end_row: int


def shard_file(stem: str, j: int, shards: int) -> str:
    return f"{stem}.shard-{j}-of-{shards}.faiss"


def stem_of(index_file: str) -> str:
    """The name shard files (and a single file) are made from: 'k.g3.shard-0-of-4.faiss' -> 'k.g3'."""
    match = SHARD_FILE.fullmatch(index_file)
    return match["stem"] if match else index_file[:-len(".faiss")] if index_file.endswith(".faiss") else index_file


def shard_count(attrs: dict) -> int:
    """Shards the recorded index has (1: a single file, or none)."""
    return len(json.loads(attrs["index_shards"])) if "index_shards" in attrs else 1


def listed_files(attrs: dict) -> set[str]:
    """Every index file a model's attributes name (what no sweep may delete)."""
    files = {attrs["index_file"]} if "index_file" in attrs else set()
    if "index_shards" in attrs:
        try:
            files |= {r["file"] for r in json.loads(attrs["index_shards"]) if isinstance(r, dict) and "file" in r}
        except (ValueError, TypeError):
            pass
    return files


def shard_records(attrs: dict) -> list[ShardRecord]:
    """The recorded shards, checked: plain file names, whole counts, contiguous row ranges from 0, and
    ntotal summing to index_ntotal; anything else is refused in one line."""
    try:
        raw = json.loads(attrs["index_shards"])
        records = [ShardRecord(**{f: r[f] for f in RECORD_FIELDS}) for r in raw]
    except (ValueError, TypeError, KeyError) as exc:
        raise _damaged(f"not a JSON list of {{{', '.join(RECORD_FIELDS)}}} ({type(exc).__name__})") from None
    if not records:
        raise _damaged("no shard listed")
    for j, r in enumerate(records):
        counts = (r.ntotal, r.size, r.first_row, r.end_row)
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise _damaged(f"shard {j} has counts {counts}, not whole numbers >= 0")
        if not isinstance(r.file, str) or not SHARD_FILE.fullmatch(r.file) or r.file in {s.file for s in records[:j]}:
            raise _damaged(f"shard {j} file {r.file!r} is not a distinct 'NAME.shard-J-of-N.faiss' file name")
        if r.first_row != (records[j - 1].end_row if j else 0) or r.end_row < r.first_row:
            raise _damaged(f"shard {j} covers rows [{r.first_row}, {r.end_row}), not the range after shard {j - 1}")
    if sum(r.ntotal for r in records) != attrs.get("index_ntotal"):
        raise _damaged(f"the shards hold {sum(r.ntotal for r in records)} rows, index_ntotal says "
                       f"{attrs.get('index_ntotal')}")
    return records


def _damaged(what: str) -> MedsearchError:
    return MedsearchError(f"the store's index_shards record is damaged: {what}; rebuild the index with "
                          "`medsearch index` on this store")


def bounds_of(records: list[ShardRecord]) -> np.ndarray:
    return np.asarray([r.first_row for r in records] + [records[-1].end_row], dtype=np.int64)


def open_index(folder, attrs: dict, *, dim: int, mmap: bool = False, verify: bool = False):
    """The model's recorded index (a single file, or its shards combined), each file checked first.
    ``mmap``: for searching only (see module docstring); ``verify``: hash every file whole."""
    folder = Path(folder)
    if "index_shards" not in attrs:
        return load_index(folder / attrs["index_file"], dim=dim, ntotal=int(attrs["index_ntotal"]),
                          fingerprint=attrs.get("index_fingerprint"), size=attrs.get("index_size"),
                          sha256=attrs.get("index_sha256"), verify=verify, mmap=False)
    return combine([load_index(folder / r.file, dim=dim, ntotal=r.ntotal, fingerprint=r.fingerprint, size=r.size,
                               sha256=r.sha256, verify=verify, mmap=mmap) for r in shard_records(attrs)])


def save_shards(folder, index, bounds, stem: str, *, previous: list[ShardRecord] | None = None,
                touched=None) -> dict:
    """Write each shard of ``index`` (rows cut at ``bounds``) to its own file atomically, or only the shards
    in ``touched`` (the others keep their ``previous`` records), and return the index_* attributes that
    record them (see the module docstring)."""
    folder = Path(folder)
    shards = shards_of(index) if is_sharded(index) else [index]
    records = []
    for j, shard in enumerate(shards):
        name = shard_file(stem, j, len(shards))
        if previous is not None and touched is not None and j not in touched and previous[j].file == name:
            records.append(ShardRecord(**(asdict(previous[j]) | {"first_row": int(bounds[j]),
                                                                  "end_row": int(bounds[j + 1])})))
            continue
        sha = save_index(shard, folder / name)
        size = (folder / name).stat().st_size
        records.append(ShardRecord(name, int(shard.ntotal), int(size), index_fingerprint(folder / name), sha,
                                   int(bounds[j]), int(bounds[j + 1])))
    ntotal, size = sum(r.ntotal for r in records), sum(r.size for r in records)
    return {"index_file": records[0].file, "index_shards": json.dumps([asdict(r) for r in records]),
            "index_ntotal": int(ntotal), "index_size": int(size),
            "index_sha256": _digest(r.sha256 for r in records),
            "index_fingerprint": "fp1:" + _digest(r.fingerprint for r in records),
            "index_bytes_per_vector": round(size / max(1, ntotal), 1)}


def _digest(parts) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
