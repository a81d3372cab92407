"""The manifest of a format-2 store, ``store.json``: the root attributes, each model's attributes (provenance,
index_*), the number of rows and the live segments in order. It is small (no per-row data), so a commit
replaces it whole and atomically: that rename is the moment a commit happens. Segment files it does not list
are leftovers of an interrupted commit or of a compaction, removed by the next writer."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_json
from .schema import FORMAT
from ..errors import MedsearchError
from .validation import Damage, is_int, show

MANIFEST_FILE = "store.json"
FORMAT_VERSION_SEGMENTED = 2
SEGMENT_NAME = re.compile(r"seg-[0-9]{9}\.h5")


@dataclass
class SegmentEntry:
    """A live segment: its file name, size in bytes, and how many row and model entries it holds."""

    file: str
    bytes: int
    rows: int
    models: dict[str, int] = field(default_factory=dict)


@dataclass
class Manifest:
    generation: int
    n_rows: int
    attrs: dict
    models: dict[str, dict]          # key -> the model's attributes (dim, provenance, created, index_*)
    segments: list[SegmentEntry]

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION_SEGMENTED, "generation": self.generation,
                "n_rows": self.n_rows, "attrs": self.attrs, "models": self.models,
                "segments": [vars(s) for s in self.segments]}

    def next_segment_name(self) -> str:
        used = [int(s.file[4:13]) for s in self.segments]
        return f"seg-{max(used + [self.generation]) + 1:09d}.h5"


def manifest_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / MANIFEST_FILE


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> None:
    atomic_write_json(manifest_path(directory), manifest.to_json())


def read_manifest(path: Path) -> Manifest:
    """Parse and check ``store.json``; Damage names the first bad field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise Damage(f"{MANIFEST_FILE} is not UTF-8 text") from None
    except ValueError as exc:
        raise Damage(f"{MANIFEST_FILE} is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MedsearchError(f"'{path}' is not a medsearch store manifest: move it aside and rebuild the store "
                             "with `medsearch index`")
    version = raw.get("format_version")
    if not is_int(version) or version < FORMAT_VERSION_SEGMENTED:
        raise Damage(f"{MANIFEST_FILE} format_version is {show(version)}, not {FORMAT_VERSION_SEGMENTED} or above")
    if version > FORMAT_VERSION_SEGMENTED:
        raise MedsearchError(f"'{path}' has store format {version}; this medsearch reads up to "
                             f"{FORMAT_VERSION_SEGMENTED}: upgrade medsearch")
    for name in ("generation", "n_rows"):
        if not is_int(raw.get(name)) or raw[name] < 0:
            raise Damage(f"{MANIFEST_FILE} {name} is {show(raw.get(name))}, not a count")
    if not isinstance(raw.get("attrs"), dict):
        raise Damage(f"{MANIFEST_FILE} attrs is {show(raw.get('attrs'))}, not an object")
    models = raw.get("models")
    if not isinstance(models, dict) or not all(isinstance(a, dict) for a in models.values()):
        raise Damage(f"{MANIFEST_FILE} models is {show(models)}, not an object of objects")
    for key, attrs in models.items():
        if not key or key.startswith(".") or "/" in key or not is_int(attrs.get("dim")) or attrs["dim"] < 1:
            raise Damage(f"{MANIFEST_FILE} model {show(key)} has dim {show(attrs.get('dim'))} (a positive integer)")
    segments = raw.get("segments")
    if not isinstance(segments, list):
        raise Damage(f"{MANIFEST_FILE} segments is {show(segments)}, not a list")
    entries = [_segment_entry(s, set(models)) for s in segments]
    if len({e.file for e in entries}) != len(entries):
        raise Damage(f"{MANIFEST_FILE} lists a segment twice")
    return Manifest(generation=raw["generation"], n_rows=raw["n_rows"], attrs=raw["attrs"], models=models,
                    segments=entries)


def _segment_entry(s, keys: set[str]) -> SegmentEntry:
    if not isinstance(s, dict) or not isinstance(s.get("file"), str) or not SEGMENT_NAME.fullmatch(s["file"]):
        raise Damage(f"{MANIFEST_FILE} lists the segment {show(s)}, not a segment file name (seg-<9 digits>.h5)")
    counts = s.get("models", {})
    if (not all(is_int(s.get(k)) and s[k] >= 0 for k in ("bytes", "rows")) or not isinstance(counts, dict)
            or not all(k in keys and is_int(v) and v >= 0 for k, v in counts.items())):
        raise Damage(f"{MANIFEST_FILE} segment {s['file']} has counts {show(s)}, not sizes and row counts "
                     "of the store's models")
    return SegmentEntry(file=s["file"], bytes=s["bytes"], rows=s["rows"], models=dict(counts))
