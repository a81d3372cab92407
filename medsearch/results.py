"""What every result object shares: one ``to_json`` that gives the plain dict the CLI prints with --json.

Results are dataclasses so their fields are documented in one place; ``to_json`` turns them (and anything
nested in them: results, dataclasses, dicts, lists, numpy values) into JSON-ready Python, NaN into None. Two class
attributes keep the JSON as it has always been printed: a key that is no Python name (``JSON_NAMES``), and optional
parts left out when unset (``OMIT_WHEN_NONE``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np


def to_jsonable(obj):
    """JSON-ready copy: dataclasses to dicts (fields in order), numpy scalars and arrays to Python, NaN to None."""
    if isinstance(obj, JsonResult):
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


class JsonResult:
    """Mixin for result dataclasses: ``to_json()`` is the dict that ``--json`` prints, fields in order."""

    JSON_NAMES: ClassVar[dict[str, str]] = {}
    OMIT_WHEN_NONE: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OMIT_WHEN_NONE:
                continue
            out[self.JSON_NAMES.get(f.name, f.name)] = to_jsonable(value)
        return out
